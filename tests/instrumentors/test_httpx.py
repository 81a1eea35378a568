"""httpx and httpx2, sync and async, recorded against the loopback server."""

from __future__ import annotations

import gzip
import importlib
import json
import socket
from types import ModuleType
from typing import Any

import pytest

import agenttrace
from tests.recording import Recorder
from tests.servers import TestServer, binary_payload

MODULES = ["httpx", "httpx2"]


@pytest.fixture(params=MODULES)
def hx(request: pytest.FixtureRequest) -> ModuleType:
    """The httpx-shaped module under test."""
    return importlib.import_module(request.param)


def test_json_roundtrip_sync(hx: ModuleType, recorder: Recorder, server: TestServer) -> None:
    """A sync POST is one CLIENT call span with semconv attributes, the step, and exact bodies."""

    def agent() -> bytes:
        with agenttrace.step("fetch", type="tool_call"), hx.Client() as client:
            response = client.post(server.url("/json?q=1"), json={"a": 1})
            return response.content

    content, trace = recorder.run(agent)
    (span,) = trace.call_spans
    attrs = trace.attrs(span)
    assert span["name"] == "POST"
    assert span["kind"] == 3  # SPAN_KIND_CLIENT
    assert attrs["http.request.method"] == "POST"
    assert attrs["url.full"] == server.url("/json?q=1")
    assert attrs["server.address"] == "127.0.0.1"
    assert attrs["server.port"] == server.port
    assert attrs["http.response.status_code"] == 200
    assert attrs["agenttrace.call.library"] == hx.__name__
    assert attrs["agenttrace.step.name"] == "fetch"
    assert attrs["agenttrace.call.step_path"] == ["fetch"]
    assert attrs["agenttrace.call.ordinal"] == 0
    (exchange,) = trace.exchanges
    assert json.loads(exchange.request.body) == {"a": 1}
    assert exchange.response is not None
    assert exchange.response.body.data == content
    assert exchange.response.stream_end == "complete"
    assert set(trace.events(span)) == {"agenttrace.request", "agenttrace.response"}


def test_json_roundtrip_async(hx: ModuleType, recorder: Recorder, server: TestServer) -> None:
    """An async client is recorded the same way, bytes equal to what the client received."""

    async def agent() -> bytes:
        async with hx.AsyncClient() as client:
            with agenttrace.step("async-fetch"):
                response = await client.get(server.url("/json"))
            return response.content

    content, trace = recorder.run(agent)
    (exchange,) = trace.exchanges
    assert exchange.response is not None
    assert exchange.response.body.data == content
    assert exchange.step_path == ("async-fetch",)


def test_gzip_kept_compressed(hx: ModuleType, recorder: Recorder, server: TestServer) -> None:
    """A gzip response is recorded as the raw compressed bytes the client decoded."""

    def agent() -> bytes:
        return hx.get(server.url("/gzip?size=5000")).content

    content, trace = recorder.run(agent)
    (exchange,) = trace.exchanges
    assert exchange.response is not None
    assert ("Content-Encoding", "gzip") in exchange.response.headers
    assert exchange.response.body.data != content
    assert gzip.decompress(exchange.response.body.data) == content


def test_binary_body_base64(hx: ModuleType, recorder: Recorder, server: TestServer) -> None:
    """A non-UTF-8 body is stored base64 and decodes to the exact bytes."""

    def agent() -> bytes:
        return hx.get(server.url("/binary?size=1001")).content

    content, trace = recorder.run(agent)
    assert content == binary_payload(1001)
    (span,) = trace.call_spans
    assert trace.events(span)["agenttrace.response"]["agenttrace.body.encoding"] == "base64"
    assert trace.exchanges[0].response.body.data == content  # type: ignore[union-attr]


def test_sse_stream_chunks(hx: ModuleType, recorder: Recorder, server: TestServer) -> None:
    """A streamed response is one response event with every chunk's size and time offset."""

    def agent() -> list[bytes]:
        with hx.stream("GET", server.url("/sse?n=5&delay=0.01")) as response:
            return list(response.iter_raw())

    chunks, trace = recorder.run(agent)
    (span,) = trace.call_spans
    assert len(span["events"]) == 2
    response = trace.exchanges[0].response
    assert response is not None
    assert response.body.data == b"".join(chunks)
    assert list(response.chunk_sizes) == [len(c) for c in chunks]
    assert len(response.chunk_offsets_ns) == len(chunks)
    assert list(response.chunk_offsets_ns) == sorted(response.chunk_offsets_ns)
    assert response.stream_end == "complete"


