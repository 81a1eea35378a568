"""Replayed headers and failures are the recorded ones, for httpx, httpx2 and requests.

A raw loopback server sends what the stdlib test server cannot: a header that is not ASCII, a
connection reset (RST), a response that stalls past the client's read timeout. Each agent runs
live once, then in a governance replay with the server stopped: what it saw must be the same.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
import requests
import urllib3

import agenttrace
from agenttrace._capture.model import Body, Exchange, RequestData, ResponseData
from agenttrace._replay import serve
from tests.recording import Recorder, replaying
from tests.servers import TestServer

CAFE_BODY = b'{"ok": true}'
# "café" sent as UTF-8 bytes in one header and as a latin-1 byte in another: both are legal
# bytes on the wire, and both must reach the client the same way in replay.
CAFE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b'Content-Disposition: attachment; filename="caf\xc3\xa9.txt"\r\n'
    b"X-Latin: caf\xe9\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(CAFE_BODY)
)


class RawServer:
    """A loopback server answering by path with raw bytes: ``/cafe``, ``/reset``, ``/stall``."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self.connections = 0
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        """Absolute URL of ``path`` on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                got = conn.recv(65536)
                if not got:
                    return
                data += got
            path = data.split(b" ", 2)[1]
            if path.startswith(b"/cafe"):
                conn.sendall(CAFE_HEAD + CAFE_BODY)
            elif path.startswith(b"/reset"):
                # Linger 0: close() sends RST, and the client's read fails with ECONNRESET.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif path.startswith(b"/stall"):
                self._release.wait(10)

    def stop(self) -> None:
        """Stop accepting; stalled handlers return."""
        self._release.set()
        self._sock.close()


@pytest.fixture
def raw() -> Iterator[RawServer]:
    """A raw loopback server of this test only."""
    server = RawServer()
    yield server
    server.stop()


def _outcome(fn: Callable[[], Any]) -> dict[str, Any]:
    """What an agent sees of a call: the headers, or the exception's type, text, errno, repr."""
    try:
        response = fn()
    except Exception as exc:  # the exception is what is compared
        return {
            "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
            "str": str(exc),
            "errno": getattr(exc, "errno", None),
            # urllib3 wraps the socket's error (ProtocolError('Connection aborted.', OSError)).
            "inner_errno": [a.errno for a in exc.args if isinstance(a, OSError)],
            "repr": repr(exc),
            # What an agent hands its LLM: the class and the text.
            "llm_text": f"{type(exc).__name__}: {exc}",
            "context": repr(exc.__context__) if isinstance(exc.__context__, OSError) else None,
        }
    return {
        "status": response.status_code,
        "headers": [(k.lower(), v) for k, v in response.headers.items()],
        "body": response.content,
    }


def _live_then_replay(tmp_path: Path, raw: RawServer, calls: list[Callable[[], Any]]) -> tuple[list[Any], list[Any]]:
    def agent() -> list[dict[str, Any]]:
        return [_outcome(call) for call in calls]

    live, _ = Recorder(tmp_path).run(agent)
    raw.stop()
    before = raw.connections
    with replaying(tmp_path):
        replayed = agenttrace.run("test-agent")(agent)()
    assert raw.connections == before, "the replay reached the server"
    return live, replayed


async def _async_get(url: str, timeout: float) -> Any:
    async with httpx.AsyncClient() as client:
        return await client.get(url, timeout=timeout)


CLIENTS: dict[str, Callable[[str, float], Any]] = {
    "httpx": lambda url, timeout: httpx.get(url, timeout=timeout),
    # httpx's async transport raises ReadTimeout('') and ReadError(''): an empty text replays empty.
    "httpx-async": lambda url, timeout: asyncio.run(_async_get(url, timeout)),
    "httpx2": lambda url, timeout: httpx2.get(url, timeout=timeout),
    "requests": lambda url, timeout: requests.get(url, timeout=timeout),
}


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_non_ascii_header_replays_as_recorded(recorder: Recorder, tmp_path: Path, raw: RawServer, client: str) -> None:
    """A header holding non-ASCII bytes (UTF-8 and latin-1) is served with the same bytes."""
    get = CLIENTS[client]
    live, replayed = _live_then_replay(tmp_path, raw, [lambda: get(raw.url("/cafe"), 5)])
    assert live[0]["status"] == 200
    assert ("x-latin", "caf\xe9") in live[0]["headers"]
    assert replayed == live


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_reset_and_read_timeout_replay_as_recorded(
    recorder: Recorder, tmp_path: Path, raw: RawServer, client: str
) -> None:
    """A connection reset and a read timeout replay with the recorded type, text, errno and repr."""
    get = CLIENTS[client]
    live, replayed = _live_then_replay(
        tmp_path, raw, [lambda: get(raw.url("/reset"), 5), lambda: get(raw.url("/stall"), 0.2)]
    )
    reset, timeout = live
    assert reset["type"].endswith(("ReadError", "ConnectionError", "ConnectError", "RemoteProtocolError"))
    assert timeout["type"].endswith(("ReadTimeout", "ConnectionError"))
    if client != "httpx-async":
        assert "104" in reset["str"] or "reset" in reset["str"].lower()
        assert "timed out" in timeout["str"].lower()
    for seen, got in zip(live, replayed):
        for field in ("type", "str", "errno", "inner_errno", "repr", "llm_text"):
            assert got[field] == seen[field], field


