"""The websockets asyncio client, recorded against a real websockets server on 127.0.0.1 and replayed."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Request, Response

import agenttrace
from agenttrace._core import errors as _warn
from agenttrace._replay import entropy
from tests.recording import Recorder, read_trace, replaying

BINARY = bytes(range(256)) + b"\xff\xfe not utf-8"


class WebSocketServer:
    """A websockets server on its own event loop thread; counts the connections it accepted.

    Paths: ``/stream`` answers each message with a greeting-free stream (three text frames, a
    binary frame, then ``{"type": "done"}``); ``/echo`` sends each message back as it came;
    ``/welcome`` greets first, then echoes; ``/close`` greets then closes with 4000 "bye";
    ``/reject`` refuses the handshake with 403.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve_forever, daemon=True)
        self.connections = 0
        self.server: Server | None = None
        self.port = 0

    def _serve_forever(self) -> None:
        # The server shares the agent's process: its draws (each connection's uuid4 id) are not the run's.
        with entropy.exempt():
            self.loop.run_forever()

    def __enter__(self) -> WebSocketServer:
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _start(self) -> Server:
        return await serve(self._handler, "127.0.0.1", 0, process_request=self._process_request)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.connections += 1
        if request.path == "/reject":
            return connection.respond(403, "not for you\n")
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else ""
        if path in ("/welcome", "/close"):
            await ws.send(json.dumps({"type": "welcome"}))
        if path == "/close":
            await ws.close(4000, "bye")
            return
        async for message in ws:
            if path == "/stream":
                for i in range(3):
                    await ws.send(json.dumps({"type": "delta", "i": i}))
                await ws.send(BINARY)
                await ws.send(json.dumps({"type": "done"}))
            else:
                await ws.send(message)

    def url(self, path: str) -> str:
        """The ws:// URL of ``path``."""
        return f"ws://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        """Close the server and its loop (idempotent)."""
        if self.server is None:
            return
        server, self.server = self.server, None

        async def close() -> None:
            server.close()
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def wss() -> Iterator[WebSocketServer]:
    """A websockets server of this test only."""
    with WebSocketServer() as server:
        yield server


async def _until_done(conn: Any) -> list[Any]:
    out: list[Any] = []
    async for message in conn:
        out.append(message)
        if isinstance(message, str) and json.loads(message).get("type") == "done":
            break
    return out


def stream_agent(url: str, first: dict[str, Any], second: str = '{"type": "ask", "text": "more"}') -> Any:
    """Two questions on one connection, each read to its "done" frame, then a uuid4 and a close."""

    async def agent() -> dict[str, Any]:
        with agenttrace.step("talk", type="tool_call"):
            async with connect(url, additional_headers={"Authorization": "Bearer sk-secret-123"}) as conn:
                await conn.send(json.dumps(first))
                one = await _until_done(conn)
                await conn.send(second)
                two = await _until_done(conn)
        return {"one": one, "two": two, "id": str(uuid.uuid4())}

    return agent


def _record(recorder: Recorder, agent: Any) -> tuple[Any, Any]:
    result, trace = recorder.run(agent)
    return result, trace


def test_records_the_handshake_and_every_frame_in_order(recorder: Recorder, wss: WebSocketServer) -> None:
    """One call span: the handshake (secret header redacted) and each frame, both ways, in order, timed."""
    result, trace = _record(recorder, stream_agent(wss.url("/stream"), {"type": "ask", "text": "hi"}))
    assert result["one"][3] == BINARY
    (span,) = trace.call_spans  # no raw socket `connect` span beside it
    attrs = trace.attrs(span)
    assert attrs["agenttrace.call.library"] == "websockets"
    assert attrs["url.full"] == wss.url("/stream")
    assert attrs["http.response.status_code"] == 101
    assert attrs["agenttrace.call.step_path"] == ["talk"]
    (exchange,) = trace.exchanges
    headers = dict(exchange.request.headers)
    assert headers["Authorization"].startswith("[REDACTED sha256:")
    assert "Sec-WebSocket-Key" not in headers
    assert headers["Upgrade"] == "websocket"
    assert exchange.response is not None
    assert exchange.response.status_code == 101
    assert dict(exchange.response.headers)["Upgrade"] == "websocket"
    frames = exchange.frames
    assert [(f.direction, f.opcode) for f in frames] == [
        ("sent", "text"),
        *[("received", "text")] * 3,
        ("received", "binary"),
        ("received", "text"),
        ("sent", "text"),
        *[("received", "text")] * 3,
        ("received", "binary"),
        ("received", "text"),
        ("sent", "close"),
        ("received", "close"),
    ]
    assert json.loads(frames[0].data) == {"type": "ask", "text": "hi"}
    assert frames[4].data == BINARY
    offsets = [f.offset_ns for f in frames]
    assert offsets == sorted(offsets)
    assert set(trace.events(span)) == {"agenttrace.request", "agenttrace.response", "agenttrace.websocket"}


def test_governance_replay_serves_the_frames_with_the_server_stopped(
    recorder: Recorder, wss: WebSocketServer, tmp_path: Path
) -> None:
    """Replay gives the agent the recorded frames (text and binary, same ids) without any connection."""
    agent = stream_agent(wss.url("/stream"), {"type": "ask", "text": "hi"})
    recorded, _ = _record(recorder, agent)
    connections = wss.connections
    wss.stop()
    with replaying(tmp_path):
        replayed = asyncio.run(agenttrace.run("test-agent")(agent)())
    assert replayed == recorded
    assert wss.connections == connections
    (replay_file,) = (tmp_path / "replay").glob("*.jsonl")
    (span,) = read_trace(replay_file).call_spans
    attrs = read_trace(replay_file).attrs(span)
    assert attrs["agenttrace.call.replayed"] is True
    assert attrs["agenttrace.call.library"] == "websockets"


def test_a_changed_sent_frame_fails_governance_with_the_json_path(
    recorder: Recorder, wss: WebSocketServer, tmp_path: Path
) -> None:
    """The agent's first frame differs: ReplayMismatchError names the connection, the frame and $.text."""
    _record(recorder, stream_agent(wss.url("/stream"), {"type": "ask", "text": "hi"}))
    wss.stop()
    changed = stream_agent(wss.url("/stream"), {"type": "ask", "text": "bye"})
    with replaying(tmp_path), pytest.raises(agenttrace.ReplayMismatchError) as caught:
        asyncio.run(agenttrace.run("test-agent")(changed)())
    message = str(caught.value)
    assert f"websockets connection GET {wss.url('/stream')}: sent frame #1 differs" in message
    assert 'body $.text: recorded "hi", called "bye"' in message


