"""The replay seam: a lookup built from a recorded trace serves calls at transport level, no I/O."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections import defaultdict, deque
from collections.abc import Iterator

import httpx
import httpx2
import openai
import pytest
import requests
import urllib3

from agenttrace._capture.model import Exchange, RequestData
from agenttrace._capture.record import set_replay_lookup
from agenttrace._core.errors import ReplayMismatchError
from agenttrace._demo.llm_server import FakeLLMServer
from tests.recording import Recorder, Trace
from tests.servers import TestServer


def _lookup_from(trace: Trace) -> tuple[object, list[RequestData]]:
    """A trivial lookup: recorded exchanges by (library, method, url), served in recorded order."""
    queues: dict[tuple[str, str, str], deque[Exchange]] = defaultdict(deque)
    for exchange in trace.exchanges:
        queues[(exchange.library, exchange.request.method, exchange.request.url)].append(exchange)
    seen: list[RequestData] = []

    def lookup(request: RequestData, library: str) -> Exchange | None:
        seen.append(request)
        queue = queues.get((library, request.method, request.url))
        return queue.popleft() if queue else None

    return lookup, seen


@pytest.fixture
def replay() -> Iterator[None]:
    """Always remove the lookup, whatever the test did."""
    yield
    set_replay_lookup(None)


def _agent(base: str) -> list[object]:
    out: list[object] = []
    out.append(httpx.get(base + "/json").json()["id"])
    out.append(httpx2.get(base + "/gzip?size=3000").json()["id"])
    with httpx.stream("GET", base + "/sse?n=4") as r:
        out.append([bytes(c) for c in r.iter_raw()])
    out.append(requests.post(base + "/json", json={"a": 1}, timeout=5).json()["id"])
    r3 = urllib3.PoolManager().request("GET", base + "/sse?n=3", preload_content=False)
    out.append([bytes(c) for c in r3.stream()])
    r3.release_conn()
    out.append(requests.get(base + "/redirect?to=/json", timeout=5).json()["headers"].get("cookie"))
    return out


def test_serve_sync_without_io(recorder: Recorder, fresh_server: TestServer, replay: None) -> None:
    """Every sync client gets the recorded bytes, chunk boundaries and ids with zero connections."""
    base = fresh_server.base_url
    recorded, trace = recorder.run(_agent, base)
    lookup, _ = _lookup_from(trace)
    connections = fresh_server.connections
    set_replay_lookup(lookup)  # type: ignore[arg-type]
    replayed, replay_trace = recorder.run(_agent, base)
    assert replayed == recorded
    assert fresh_server.connections == connections
    for span in replay_trace.call_spans:
        assert replay_trace.attrs(span)["agenttrace.call.replayed"] is True
    assert [e.response.chunk_sizes for e in replay_trace.exchanges] == [  # type: ignore[union-attr]
        e.response.chunk_sizes
        for e in trace.exchanges  # type: ignore[union-attr]
    ]


def test_serve_async_streams(recorder: Recorder, fresh_server: TestServer, replay: None) -> None:
    """Async httpx and httpx2 streams are served chunk by chunk from the recording."""
    base = fresh_server.base_url

    async def agent() -> list[object]:
        out: list[object] = []
        for module in (httpx, httpx2):
            async with module.AsyncClient() as client:  # type: ignore[attr-defined]
                async with client.stream("GET", base + "/sse?n=3") as r:
                    out.append([bytes(c) async for c in r.aiter_raw()])
                out.append((await client.get(base + "/json")).json()["id"])
        return out

    recorded, trace = recorder.run(agent)
    lookup, _ = _lookup_from(trace)
    fresh_server.stop()
    set_replay_lookup(lookup)  # type: ignore[arg-type]
    replayed, _ = recorder.run(agent)
    assert replayed == recorded


def test_serve_recorded_errors(recorder: Recorder, replay: None) -> None:
    """A recorded connect error is raised again as the same exception type, without I/O."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x"

    def agent() -> list[str]:
        out = []
        for call in (lambda: httpx.get(url), lambda: httpx2.get(url), lambda: requests.get(url, timeout=5)):
            try:
                call()
            except Exception as exc:
                out.append(f"{type(exc).__module__}.{type(exc).__qualname__}")
        return out

    recorded, trace = recorder.run(agent)
    lookup, seen = _lookup_from(trace)
    set_replay_lookup(lookup)  # type: ignore[arg-type]
    replayed, _ = recorder.run(agent)
    assert replayed == recorded
    assert len(seen) == len(trace.exchanges)


def test_serve_broken_stream(recorder: Recorder, fresh_server: TestServer, replay: None) -> None:
    """A stream that broke midway is served up to the break, then raises the recorded error type."""
    base = fresh_server.base_url

    def agent() -> tuple[bytes, str]:
        got = b""
        try:
            with httpx.stream("GET", base + "/broken?n=2") as r:
                for chunk in r.iter_raw():
                    got += chunk
        except httpx.HTTPError as exc:
            return got, type(exc).__name__
        return got, ""

    recorded, trace = recorder.run(agent)
    lookup, _ = _lookup_from(trace)
    fresh_server.stop()
    set_replay_lookup(lookup)  # type: ignore[arg-type]
    replayed, _ = recorder.run(agent)
    assert replayed == recorded


