"""aiohttp's client recorded against the loopback server: payloads, streams, failures, redirects, coexistence."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from agenttrace.instrumentors.aiohttp import AiohttpInstrumentor
from aiohttp.connector import BaseConnector
from aiohttp.streams import StreamReader
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor

import agenttrace
from agenttrace._capture import record as _capture
from agenttrace._format.files import read_spans
from tests.conftest import _CLEAN_ENV, run_command
from tests.recording import Recorder, Trace
from tests.servers import TestServer, binary_payload

AIOHTTP = tuple(int(part) for part in aiohttp.__version__.split(".")[:2])


def _libraries(trace: Trace) -> list[str]:
    return [trace.attrs(s)["agenttrace.call.library"] for s in trace.call_spans]


def test_json_roundtrip(recorder: Recorder, server: TestServer) -> None:
    """A POST is one CLIENT call span with semconv attributes, the step, exact bodies, and no socket spans."""

    async def agent() -> bytes:
        async with aiohttp.ClientSession() as session:
            with agenttrace.step("fetch", type="tool_call"):
                async with session.post(server.url("/json?q=1"), json={"a": 1}) as response:
                    return await response.read()

    content, trace = recorder.run(agent)
    assert _libraries(trace) == ["aiohttp"]  # its connect and DNS are part of the call
    (span,) = trace.call_spans
    attrs = trace.attrs(span)
    assert span["name"] == "POST"
    assert span["kind"] == 3  # SPAN_KIND_CLIENT
    assert attrs["http.request.method"] == "POST"
    assert attrs["url.full"] == server.url("/json?q=1")
    assert attrs["server.address"] == "127.0.0.1"
    assert attrs["server.port"] == server.port
    assert attrs["http.response.status_code"] == 200
    assert attrs["agenttrace.step.name"] == "fetch"
    assert attrs["agenttrace.call.ordinal"] == 0
    (exchange,) = trace.exchanges
    assert json.loads(exchange.request.body) == {"a": 1}
    assert ("Content-Type", "application/json") in exchange.request.headers
    assert exchange.response is not None
    assert exchange.response.body.data == content
    assert json.loads(content)["body"] == '{"a": 1}'
    assert exchange.response.stream_end == "complete"
    assert set(trace.events(span)) == {"agenttrace.request", "agenttrace.response"}


@pytest.mark.skipif(AIOHTTP < (3, 12), reason="aiohttp reads any payload again (Payload.as_bytes) since 3.12")
def test_streamed_upload_recorded_and_sent_whole(recorder: Recorder, server: TestServer) -> None:
    """A body from an async generator is recorded, and the server still receives every byte of it."""

    async def parts() -> Any:
        for part in (b"first,", b"second,", b"third"):
            yield part

    async def agent() -> Any:
        async with aiohttp.ClientSession() as session, session.post(server.url("/json"), data=parts()) as response:
            return (await response.json())["body"]

    received, trace = recorder.run(agent)
    assert received == "first,second,third"
    assert trace.exchanges[0].request.body == b"first,second,third"


def test_sync_looking_use(recorder: Recorder, server: TestServer) -> None:
    """A sync agent that runs aiohttp through asyncio.run (the way scripts call async tools) is recorded."""

    async def fetch(path: str) -> Any:
        async with aiohttp.ClientSession() as session, session.get(server.url(path)) as response:
            return await response.json()

    def agent() -> list[Any]:
        with agenttrace.step("tools"):
            return [asyncio.run(fetch("/json?n=1")), asyncio.run(fetch("/json?n=2"))]

    bodies, trace = recorder.run(agent)
    assert [e.request.url for e in trace.exchanges] == [server.url("/json?n=1"), server.url("/json?n=2")]
    assert [json.loads(e.response.body.data) for e in trace.exchanges] == bodies  # type: ignore[union-attr]
    assert all(e.step_path == ("tools",) for e in trace.exchanges)


def test_gzip_kept_compressed(recorder: Recorder, server: TestServer) -> None:
    """A gzip response is recorded as the raw compressed bytes aiohttp decompressed."""

    async def agent() -> bytes:
        async with aiohttp.ClientSession() as session, session.get(server.url("/gzip?size=5000")) as response:
            return await response.read()

    content, trace = recorder.run(agent)
    response = trace.exchanges[0].response
    assert response is not None
    assert ("Content-Encoding", "gzip") in response.headers
    assert response.body.data != content
    assert gzip.decompress(response.body.data) == content


def test_binary_body(recorder: Recorder, server: TestServer) -> None:
    """A non-UTF-8 body is kept byte for byte."""

    async def agent() -> bytes:
        async with aiohttp.ClientSession() as session, session.get(server.url("/binary?size=1001")) as response:
            return await response.read()

    content, trace = recorder.run(agent)
    assert content == binary_payload(1001)
    assert trace.exchanges[0].response.body.data == content  # type: ignore[union-attr]


def test_sse_stream_chunk_by_chunk(recorder: Recorder, server: TestServer) -> None:
    """iter_any() over a paced SSE stream: each piece the client got is one recorded chunk."""

    async def agent() -> list[bytes]:
        async with aiohttp.ClientSession() as session, session.get(server.url("/sse?n=4&delay=0.1")) as response:
            return [chunk async for chunk in response.content.iter_any()]

    chunks, trace = recorder.run(agent)
    response = trace.exchanges[0].response
    assert response is not None
    assert response.body.data == b"".join(chunks)
    # The events come 0.1 s apart, each in its own network read, so there are several chunks; a
    # piece the client got is one or more whole chunks (iter_any() joins what arrived meanwhile).
    assert len(response.chunk_sizes) >= 2
    boundaries = {sum(response.chunk_sizes[: i + 1]) for i in range(len(response.chunk_sizes))}
    assert {sum(len(c) for c in chunks[: i + 1]) for i in range(len(chunks))} <= boundaries
    assert list(response.chunk_offsets_ns) == sorted(response.chunk_offsets_ns)
    assert response.stream_end == "complete"


def test_broken_stream(recorder: Recorder, server: TestServer) -> None:
    """A body cut midway keeps what arrived and an error event of aiohttp's type, phase stream."""

    async def agent() -> tuple[bytes, str]:
        received = b""
        async with aiohttp.ClientSession() as session, session.get(server.url("/broken?n=3")) as response:
            try:
                async for chunk in response.content.iter_any():
                    received += chunk
            except aiohttp.ClientPayloadError as exc:
                return received, f"{type(exc).__module__}.{type(exc).__qualname__}"
        return received, ""

    (received, error_type), trace = recorder.run(agent)
    assert error_type == "aiohttp.client_exceptions.ClientPayloadError"
    exchange = trace.exchanges[0]
    assert exchange.response is not None
    assert exchange.response.stream_end == "error"
    assert exchange.response.body.data == received
    assert exchange.error is not None
    assert exchange.error.type == error_type
    assert exchange.error.phase == "stream"


