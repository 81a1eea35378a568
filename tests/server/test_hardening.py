"""Addresses, sockets and hostile requests: the server refuses or serves them without leaking or stalling."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from .test_server import _cli

SECRET = "pa#ss-hunter2"


@pytest.mark.parametrize(
    "address",
    [
        f"postgresql://nobody:{SECRET}@127.0.0.1:9/x",  # a '#' in the password
        f"POSTGRESQL://nobody:{SECRET}@127.0.0.1:9/x",  # the scheme in upper case
        f"host=127.0.0.1 port=9 user=nobody password={SECRET} dbname=x",  # libpq's keyword form
        f"host=127.0.0.1 port=9 user=nobody password='{SECRET} x' dbname=x",
    ],
)
def test_any_postgresql_address_is_refused_with_exit_2_and_never_shown(address: str, tmp_path: Path) -> None:
    """An unreachable PostgreSQL address, in any form, exits 2 naming it without its password."""
    done = _cli(["--port", "0", "--database", address], tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "hunter2" not in done.stderr + done.stdout
    assert "PostgreSQL" in done.stderr or "postgresql" in done.stderr.lower()
    assert not list(tmp_path.glob("host=*")), "the keyword form was taken for a SQLite file name"


def test_keyword_form_and_upper_case_scheme_open_postgresql(postgres_dsn: str, start_server: Any) -> None:
    """A reachable database given in libpq's keyword form, or with POSTGRESQL://, is PostgreSQL."""
    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(postgres_dsn)
    keywords = " ".join(f"{key}={value}" for key, value in parts.items())
    for address in (keywords, "POSTGRESQL://" + postgres_dsn.split("://", 1)[1]):
        server = start_server("--database", address)
        page = server.get("/")
        assert page.status_code == 200
        assert "PostgreSQL" in page.text
        assert str(parts.get("password")) not in page.text
        server.stop()