def test_urllib3_reset_keeps_errno(recorder: Recorder, tmp_path: Path, raw: RawServer) -> None:
    """urllib3 wraps the recorded ConnectionResetError: its errno and strerror come back."""

    def call() -> Any:
        with urllib3.PoolManager(retries=False) as pool:
            return pool.request("GET", raw.url("/reset"))

    live, replayed = _live_then_replay(tmp_path, raw, [call])
    assert live[0]["inner_errno"] == [104]
    assert replayed == live


def test_agent_handing_error_text_to_its_llm_replays_in_governance(recorder: Recorder, tmp_path: Path) -> None:
    """The openai SDK gets the text of a reset and a read timeout; the governance replay matches."""
    import openai

    from agenttrace._demo.llm_server import FakeLLMServer

    raw = RawServer()
    llm = FakeLLMServer().start()

    def agent() -> str:
        notes = []
        for path, timeout in (("/reset", 5.0), ("/stall", 0.2)):
            try:
                requests.get(raw.url(path), timeout=timeout)
            except requests.RequestException as exc:
                notes.append(f"{type(exc).__name__}: {exc}")
        client = openai.OpenAI(base_url=llm.openai_base_url, api_key="sk-test", max_retries=0)
        answer = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "\n".join(notes)}])
        return answer.choices[0].message.content or ""

    try:
        live, _ = recorder.run(agent)
    finally:
        llm.stop()
        raw.stop()
    assert "ConnectionResetError(104" in live
    assert "Read timed out" in live
    with replaying(tmp_path):  # both servers are down: everything comes from the recording
        assert agenttrace.run("test-agent")(agent)() == live


def _read_requests(url: str) -> bytes:
    return b"".join(requests.get(url, stream=True, timeout=5).iter_content(None))


def _read_httpx(url: str) -> bytes:
    with httpx.stream("GET", url, timeout=5) as response:
        return b"".join(response.iter_bytes())


def _read_urllib3(url: str) -> bytes:
    return bytes(urllib3.request("GET", url, retries=False, timeout=5).data)


READERS: dict[str, Callable[[str], bytes]] = {
    "httpx": _read_httpx,
    "requests": _read_requests,
    "urllib3": _read_urllib3,
}


@pytest.mark.parametrize("client", sorted(READERS))
def test_broken_stream_and_chunked_body_replay_as_recorded(recorder: Recorder, server: TestServer, client: str) -> None:
    """A stream cut midway fails as recorded (type, text, repr), and a chunked body reads whole."""
    read = READERS[client]

    def agent() -> list[Any]:
        out: list[Any] = []
        for path in ("/broken?n=2", "/chunks?n=3&size=10"):
            try:
                out.append(read(server.url(path)))
            except Exception as exc:  # the exception is what is compared
                out.append((type(exc), str(exc), repr(exc), f"{type(exc).__name__}: {exc}"))
        return out

    live, _ = recorder.run(agent)
    assert isinstance(live[0], tuple)
    assert live[1] == b"a" * 10 + b"b" * 10 + b"c" * 10
    before = server.connections
    with replaying(recorder.folder):
        replayed = agenttrace.run("test-agent")(agent)()
    assert server.connections == before
    assert replayed == live


def _exchange(offsets: tuple[int, ...]) -> Exchange:
    body = b"x" * len(offsets)
    return Exchange(
        library="httpx",
        ordinal=0,
        step_path=(),
        request=RequestData("GET", "http://127.0.0.1/", (), b""),
        response=ResponseData(
            200, (), Body(body, len(body), ""), chunk_sizes=(1,) * len(offsets), chunk_offsets_ns=offsets
        ),
    )


def test_recorded_pacing_is_bounded(tmp_path: Path) -> None:
    """Absurd recorded offsets (10^15 ns) wait at most 30 s per gap and 300 s per response."""
    agenttrace.init(trace_dir=str(tmp_path), quiet=True, replay_pacing="recorded")
    try:
        delays = serve.pacing_delays(_exchange((0, 10**15, 2 * 10**15, *(3 * 10**15 + i for i in range(20)))))
        assert max(delays) == serve.MAX_PACING_GAP_S == 30.0
        assert sum(delays) <= serve.MAX_PACING_TOTAL_S == 300.0
        many = serve.pacing_delays(_exchange(tuple(i * 20 * 10**9 for i in range(40))))  # 20 s apart
        assert many[1] == 20.0
        assert sum(many) == serve.MAX_PACING_TOTAL_S
        # Sensible gaps are kept as recorded.
        assert serve.pacing_delays(_exchange((0, 5_000_000, 15_000_000))) == [0.0, 0.005, 0.01]
    finally:
        agenttrace.init(trace_dir=str(tmp_path), quiet=True)