def test_stream_closed_early(hx: ModuleType, recorder: Recorder, server: TestServer) -> None:
    """A consumer that stops after the first chunk is recorded as closed_early with what it got."""

    def agent() -> bytes:
        with hx.stream("GET", server.url("/sse?n=20")) as response:
            for chunk in response.iter_raw():
                return bytes(chunk)
        return b""

    first, trace = recorder.run(agent)
    response = trace.exchanges[0].response
    assert response is not None
    assert response.stream_end == "closed_early"
    assert response.body.data.startswith(first)


def test_stream_never_read(hx: ModuleType, recorder: Recorder, server: TestServer) -> None:
    """A response whose body is never read is recorded as not_read, with its head."""

    def agent() -> int:
        with hx.stream("GET", server.url("/sse?n=3")) as response:
            return int(response.status_code)

    _, trace = recorder.run(agent)
    response = trace.exchanges[0].response
    assert response is not None
    assert response.status_code == 200
    assert response.stream_end == "not_read"
    assert response.body.data == b""


def test_broken_stream(hx: ModuleType, recorder: Recorder, server: TestServer) -> None:
    """A stream cut midway keeps the chunks received and an error event of the client's type."""

    def agent() -> tuple[bytes, str]:
        received = b""
        try:
            with hx.stream("GET", server.url("/broken?n=3")) as response:
                for chunk in response.iter_raw():
                    received += chunk
        except hx.HTTPError as exc:
            return received, f"{type(exc).__module__}.{type(exc).__qualname__}"
        return received, ""

    (received, error_type), trace = recorder.run(agent)
    assert error_type
    exchange = trace.exchanges[0]
    assert exchange.response is not None
    assert exchange.response.stream_end == "error"
    assert exchange.response.body.data == received
    assert exchange.error is not None
    assert exchange.error.type == error_type
    assert exchange.error.phase == "stream"


def test_connect_error(hx: ModuleType, recorder: Recorder) -> None:
    """A refused connection is an error event naming the client's exception type."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def agent() -> str:
        try:
            hx.get(f"http://127.0.0.1:{port}/")
        except hx.ConnectError as exc:
            return f"{hx.__name__}.{type(exc).__name__}"
        return ""

    error_type, trace = recorder.run(agent)
    exchange = trace.exchanges[0]
    assert exchange.response is None
    assert exchange.error is not None
    assert exchange.error.type == error_type == f"{hx.__name__}.ConnectError"
    assert exchange.error.phase == "request"
    attrs = trace.attrs(trace.call_spans[0])
    assert attrs["error.type"] == error_type
    assert trace.call_spans[0]["status"]["code"] == 2


def test_read_timeout(hx: ModuleType, recorder: Recorder, server: TestServer) -> None:
    """A read timeout is recorded as the client's ReadTimeout."""

    def agent() -> None:
        with pytest.raises(hx.ReadTimeout):
            hx.get(server.url("/slow?delay=1"), timeout=0.05)

    _, trace = recorder.run(agent)
    assert trace.exchanges[0].error is not None
    assert trace.exchanges[0].error.type == f"{hx.__name__}.ReadTimeout"


def test_status_code_error_type(hx: ModuleType, recorder: Recorder, server: TestServer) -> None:
    """A 5xx response sets error.type to the status code, as HTTP semconv asks."""

    def agent() -> int:
        return int(hx.get(server.url("/status/503")).status_code)

    status, trace = recorder.run(agent)
    assert status == 503
    assert trace.attrs(trace.call_spans[0])["error.type"] == "503"


def test_redirect_each_hop_recorded(hx: ModuleType, recorder: Recorder, server: TestServer) -> None:
    """Redirects run above the transport: each hop is its own call, in order."""

    def agent() -> Any:
        with hx.Client(follow_redirects=True) as client:
            return client.get(server.url("/redirect?to=/json")).json()

    body, trace = recorder.run(agent)
    urls = [e.request.url for e in trace.exchanges]
    assert urls == [server.url("/redirect?to=/json"), server.url("/json")]
    assert body["headers"]["cookie"] == "session=abc123"
