"""Connection floods: incomplete requests are closed, and a flood never locks out /healthz or ingest.

The server's limits are lowered through its options (50 connections, a 2 s head deadline) so a few
hundred connections make the flood."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from .test_ingest_edges import TRACE, _document, _span


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=30)


def _closed_by_server(sock: socket.socket, within: float = 30.0) -> bytes | None:
    """What the server sent on ``sock`` before closing it, or None if it was still open after ``within`` seconds."""
    sock.settimeout(within)
    received = b""
    try:
        while chunk := sock.recv(1024):
            received += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        return None
    return received


def test_a_flood_of_incomplete_requests_leaves_healthz_and_ingest_answering(start_server: Any, tmp_path: Path) -> None:
    """300 connections with incomplete requests: /healthz and a real ingest answer, and all 300 are closed."""
    server = start_server(
        "--database",
        f"sqlite:///{tmp_path / 'f.db'}",
        "--max-connections",
        "50",
        "--header-timeout",
        "2",
        "--request-timeout",
        "2",
    )
    flood: list[socket.socket] = []
    try:
        for number in range(300):
            sock = _connect(server.url)
            if number % 3 == 0:  # an upload whose body never comes
                head = b"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                sock.sendall(head + b"Content-Length: 1000\r\n\r\n{")
            elif number % 3 == 1:  # a head that never ends
                sock.sendall(b"GET /api/traces HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            flood.append(sock)  # else: connected, nothing sent
        assert server.get("/healthz").status_code == 200
        answer = server.post("/v1/traces", json=_document(_span(1, "during-the-flood")))
        assert answer.status_code == 200
        assert [t["trace_id"] for t in server.get("/api/traces").json()["traces"]] == [TRACE]
        deadline = time.monotonic() + 30
        answers = [_closed_by_server(sock, max(deadline - time.monotonic(), 0.1)) for sock in flood]
        assert None not in answers, f"{answers.count(None)} connections left open"
        # An upload whose turn came is answered (408: its body stalled), the others are just closed.
        assert {answer.split(b" ", 2)[1] for answer in answers if answer} <= {b"408", b"503"}
        # ... and their connections closed with the answer: the rest of a body could not be told from a
        # next request (kept alive, they stayed open for the 15 s keep-alive, holding a descriptor each).
        assert all(b"\r\nconnection: close\r\n" in answer.lower() for answer in answers if answer)
    finally:
        for sock in flood:
            sock.close()
    server.stop()
    log = server.log.read_text()
    assert log.count("connections are open (--max-connections)") == 1
    assert "Traceback" not in log


def test_a_head_sent_a_byte_at_a_time_is_cut_off(start_server: Any, tmp_path: Path) -> None:
    """A client trickling its request head is closed at the head deadline, though bytes keep arriving."""
    server = start_server("--database", f"sqlite:///{tmp_path / 't.db'}", "--header-timeout", "2")
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 200 + b"\r\n\r\n"
    sock = _connect(server.url)
    sent = 0
    try:
        for byte in head:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 1
            time.sleep(0.05)  # 13 s for the whole head: well past the 2 s deadline
        assert sent < len(head), "the server let the trickled head complete"
        assert _closed_by_server(sock, within=5) == b""
    finally:
        sock.close()


def test_connection_settings_are_checked(tmp_path: Path) -> None:
    """A bad --max-connections or --header-timeout stops the server with exit 2, naming it."""
    from .test_server import _cli

    done = _cli(["--port", "0", "--max-connections", "two"], tmp_path)
    assert done.returncode == 2
    assert "max_connections 'two' (from the command line) is not valid; expected a whole number, 4 or more" in (
        done.stderr
    )
    done = _cli(["--port", "0"], tmp_path, {"AGENTTRACE_SERVER_HEADER_TIMEOUT": "0"})
    assert done.returncode == 2
    assert "header_timeout '0' (from AGENTTRACE_SERVER_HEADER_TIMEOUT) is not valid" in done.stderr


def test_an_upload_trickled_too_slowly_is_answered_408(start_server: Any, tmp_path: Path) -> None:
    """A body arriving a few bytes at a time, never stalling for --request-timeout, is cut off once it has
    taken that long at less than 64 KiB/s."""
    server = start_server("--database", f"sqlite:///{tmp_path / 'b.db'}", "--request-timeout", "1")
    sock = _connect(server.url)
    try:
        head = b"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        sock.sendall(head + b"Content-Length: 100000\r\n\r\n")
        sock.settimeout(0.3)
        answer = b""
        for _ in range(40):  # 12 s at most; each pause well under the 1 s stall timeout
            try:
                sock.sendall(b" " * 10)
                answer = sock.recv(1024)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if answer:
                break
        assert answer.startswith(b"HTTP/1.1 408"), answer
        sock.settimeout(5)
        while b"}" not in answer and (more := sock.recv(1024)):
            answer += more
        assert b"slower than 64 KiB/s" in answer
    finally:
        sock.close()