def test_lookup_none_does_real_call(recorder: Recorder, server: TestServer, replay: None) -> None:
    """A lookup returning None lets the real call happen, recorded as usual."""
    set_replay_lookup(lambda request, library: None)

    def agent() -> int:
        return int(httpx.get(server.url("/json")).status_code)

    status, trace = recorder.run(agent)
    assert status == 200
    assert "agenttrace.call.replayed" not in trace.attrs(trace.call_spans[0])


def test_lookup_error_propagates(recorder: Recorder, server: TestServer, replay: None) -> None:
    """An exception raised by the lookup reaches the caller, before any I/O."""

    def refuse(request: RequestData, library: str) -> Exchange | None:
        raise ReplayMismatchError(f"not recorded: {request.method} {request.url}")

    set_replay_lookup(refuse)
    requests_before = len(server.requests)

    def agent() -> str:
        try:
            httpx.get(server.url("/json"))
        except ReplayMismatchError as exc:
            return str(exc)
        return ""

    message, trace = recorder.run(agent)
    assert message.startswith("not recorded: GET")
    assert len(server.requests) == requests_before
    assert trace.exchanges[0].error is not None
    assert trace.exchanges[0].error.type == "agenttrace._core.errors.ReplayMismatchError"


def test_openai_sdk_replay(recorder: Recorder, replay: None) -> None:
    """The openai SDK, plain and streamed, replays the recorded ids with the server stopped."""
    llm = FakeLLMServer().start()

    def agent() -> list[str]:
        client = openai.OpenAI(base_url=llm.openai_base_url, api_key="sk-x", max_retries=0)
        plain = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "a"}])
        stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "b"}], stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        return [plain.id, plain.choices[0].message.content or "", text]

    recorded, trace = recorder.run(agent)
    llm.stop()
    lookup, _ = _lookup_from(trace)
    set_replay_lookup(lookup)  # type: ignore[arg-type]
    replayed, _ = recorder.run(agent)
    assert replayed == recorded


def test_truncated_recording_not_served(recorder: Recorder, replay: None) -> None:
    """An exchange cut at the size limit is refused rather than served as if whole."""
    from agenttrace._capture.model import Body, ResponseData

    cut = Exchange(
        library="httpx",
        ordinal=0,
        step_path=(),
        request=RequestData("GET", "http://127.0.0.1:9/x", (), b""),
        response=ResponseData(200, (), Body(b"abc", 10, "0" * 64, truncated=True)),
    )
    set_replay_lookup(lambda request, library: cut)

    def agent() -> None:
        with pytest.raises(ReplayMismatchError, match="cut at 3 of 10 bytes"):
            httpx.get("http://127.0.0.1:9/x")

    recorder.run(agent)
    asyncio.run(asyncio.sleep(0))


def test_served_response_points_at_the_recording(recorder: Recorder, fresh_server: TestServer, replay: None) -> None:
    """A served call's response event keeps status, size, digest and chunks, and names the recorded span.

    The served body and headers are not written again: they are in the recorded span.
    """
    base = fresh_server.base_url
    recorded, trace = recorder.run(_agent, base)
    lookup, _ = _lookup_from(trace)
    set_replay_lookup(lookup)  # type: ignore[arg-type]
    replayed, replay_trace = recorder.run(_agent, base)
    assert replayed == recorded
    recorded_spans = {s["spanId"]: s for s in trace.call_spans}
    for span, exchange in zip(replay_trace.call_spans, replay_trace.exchanges):
        response = replay_trace.events(span)["agenttrace.response"]
        assert "agenttrace.body" not in response
        assert "agenttrace.http.headers" not in response
        source = recorded_spans[response["agenttrace.served.span_id"]]
        assert response["agenttrace.served.trace_id"] == source["traceId"]
        original = trace.events(source)["agenttrace.response"]
        for name in (
            "agenttrace.http.status_code",
            "agenttrace.body.size",
            "agenttrace.body.sha256",
            "agenttrace.stream.chunk_sizes",
            "agenttrace.stream.end",
        ):
            assert response[name] == original[name], name
        assert replay_trace.attrs(span)["http.response.status_code"] == original["agenttrace.http.status_code"]
        assert exchange.extra["served_from"] == f"{source['traceId']}/{source['spanId']}"
        assert "agenttrace.request" in replay_trace.events(span)  # the request is kept in full


def test_served_stream_closed_early_records_what_was_read(
    recorder: Recorder, fresh_server: TestServer, replay: None
) -> None:
    """A served stream the agent stops reading records the size and digest of the part it read."""
    base = fresh_server.base_url

    def agent(first_only: bool) -> bytes:
        with httpx.stream("GET", base + "/sse?n=4") as r:
            got = b""
            for chunk in r.iter_raw():
                got += chunk
                if first_only:
                    break
        return got

    whole, trace = recorder.run(agent, False)
    lookup, _ = _lookup_from(trace)
    set_replay_lookup(lookup)  # type: ignore[arg-type]
    part, replay_trace = recorder.run(agent, True)
    assert whole.startswith(part)
    assert len(part) < len(whole)
    response = replay_trace.events(replay_trace.call_spans[0])["agenttrace.response"]
    assert response["agenttrace.stream.end"] == "closed_early"
    assert response["agenttrace.body.size"] == len(part)
    assert response["agenttrace.body.sha256"] == hashlib.sha256(part).hexdigest()