def test_connect_error(recorder: Recorder) -> None:
    """A refused connection is an error event naming aiohttp's exception, and no raw connect span."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def agent() -> str:
        async with aiohttp.ClientSession() as session:
            try:
                await session.get(f"http://127.0.0.1:{port}/")
            except aiohttp.ClientConnectorError as exc:
                return str(exc)
        return ""

    message, trace = recorder.run(agent)
    assert message.startswith(f"Cannot connect to host 127.0.0.1:{port}")
    assert _libraries(trace) == ["aiohttp"]
    exchange = trace.exchanges[0]
    assert exchange.response is None
    assert exchange.error is not None
    assert exchange.error.type == "aiohttp.client_exceptions.ClientConnectorError"
    assert exchange.error.message == message
    assert exchange.error.phase == "request"
    assert trace.call_spans[0]["status"]["code"] == 2


def test_read_timeout(recorder: Recorder, server: TestServer) -> None:
    """A socket read timeout before the head is recorded as aiohttp's SocketTimeoutError."""

    async def agent() -> None:
        timeout = aiohttp.ClientTimeout(sock_read=0.05)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            with pytest.raises(aiohttp.ServerTimeoutError):  # SocketTimeoutError since aiohttp 3.10
                await session.get(server.url("/slow?delay=1"))

    _, trace = recorder.run(agent)
    (exchange,) = trace.exchanges
    assert exchange.error is not None
    assert (
        exchange.error.type
        == f"aiohttp.client_exceptions.{'SocketTimeoutError' if AIOHTTP >= (3, 10) else 'ServerTimeoutError'}"
    )


