"""urllib3 (PoolManager) and requests, recorded at the connection pool."""

from __future__ import annotations

import gzip
import socket

import pytest
import requests
import urllib3

import agenttrace
from tests.recording import Recorder
from tests.servers import TestServer, binary_payload


def test_requests_post_json(recorder: Recorder, server: TestServer) -> None:
    """A requests POST is one urllib3 call span under its step, bytes equal to what requests got."""

    def agent() -> bytes:
        with agenttrace.step("lookup"):
            response = requests.post(server.url("/json"), json={"sku": "A123"}, timeout=5)
            return response.content

    content, trace = recorder.run(agent)
    (exchange,) = trace.exchanges
    assert exchange.library == "urllib3"
    assert exchange.step_path == ("lookup",)
    assert exchange.request.url == server.url("/json")
    assert exchange.request.body == b'{"sku": "A123"}'
    assert exchange.response is not None
    assert exchange.response.body.data == content
    assert exchange.response.stream_end == "complete"
    attrs = trace.attrs(trace.call_spans[0])
    assert attrs["http.response.status_code"] == 200
    assert attrs["server.port"] == server.port


def test_requests_gzip_raw(recorder: Recorder, server: TestServer) -> None:
    """requests decodes gzip; the recording keeps the compressed bytes."""

    def agent() -> bytes:
        return requests.get(server.url("/gzip?size=3000"), timeout=5).content

    content, trace = recorder.run(agent)
    body = trace.exchanges[0].response.body.data  # type: ignore[union-attr]
    assert gzip.decompress(body) == content


def test_poolmanager_binary(recorder: Recorder, server: TestServer) -> None:
    """urllib3 PoolManager with a preloaded binary body."""

    def agent() -> bytes:
        return bytes(urllib3.PoolManager().request("GET", server.url("/binary?size=333")).data)

    data, trace = recorder.run(agent)
    assert data == binary_payload(333)
    assert trace.exchanges[0].response.body.data == data  # type: ignore[union-attr]


def test_poolmanager_stream_tee(recorder: Recorder, server: TestServer) -> None:
    """preload_content=False streaming: each chunk recorded with its boundary."""

    def agent() -> list[bytes]:
        response = urllib3.PoolManager().request("GET", server.url("/sse?n=4"), preload_content=False)
        chunks = list(response.stream())
        response.release_conn()
        return chunks

    chunks, trace = recorder.run(agent)
    response = trace.exchanges[0].response
    assert response is not None
    assert response.body.data == b"".join(chunks)
    assert list(response.chunk_sizes) == [len(c) for c in chunks]
    assert response.stream_end == "complete"


def test_requests_stream_closed_early(recorder: Recorder, server: TestServer) -> None:
    """A requests stream closed after one line is recorded as closed_early."""

    def agent() -> bytes:
        with requests.get(server.url("/sse?n=30"), stream=True, timeout=5) as response:
            for line in response.iter_lines():
                return bytes(line)
        return b""

    first, trace = recorder.run(agent)
    response = trace.exchanges[0].response
    assert response is not None
    assert response.stream_end == "closed_early"
    assert first in response.body.data


def test_requests_broken_stream(recorder: Recorder, server: TestServer) -> None:
    """A connection cut midway is recorded with the chunks received and the error type."""

    def agent() -> str:
        try:
            requests.get(server.url("/broken?n=2"), timeout=5).content  # noqa: B018 - reading is the point
        except requests.RequestException as exc:
            return type(exc).__name__
        return ""

    error, trace = recorder.run(agent)
    assert error == "ChunkedEncodingError"
    exchange = trace.exchanges[0]
    assert exchange.response is not None
    assert exchange.response.stream_end == "error"
    assert exchange.error is not None
    assert exchange.error.type.startswith("urllib3.exceptions.")
    assert exchange.response.body.data.startswith(b'data: {"i": 0')


def test_connect_error(recorder: Recorder) -> None:
    """A refused connection is recorded with urllib3's exception type (each retry is a call)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def agent() -> None:
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/", timeout=5)

    _, trace = recorder.run(agent)
    (exchange,) = trace.exchanges
    assert exchange.error is not None
    assert exchange.error.type == "urllib3.exceptions.NewConnectionError"


def test_read_timeout(recorder: Recorder, server: TestServer) -> None:
    """A read timeout is recorded as urllib3's ReadTimeoutError."""

    def agent() -> None:
        with pytest.raises(requests.ReadTimeout):
            requests.get(server.url("/slow?delay=1"), timeout=0.05)

    _, trace = recorder.run(agent)
    assert trace.exchanges[0].error is not None
    assert trace.exchanges[0].error.type == "urllib3.exceptions.ReadTimeoutError"