def test_json_frames_compare_as_data(recorder: Recorder, wss: WebSocketServer, tmp_path: Path) -> None:
    """Key order and spacing of a JSON frame are not a difference."""
    recorded, _ = _record(recorder, stream_agent(wss.url("/stream"), {"type": "ask", "text": "hi"}))
    wss.stop()
    respaced = stream_agent(wss.url("/stream"), {"text": "hi", "type": "ask"}, '{ "text" : "more", "type": "ask" }')
    with replaying(tmp_path):
        assert asyncio.run(agenttrace.run("test-agent")(respaced)()) == recorded


def test_relaxed_replay_warns_and_serves_the_recorded_frames(
    recorder: Recorder, wss: WebSocketServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Relaxed: a changed frame is a WARNING naming the difference; the recorded answer is still served."""
    recorded, _ = _record(recorder, stream_agent(wss.url("/stream"), {"type": "ask", "text": "hi"}))
    wss.stop()
    _warn._reset_for_tests()
    changed = stream_agent(wss.url("/stream"), {"type": "ask", "text": "bye"})
    with replaying(tmp_path, level="relaxed"):
        replayed = asyncio.run(agenttrace.run("test-agent")(changed)())
    assert replayed == recorded
    err = capsys.readouterr().err
    assert "WARNING: replay: websockets connection GET" in err
    assert "sent frame #1 differs from the recording" in err


def test_an_extra_sent_frame_fails_governance(recorder: Recorder, wss: WebSocketServer, tmp_path: Path) -> None:
    """A frame beyond those recorded is named as such."""

    def agent(extra: bool) -> Any:
        async def run() -> list[Any]:
            async with connect(wss.url("/echo")) as conn:
                await conn.send("one")
                out = [await conn.recv()]
                if extra:
                    await conn.send(b"two")
            return out

        return run

    _record(recorder, agent(False))
    wss.stop()
    with replaying(tmp_path), pytest.raises(agenttrace.ReplayMismatchError) as caught:
        asyncio.run(agenttrace.run("test-agent")(agent(True))())
    assert "sent frame #2 (binary, 3 bytes) is not in the recording, which holds 1 sent frame(s)" in str(caught.value)


def test_binary_and_text_echo_round_trip(recorder: Recorder, wss: WebSocketServer, tmp_path: Path) -> None:
    """Binary frames keep their exact bytes and type; a greeting sent before any frame is served at once."""

    async def agent() -> list[Any]:
        async with connect(wss.url("/welcome")) as conn:
            out: list[Any] = [await conn.recv()]
            await conn.send(BINARY)
            out.append(await conn.recv())
            await conn.send("héllo")
            out.append(await conn.recv())
            await (await conn.ping())  # answered by the server live, at once in replay
        return out

    recorded, trace = _record(recorder, agent)
    assert recorded == ['{"type": "welcome"}', BINARY, "héllo"]
    (exchange,) = trace.exchanges
    assert [f.opcode for f in exchange.frames if f.direction == "received"][:3] == ["text", "binary", "text"]
    wss.stop()
    with replaying(tmp_path):
        assert asyncio.run(agenttrace.run("test-agent")(agent)()) == recorded


def test_a_close_by_the_server_is_served(recorder: Recorder, wss: WebSocketServer, tmp_path: Path) -> None:
    """The server's close code and reason reach the agent in replay as they did live."""

    async def agent() -> list[Any]:
        out: list[Any] = []
        async with connect(wss.url("/close")) as conn:
            try:
                while True:
                    out.append(await conn.recv())
            except ConnectionClosed as exc:
                out.append(
                    [type(exc).__name__, exc.rcvd.code if exc.rcvd else None, exc.rcvd.reason if exc.rcvd else ""]
                )
        return out

    recorded, _ = _record(recorder, agent)
    assert recorded == ['{"type": "welcome"}', ["ConnectionClosedError", 4000, "bye"]]
    wss.stop()
    with replaying(tmp_path):
        assert asyncio.run(agenttrace.run("test-agent")(agent)()) == recorded


def test_a_rejected_handshake_is_replayed(recorder: Recorder, wss: WebSocketServer, tmp_path: Path) -> None:
    """A 403 answer to the handshake is recorded and raised again as InvalidStatus with its response."""

    async def agent() -> list[Any]:
        try:
            async with connect(wss.url("/reject")):
                return ["connected"]
        except InvalidStatus as exc:
            return [str(exc), exc.response.status_code, bytes(exc.response.body)]

    recorded, _ = _record(recorder, agent)
    assert recorded == ["server rejected WebSocket connection: HTTP 403", 403, b"not for you\n"]
    wss.stop()
    with replaying(tmp_path):
        assert asyncio.run(agenttrace.run("test-agent")(agent)()) == recorded


def test_headers_object_is_served(recorder: Recorder, wss: WebSocketServer, tmp_path: Path) -> None:
    """The served connection's handshake response is the recorded one (status, headers)."""

    async def agent() -> list[Any]:
        async with connect(wss.url("/echo")) as conn:
            response = conn.response
            assert isinstance(response.headers, Headers)
            return [response.status_code, response.headers["Upgrade"]]

    recorded, _ = _record(recorder, agent)
    wss.stop()
    with replaying(tmp_path):
        assert asyncio.run(agenttrace.run("test-agent")(agent)()) == recorded == [101, "websocket"]


def test_entry_point_and_instrumentor_toggle_the_patch() -> None:
    """opentelemetry-instrument finds the instrumentor; instrument() and uninstrument() put and remove the patch."""
    from importlib.metadata import entry_points

    from agenttrace.instrumentors.websockets import WebSocketsInstrumentor
    from agenttrace.instrumentors.websockets.adapter import websockets_adapter

    (found,) = [e for e in entry_points(group="opentelemetry_instrumentor") if e.name == "agenttrace_websockets"]
    assert found.load() is WebSocketsInstrumentor
    assert not websockets_adapter().installed
    WebSocketsInstrumentor().instrument()
    try:
        assert websockets_adapter().installed
    finally:
        WebSocketsInstrumentor().uninstrument()
    assert not websockets_adapter().installed


def test_show_and_diff_print_a_connection(recorder: Recorder, wss: WebSocketServer, tmp_path: Path) -> None:
    """`agenttrace show` gives the URL, status and frame counts; `agenttrace diff` the first differing frame's path."""
    from tests.conftest import agenttrace_cli

    _record(recorder, stream_agent(wss.url("/stream"), {"type": "ask", "text": "hi"}))
    _record(recorder, stream_agent(wss.url("/stream"), {"type": "ask", "text": "bye"}))
    first, second = sorted(tmp_path.glob("*.jsonl"), key=lambda p: p.stat().st_mtime_ns)
    shown = agenttrace_cli("show", "--no-color", str(first))
    assert shown.returncode == 0, shown.stderr
    assert f"GET {wss.url('/stream')} → 101" in shown.stdout
    assert "3 frame(s) sent, 11 received" in shown.stdout
    diff = agenttrace_cli("diff", "--no-color", str(first), str(second))
    assert 'sent frame #1 body $.text: A "hi", B "bye"' in diff.stdout, diff.stdout + diff.stderr


def test_frames_survive_the_event_list_form(recorder: Recorder, wss: WebSocketServer) -> None:
    """`replay_events` (the flattened list form) keeps every frame, text and binary, with its place and time."""
    from agenttrace._format.events import call_event, exchange_of

    _, trace = _record(recorder, stream_agent(wss.url("/stream"), {"type": "ask", "text": "hi"}))
    (exchange,) = trace.exchanges
    again = exchange_of(json.loads(json.dumps(call_event(exchange))))
    assert again.frames == exchange.frames
    assert any(f.data == BINARY for f in again.frames)