def test_accepted_connections_send_small_answers_at_once(tmp_path: Path) -> None:
    """The listening socket is TCP's own, so asyncio turns Nagle off on each accepted connection."""
    from agenttrace._cli.server import listening_socket

    sock = listening_socket("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
        client = socket.create_connection(sock.getsockname()[:2])
        accepted, _ = sock.accept()
        # What asyncio's _set_nodelay checks before setting TCP_NODELAY on an accepted socket.
        assert accepted.proto == socket.IPPROTO_TCP
        accepted.close()
        client.close()
    finally:
        sock.close()


def test_spans_whose_parents_form_a_cycle_are_shown_marked(start_server: Any, tmp_path: Path) -> None:
    """Spans that are their own parent, or whose parents loop, appear on the page, marked, and in show."""
    from agenttrace._format.files import read_spans
    from agenttrace._format.tree import in_parent_cycle, span_tree

    from .test_ingest_edges import TRACE, _document, _span

    server = start_server("--database", f"sqlite:///{tmp_path / 'c.db'}")
    document = _document(
        _span(1, "root-span"),
        _span(2, "loop-a", parent=3, start=2),
        _span(3, "loop-b", parent=2, start=3),
        _span(4, "own-parent", parent=4, start=4),
        _span(5, "under-loop", parent=2, start=5),
    )
    assert server.post("/v1/traces", json=document).status_code == 200
    page = server.get(f"/traces/{TRACE}").text
    for name in ("root-span", "loop-a", "loop-b", "own-parent", "under-loop"):
        assert name in page
    assert page.count("its parents form a cycle") == 2
    download = tmp_path / "c.jsonl"
    download.write_bytes(server.get(f"/api/traces/{TRACE}/download").content)
    spans = read_spans(download)
    roots, children = span_tree(spans)
    ids = {s.span_id for s in spans}
    assert sorted(r.name for r in roots) == ["loop-a", "own-parent", "root-span"]
    assert [r.name for r in roots if in_parent_cycle(r, ids)] == ["loop-a", "own-parent"]
    shown = {s.name for s in roots} | {c.name for kids in children.values() for c in kids}
    assert shown == {"root-span", "loop-a", "loop-b", "own-parent", "under-loop"}


def test_a_database_on_a_read_only_mount_is_refused_at_start(tmp_path: Path) -> None:
    """A SQLite file the server can read but not write exits 2 at start, not 503 at every ingest."""
    import os
    import subprocess

    from agenttrace._server.store.sqlite import SQLiteStore

    source, mount = tmp_path / "src", tmp_path / "ro"
    source.mkdir()
    mount.mkdir()
    store = SQLiteStore(source / "server.db")
    store._acquire().execute("SELECT 1")  # leaves the WAL files, as a server killed mid-way does
    bind = subprocess.run(["mount", "--bind", str(source), str(mount)], capture_output=True, check=False)
    if bind.returncode != 0 or os.geteuid() != 0:
        store.close()
        pytest.skip(f"a read-only mount needs root and mount(8): {bind.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mount)], check=True)
        done = _cli(["--port", "0", "--database", f"sqlite:///{mount / 'server.db'}"], tmp_path)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "readonly" in done.stderr or "read-only" in done.stderr
        assert "listening on" not in done.stdout
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        store.close()


def _stall(url: str, sent: bytes) -> socket.socket:
    """A connection that sends a POST's head and part of its body, then nothing."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    head = f"POST /v1/traces HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
    sock.sendall(f"{head}Content-Length: 1000\r\n\r\n".encode() + sent)
    return sock


def test_stalled_uploads_give_their_turn_up(start_server: Any, tmp_path: Path) -> None:
    """Two uploads that stop mid-body do not block ingest: they are answered 408 and others go on."""
    from .test_ingest_edges import _document, _span

    server = start_server("--database", f"sqlite:///{tmp_path / 's.db'}", "--request-timeout", "1")
    stalled = [_stall(server.url, b"{}"), _stall(server.url, b"{}")]
    try:
        # Both ingest slots are held by the stalled bodies until their timeout; this one then goes in.
        answer = server.post("/v1/traces", json=_document(_span(9, "after-the-stall")))
        assert answer.status_code == 200
        for sock in stalled:
            sock.settimeout(30)
            assert sock.recv(1024).startswith(b"HTTP/1.1 408")
    finally:
        for sock in stalled:
            sock.close()
    log = server.log.read_text()
    assert "Traceback" not in log


def test_a_client_that_disconnects_mid_body_leaves_no_traceback(start_server: Any, tmp_path: Path) -> None:
    """A client gone mid-upload is not an error of the server: nothing is logged."""
    server = start_server("--database", f"sqlite:///{tmp_path / 'd.db'}")
    _stall(server.url, b'{"resourceSpans"').close()
    assert server.get("/healthz").status_code == 200
    assert server.get("/api/traces").status_code == 200
    server.stop()
    assert "Traceback" not in server.log.read_text()


def test_without_keys_only_loopback_host_names_are_served(start_server: Any, tmp_path: Path) -> None:
    """A page reached through another name (DNS rebinding) is refused; loopback names are served."""
    import httpx

    server = start_server("--database", f"sqlite:///{tmp_path / 'h.db'}")
    port = server.url.rsplit(":", 1)[1]
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}"):
        answer = httpx.get(server.url + "/api/traces", headers={"Host": host}, timeout=30)
        assert answer.status_code == 421, host
        assert "traces" not in answer.text
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "127.0.0.1"):
        assert httpx.get(server.url + "/api/traces", headers={"Host": host}, timeout=30).status_code == 200


def test_pages_carry_security_headers(start_server: Any, tmp_path: Path) -> None:
    """Every answer forbids framing and type sniffing, and pages may run no inline or foreign script."""
    server = start_server("--database", f"sqlite:///{tmp_path / 'p.db'}")
    for path in ("/", "/api/traces", "/traces/" + "0" * 32):
        headers = server.get(path).headers
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        # Script: the server's own file only (the run page's), never inline or from elsewhere.
        script_src = headers["content-security-policy"].split("script-src", 1)[1].split(";", 1)[0]
        assert script_src.strip() == "'self'"
        assert "default-src 'none'" in headers["content-security-policy"]


def test_an_unauthenticated_protobuf_client_gets_a_protobuf_status(start_server: Any, tmp_path: Path) -> None:
    """A 401 to an OTLP/protobuf export is a google.rpc.Status in protobuf, as OTLP clients read it."""
    from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]

    from .conftest import KEY

    server = start_server("--database", f"sqlite:///{tmp_path / 'a.db'}", "--api-key", KEY)
    answer = server.post("/v1/traces", content=b"", headers={"Content-Type": "application/x-protobuf"})
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/x-protobuf"
    status = Status.FromString(answer.content)
    assert status.code == 16  # UNAUTHENTICATED
    assert "API key" in status.message


def test_a_replays_page_marks_served_and_live_calls_and_the_first_divergence(start_server: Any, tmp_path: Path) -> None:
    """The run page of a replay says which calls were served, which went live, and where the run diverged."""
    from .test_ingest_edges import TRACE, _attr, _document, _span

    server = start_server("--database", f"sqlite:///{tmp_path / 'r.db'}")
    text = lambda value: {"stringValue": value}  # noqa: E731
    run = _span(
        1,
        "planner",
        attributes=[
            _attr("agenttrace.kind", text("run")),
            _attr("agenttrace.run.mode", text("replay")),
            _attr("agenttrace.replay.first_divergence", text("httpx call #1 POST http://llm/v1/chat/completions")),
        ],
    )
    served = _span(
        2,
        "GET",
        parent=1,
        start=2,
        attributes=[
            _attr("agenttrace.kind", text("call")),
            _attr("agenttrace.call.replayed", {"boolValue": True}),
            _attr("url.full", text("http://tools/lookup")),
        ],
    )
    live = _span(
        3,
        "POST",
        parent=1,
        start=3,
        attributes=[
            _attr("agenttrace.kind", text("call")),
            _attr("agenttrace.call.live", {"boolValue": True}),
            _attr("url.full", text("http://llm/v1/chat/completions")),
        ],
    )
    assert server.post("/v1/traces", json=_document(run, served, live)).status_code == 200
    page = server.get(f"/traces/{TRACE}").text
    assert "first divergence: httpx call #1 POST http://llm/v1/chat/completions" in page
    assert page.count(">replayed<") == 1
    assert page.count(">live (the replay let it through)<") == 1