def test_status_code_error_type(recorder: Recorder, server: TestServer) -> None:
    """A 5xx response sets error.type to the status code, as HTTP semconv asks."""

    async def agent() -> int:
        async with aiohttp.ClientSession() as session, session.get(server.url("/status/503")) as response:
            await response.read()
            return response.status

    status, trace = recorder.run(agent)
    assert status == 503
    assert trace.attrs(trace.call_spans[0])["error.type"] == "503"


def test_redirect_each_hop_recorded(recorder: Recorder, server: TestServer) -> None:
    """Redirects run above the patch: each hop is one call; the cookie the first hop set is sent on the second."""

    async def agent() -> Any:
        jar = aiohttp.CookieJar(unsafe=True)  # the server is an IP address
        async with aiohttp.ClientSession(cookie_jar=jar) as session:
            async with session.get(server.url("/redirect?to=/json")) as response:
                return await response.json()

    body, trace = recorder.run(agent)
    assert [e.request.url for e in trace.exchanges] == [server.url("/redirect?to=/json"), server.url("/json")]
    assert [e.response.status_code for e in trace.exchanges] == [302, 200]  # type: ignore[union-attr]
    assert body["headers"]["cookie"] == "session=abc123"


def test_secrets_redacted_and_step_filter(recorder: Recorder, server: TestServer) -> None:
    """The Authorization header is redacted and a step filter masks a body field, in the recorded request."""

    async def agent() -> int:
        headers = {"Authorization": "Bearer sk-live-secret"}
        async with aiohttp.ClientSession(headers=headers) as session:
            with agenttrace.step("login", filter=["ssn"]):
                payload = {"ssn": "123-45-6789", "q": "x"}
                async with session.post(server.url("/status/200"), json=payload) as response:
                    await response.read()
                    return response.status

    status, trace = recorder.run(agent)
    assert status == 200
    request = trace.exchanges[0].request
    assert dict(request.headers)["Authorization"].startswith("[REDACTED sha256:")
    assert json.loads(request.body) == {"ssn": "[FILTERED]", "q": "x"}
    recorded = json.dumps(trace.call_spans)  # (the run span holds this file's source, literals included)
    assert "sk-live-secret" not in recorded
    assert "123-45-6789" not in recorded


