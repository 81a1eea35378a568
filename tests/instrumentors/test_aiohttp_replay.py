"""aiohttp replayed with no I/O: each agent runs live once, then in replay with the server stopped.

What the agent sees in replay (bodies, ids, streamed pieces, redirects, cookies, exceptions and
their text) must be what it saw live; aiohttp's own parser, decompression and redirect logic run
on the recorded bytes.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import agenttrace
from tests.recording import Recorder, Trace, read_trace, replaying
from tests.servers import TestServer

Agent = Callable[[], Awaitable[Any]]
AIOHTTP = tuple(int(part) for part in aiohttp.__version__.split(".")[:2])


def _replayed_trace(folder: Path) -> Trace:
    (path,) = (folder / "replay").glob("*.jsonl")
    return read_trace(path)


def _live_then_replay(recorder: Recorder, server: TestServer, agent: Agent) -> tuple[Any, Any]:
    """``agent`` recorded against ``server``, then replayed in governance with ``server`` stopped (a tripwire)."""
    live, _ = recorder.run(agent)
    tmp_path = recorder.folder
    server.stop()
    before = server.connections
    with replaying(tmp_path):
        replayed = asyncio.run(agenttrace.run("test-agent")(agent)())
    assert server.connections == before, "the replay reached the server"
    return live, replayed


async def _outcome(call: Callable[[aiohttp.ClientSession], Awaitable[Any]], **session: Any) -> Any:
    """What the agent got from ``call``: its value, or its exception's type and text."""
    try:
        async with aiohttp.ClientSession(**session) as client:
            return await call(client)
    except (aiohttp.ClientError, TimeoutError) as exc:  # the exception is what is compared
        return {"type": f"{type(exc).__module__}.{type(exc).__qualname__}", "str": str(exc)}


def test_payloads_streams_and_redirects_replayed(tmp_path: Path, recorder: Recorder, fresh_server: TestServer) -> None:
    """JSON, gzip, SSE read four ways, a redirect with its cookie and a 503 are served as recorded."""
    url = fresh_server.url

    async def post(client: aiohttp.ClientSession) -> Any:
        async with client.post(url("/json?q=1"), json={"a": 1}) as response:
            return response.status, await response.json()

    async def gzipped(client: aiohttp.ClientSession) -> Any:
        async with client.get(url("/gzip?size=3000")) as response:
            return response.headers["Content-Encoding"], await response.text()

    async def lines(client: aiohttp.ClientSession) -> Any:
        async with client.get(url("/sse?n=3")) as response:
            return [line async for line in response.content]

    async def fixed(client: aiohttp.ClientSession) -> Any:
        # Pieces of at most 16 bytes; where one ends depends on what had arrived (see the next test).
        async with client.get(url("/sse?n=3")) as response:
            pieces = [piece async for piece in response.content.iter_chunked(16)]
            return b"".join(pieces), max(len(piece) for piece in pieces)

    async def chunks(client: aiohttp.ClientSession) -> Any:
        async with client.get(url("/chunks?n=4&size=50")) as response:
            return b"".join([piece async for piece, _ in response.content.iter_chunks()])

    async def redirect(client: aiohttp.ClientSession) -> Any:
        async with client.get(url("/redirect?to=/json")) as response:
            body = await response.json()
            return [str(r.url) for r in response.history], str(response.url), body["headers"].get("cookie"), body["id"]

    async def failing(client: aiohttp.ClientSession) -> Any:
        async with client.get(url("/status/503"), raise_for_status=True) as response:
            return await response.read()

    async def agent() -> list[Any]:
        jar = aiohttp.CookieJar(unsafe=True)
        return [
            await _outcome(call, cookie_jar=jar) for call in (post, gzipped, lines, fixed, chunks, redirect, failing)
        ]

    live, replayed = _live_then_replay(recorder, fresh_server, agent)
    assert replayed == live
    assert live[5][2] == "session=abc123"  # the cookie the first hop set went out on the second
    assert live[6]["type"] == "aiohttp.client_exceptions.ClientResponseError"
    trace = _replayed_trace(tmp_path)
    assert {trace.attrs(s)["agenttrace.call.library"] for s in trace.call_spans} == {"aiohttp"}  # no socket spans
    assert all(trace.attrs(s)["agenttrace.call.replayed"] for s in trace.call_spans)
    assert len(trace.call_spans) == 8  # the redirect is two calls