def test_capture_failure_falls_back(
    recorder: Recorder, server: TestServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """If recording breaks inside the interceptor, the real calls proceed and one warning is printed."""

    def broken(*args: object) -> object:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(_capture, "_open", broken)

    async def agent() -> list[int]:
        async with aiohttp.ClientSession() as session:
            statuses = []
            for _ in range(3):
                async with session.get(server.url("/json")) as response:
                    await response.read()
                    statuses.append(response.status)
            return statuses

    statuses, trace = recorder.run(agent)
    assert statuses == [200, 200, 200]
    assert trace.exchanges == []
    assert capsys.readouterr().err.count("could not record a aiohttp call") == 1


def test_installed_only_during_runs(recorder: Recorder) -> None:
    """@run patches aiohttp at set-up and removes every patch at teardown."""
    originals = [BaseConnector.__dict__["connect"], StreamReader.__dict__["feed_data"]]
    seen: list[bool] = []

    def agent() -> None:
        seen.append(BaseConnector.__dict__["connect"] is not originals[0])
        seen.append(StreamReader.__dict__["feed_data"] is not originals[1])

    recorder.run(agent)
    assert seen == [True, True]
    assert [BaseConnector.__dict__["connect"], StreamReader.__dict__["feed_data"]] == originals


def test_entry_point_names_the_instrumentor() -> None:
    """opentelemetry-instrument finds the instrumentor through the agenttrace_aiohttp entry point."""
    (found,) = [ep for ep in entry_points(group="opentelemetry_instrumentor") if ep.name == "agenttrace_aiohttp"]
    assert found.load() is AiohttpInstrumentor
    assert AiohttpInstrumentor().instrumentation_dependencies() == ("aiohttp >= 3.9",)


ZERO_CODE_AGENT = """
    import asyncio, sys
    import aiohttp

    async def main():
        async with aiohttp.ClientSession() as session:
            async with session.get(sys.argv[1]) as response:
                print(response.status, len(await response.read()))

    asyncio.run(main())
"""


def test_zero_code_under_opentelemetry_instrument(tmp_path: Path, server: TestServer) -> None:
    """Under opentelemetry-instrument, a script's aiohttp call is recorded with its payload, and no raw connect."""
    script = tmp_path / "agent.py"
    script.write_text(textwrap.dedent(ZERO_CODE_AGENT), encoding="utf-8")
    command = str(Path(sys.executable).parent / "opentelemetry-instrument")
    env = {
        **_CLEAN_ENV,
        "AGENTTRACE_TRACE_DIR": str(tmp_path / "traces"),
        "AGENTTRACE_QUIET": "1",
        "OTEL_PYTHON_DISTRO": "agenttrace",  # chosen: installed alone is not consent (docs/instrumentors.md)
    }
    done = run_command([command, sys.executable, str(script), server.url("/json?zero=1")], tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("200 ")
    spans = [s for f in (tmp_path / "traces").glob("*.jsonl") for s in read_spans(f)]
    calls = [s for s in spans if s.attributes.get("agenttrace.kind") == "call"]
    assert [s.attributes.get("agenttrace.call.library") for s in calls] == ["aiohttp"]
    assert calls[0].attributes.get("url.full") == server.url("/json?zero=1")


@pytest.mark.parametrize("otel_first", [True, False])
@pytest.mark.parametrize("otel_leaves_first", [True, False])
def test_coexistence_with_otel_aiohttp_client(
    recorder: Recorder, server: TestServer, otel_first: bool, otel_leaves_first: bool
) -> None:
    """With opentelemetry-instrumentation-aiohttp-client on, in any order: one payload, their span its parent."""
    ours, theirs = AiohttpInstrumentor(), AioHttpClientInstrumentor()
    original = BaseConnector.__dict__["connect"]

    async def agent() -> None:
        async with aiohttp.ClientSession() as session, session.get(server.url("/json")) as response:
            await response.read()

    for instrumentor in (theirs, ours) if otel_first else (ours, theirs):
        instrumentor.instrument()
    try:
        _, trace = recorder.run(agent)
        (exchange,) = trace.exchanges
        assert exchange.response is not None
        assert exchange.response.status_code == 200
        (call,) = trace.call_spans
        (parent,) = [s for s in trace.spans if s["spanId"] == call["parentSpanId"]]
        assert "agenttrace.kind" not in trace.attrs(parent)  # OTel's own client span
        assert parent["kind"] == 3
    finally:
        first, second = (theirs, ours) if otel_leaves_first else (ours, theirs)
        first.uninstrument()
        _, trace = recorder.run(agent)  # whoever is left keeps working; @run re-installs ours
        assert len(trace.exchanges) == 1
        second.uninstrument()
    assert BaseConnector.__dict__["connect"] is original