def test_stream_served_with_recorded_chunk_boundaries(
    tmp_path: Path, recorder: Recorder, fresh_server: TestServer
) -> None:
    """iter_any() in replay yields exactly the recorded chunks, one piece each, in order."""

    async def agent() -> list[bytes]:
        async with aiohttp.ClientSession() as client, client.get(fresh_server.url("/sse?n=5&delay=0.05")) as response:
            return [piece async for piece in response.content.iter_any()]

    live, replayed = _live_then_replay(recorder, fresh_server, agent)
    (recording,) = tmp_path.glob("*.jsonl")
    response = read_trace(recording).exchanges[0].response
    assert response is not None
    assert len(response.chunk_sizes) >= 2
    assert [len(piece) for piece in replayed] == list(response.chunk_sizes)
    assert b"".join(replayed) == b"".join(live) == response.body.data


def test_failures_replayed_with_type_and_text(tmp_path: Path, recorder: Recorder, fresh_server: TestServer) -> None:
    """A refused connection, a body cut midway, a read timeout and a total timeout raise in replay as live."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]

    async def refused(client: aiohttp.ClientSession) -> Any:
        async with client.get(f"http://127.0.0.1:{closed_port}/") as response:
            return await response.read()

    async def broken(client: aiohttp.ClientSession) -> Any:
        received = []
        async with client.get(fresh_server.url("/broken?n=2")) as response:
            try:
                async for line in response.content:
                    received.append(line)
            except aiohttp.ClientPayloadError as exc:
                return received, type(exc).__name__, str(exc)
        return received, None, None

    async def slow(client: aiohttp.ClientSession) -> Any:
        async with client.get(fresh_server.url("/slow?delay=1")) as response:
            return await response.read()

    async def agent() -> list[Any]:
        return [
            await _outcome(refused),
            await _outcome(broken),
            await _outcome(slow, timeout=aiohttp.ClientTimeout(sock_read=0.05)),
            await _outcome(slow, timeout=aiohttp.ClientTimeout(total=0.05)),
        ]

    live, replayed = _live_then_replay(recorder, fresh_server, agent)
    assert replayed == live
    assert live[0]["type"] == "aiohttp.client_exceptions.ClientConnectorError"
    assert live[1][1] == "ClientPayloadError"
    assert live[2]["type"] in (  # SocketTimeoutError since aiohttp 3.10
        "aiohttp.client_exceptions.SocketTimeoutError",
        "aiohttp.client_exceptions.ServerTimeoutError",
    )
    assert live[3]["type"] == "builtins.TimeoutError"  # the session's total timeout, not a connect timeout


def test_unrecorded_call_fails_governance(tmp_path: Path, recorder: Recorder, fresh_server: TestServer) -> None:
    """In governance, a call the recording lacks raises ReplayMismatchError and reaches nothing."""
    path = ["/json?v=1"]

    async def agent() -> Any:
        async with aiohttp.ClientSession() as client, client.get(fresh_server.url(path[0])) as response:
            return await response.json()

    recorder.run(agent)
    fresh_server.stop()
    path[0] = "/json?v=2"
    with replaying(tmp_path), pytest.raises(agenttrace.ReplayMismatchError, match="aiohttp call GET"):
        asyncio.run(agenttrace.run("test-agent")(agent)())


def test_relaxed_miss_goes_live(
    tmp_path: Path, recorder: Recorder, fresh_server: TestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """In relaxed replay, a call the recording lacks warns and goes to the real server; the rest is served."""
    paths = ["/json?v=1"]

    async def agent() -> list[Any]:
        out = []
        async with aiohttp.ClientSession() as client:
            for path in paths:
                async with client.get(fresh_server.url(path)) as response:
                    out.append(json.loads(await response.read())["query"])
        return out

    recorder.run(agent)
    before = len(fresh_server.requests)
    paths.append("/json?v=2")
    with replaying(tmp_path, "relaxed"):
        replayed = asyncio.run(agenttrace.run("test-agent")(agent)())
    assert replayed == [{"v": "1"}, {"v": "2"}]
    assert fresh_server.requests[before:] == [("GET", "/json?v=2")]
    assert capsys.readouterr().err.count("WARNING: replay: aiohttp call GET") == 1


class _DroppingServer:
    """Answers the first request of each connection with keep-alive, and hangs up on the second unanswered."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self.port = self._sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn, self.connections), daemon=True).start()

    def _handle(self, conn: socket.socket, number: int) -> None:
        with conn:
            for _ in range(2):
                data = b""
                while b"\r\n\r\n" not in data:
                    got = conn.recv(65536)
                    if not got:
                        return
                    data += got
                if _:
                    return  # the second request on this connection: hang up without a word
                body = b'{"connection": %d}' % number
                head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                conn.sendall(head + body)

    def stop(self) -> None:
        self._sock.close()


@pytest.mark.skipif(AIOHTTP < (3, 10), reason="aiohttp 3.9 does not retry a request on a dropped keep-alive connection")
def test_retry_after_a_dropped_keep_alive_connection_replayed(tmp_path: Path, recorder: Recorder) -> None:
    """aiohttp's retry of a GET whose pooled connection was dropped runs again in replay, on the recorded attempts."""
    server = _DroppingServer()
    url = f"http://127.0.0.1:{server.port}/"

    async def agent() -> list[Any]:
        async with aiohttp.ClientSession() as client:
            out = []
            for _ in range(2):
                async with client.get(url) as response:
                    out.append(await response.json())
            return out

    try:
        live, trace = recorder.run(agent)
    finally:
        server.stop()
    assert live == [{"connection": 1}, {"connection": 2}]  # the second GET was retried on a new connection
    errors = [e.error.type if e.error else None for e in trace.exchanges]
    assert errors == [None, "aiohttp.client_exceptions.ServerDisconnectedError", None]
    before = server.connections
    with replaying(tmp_path):
        replayed = asyncio.run(agenttrace.run("test-agent")(agent)())
    assert replayed == live
    assert server.connections == before


def test_concurrent_tasks_each_in_own_step_replayed(
    tmp_path: Path, recorder: Recorder, fresh_server: TestServer
) -> None:
    """40 concurrent tasks over 5 connections, each in its own step: recorded with its step, served its own answer."""

    async def one(client: aiohttp.ClientSession, i: int) -> Any:
        with agenttrace.step(f"task-{i}"):
            async with client.get(fresh_server.url(f"/json?i={i}")) as response:
                body = await response.json()
            async with client.head(fresh_server.url(f"/json?head={i}")) as response:
                length = response.headers["Content-Length"]
            return body["query"], body["id"], length

    async def agent() -> list[Any]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=5)) as client:
            return list(await asyncio.gather(*(one(client, i) for i in range(40))))

    live, trace = recorder.run(agent)
    assert [q for q, _, _ in live] == [{"i": str(i)} for i in range(40)]
    for exchange in trace.exchanges:
        i = exchange.request.url.rsplit("=", 1)[1]
        assert exchange.step_path == (f"task-{i}",)
    assert sorted(e.ordinal for e in trace.exchanges) == list(range(80))
    fresh_server.stop()
    with replaying(tmp_path):
        replayed = asyncio.run(agenttrace.run("test-agent")(agent)())
    assert replayed == live


def test_response_released_late_leaves_the_next_call_on_its_connection_alone(
    tmp_path: Path, recorder: Recorder, fresh_server: TestServer
) -> None:
    """A response released after the next request took its kept-alive connection: that request is recorded whole.

    Releasing a read response sets "Connection closed" on its own (finished) reader; it is not
    the next call's end of body, which replay would otherwise serve as that error.
    """

    async def agent() -> Any:
        async with aiohttp.ClientSession() as client:
            first = await client.get(fresh_server.url("/json?i=1"))
            body = await first.json()  # read to its end: the connection goes back to the pool
            # Its events come 0.2 s apart, so the stream is still open when the first response is released.
            async with client.get(fresh_server.url("/sse?n=2&delay=0.2")) as second:
                first.release()
                lines = [line async for line in second.content]
            return body["query"], lines

    live, trace = recorder.run(agent)
    assert fresh_server.connections == 1  # the second request went out on the first one's connection
    assert [(e.response.stream_end, e.error) for e in trace.exchanges if e.response] == [("complete", None)] * 2
    assert len(live[1]) == 6  # two events and [DONE], each a line and a blank line
    fresh_server.stop()
    with replaying(tmp_path):
        replayed = asyncio.run(agenttrace.run("test-agent")(agent)())
    assert replayed == live


def test_websocket_not_recorded_and_stopped_by_governance(tmp_path: Path, recorder: Recorder) -> None:
    """ws_connect is no aiohttp call: recorded as a raw connect, and governance replay stops it instead of hanging."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer as AiohttpServer

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            await ws.send_str(f"echo: {message.data}")
        return ws

    app = web.Application()
    app.router.add_get("/ws", echo)

    async def agent(url: str) -> str:
        async with aiohttp.ClientSession() as client, client.ws_connect(url) as ws:
            await ws.send_str("hi")
            return str((await ws.receive()).data)

    async def live() -> Any:
        async with AiohttpServer(app, host="127.0.0.1") as server:
            url = str(server.make_url("/ws"))
            return await agenttrace.run("test-agent")(agent)(url), url

    (answer, url) = asyncio.run(live())
    assert answer == "echo: hi"
    (recording,) = tmp_path.glob("*.jsonl")
    libraries = [read_trace(recording).attrs(s)["agenttrace.call.library"] for s in read_trace(recording).call_spans]
    assert libraries == ["socket"]
    with replaying(tmp_path), pytest.raises(agenttrace.DeterminismLeakError):
        asyncio.run(agenttrace.run("test-agent")(agent)(url))
