"""Coexistence with OpenTelemetry's own httpx/requests/urllib3 instrumentations, concurrency, safety."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import requests
from agenttrace.exporters.traffic import suppress_instrumentation as export_traffic
from agenttrace.instrumentors.httpx import HttpxInstrumentor
from agenttrace.instrumentors.urllib3 import Urllib3Instrumentor
from opentelemetry import context as otel_context
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor
from opentelemetry.instrumentation.utils import suppress_instrumentation

import agenttrace
from agenttrace._capture import record as _capture
from tests.recording import Recorder
from tests.servers import TestServer

OTEL = [HTTPXClientInstrumentor, RequestsInstrumentor, URLLib3Instrumentor]


def _agent(base: str) -> None:
    httpx.get(base + "/json")
    requests.get(base + "/json", timeout=5)


def _otel_spans(trace: object) -> list[dict[str, object]]:
    spans = trace.spans  # type: ignore[attr-defined]
    return [s for s in spans if trace.attrs(s).get("agenttrace.kind") is None and s["kind"] == 3]  # type: ignore[attr-defined]


@pytest.mark.parametrize("otel_first", [True, False])
@pytest.mark.parametrize("otel_leaves_first", [True, False])
def test_coexistence_any_order(
    recorder: Recorder, server: TestServer, otel_first: bool, otel_leaves_first: bool
) -> None:
    """Both sets of patches work together in any order; each side removes only its own."""
    ours = [HttpxInstrumentor(), Urllib3Instrumentor()]
    theirs = [cls() for cls in OTEL]

    def on(group: list[object]) -> None:
        for i in group:
            if not i.is_instrumented_by_opentelemetry:  # type: ignore[attr-defined]
                i.instrument()  # type: ignore[attr-defined]

    def off(group: list[object]) -> None:
        for i in group:
            i.uninstrument()  # type: ignore[attr-defined]

    first, second = (theirs, ours) if otel_first else (ours, theirs)
    on(first)
    on(second)
    try:
        _, trace = recorder.run(_agent, server.base_url)
        assert len(trace.exchanges) == 2  # no doubled payloads
        assert len(_otel_spans(trace)) >= 2  # theirs still produce their spans
    finally:
        leave_first, leave_second = (theirs, ours) if otel_leaves_first else (ours, theirs)
        off(leave_first)
        # Whoever is still instrumented keeps working alone.
        _, trace = recorder.run(_agent, server.base_url)
        if leave_first is theirs:
            assert len(_otel_spans(trace)) == 0
        assert len(trace.exchanges) == 2  # @run re-installs ours if they were removed
        off(leave_second)
    assert type(httpx.HTTPTransport.__dict__["handle_request"]).__name__ == "function"
    import urllib3.connectionpool

    assert type(urllib3.connectionpool.HTTPConnectionPool.__dict__["_make_request"]).__name__ == "function"
    assert type(urllib3.connectionpool.HTTPConnectionPool.__dict__["urlopen"]).__name__ == "function"


def test_instrument_idempotent() -> None:
    """instrument() twice and uninstrument() leave the original function in place."""
    original = httpx.HTTPTransport.__dict__["handle_request"]
    instrumentor = HttpxInstrumentor()
    instrumentor.instrument()
    instrumentor.instrument()
    instrumentor._instrument()  # bypass the base class guard: still one patch
    instrumentor.uninstrument()
    assert httpx.HTTPTransport.__dict__["handle_request"] is original


def test_installed_only_during_runs(server: TestServer, recorder: Recorder) -> None:
    """@run installs the patches at set-up and removes them at teardown."""
    original = httpx.HTTPTransport.__dict__["handle_request"]
    seen: list[bool] = []

    def agent() -> None:
        seen.append(httpx.HTTPTransport.__dict__["handle_request"] is not original)

    recorder.run(agent)
    assert seen == [True]
    assert httpx.HTTPTransport.__dict__["handle_request"] is original


def test_foreign_suppression_recorded_export_key_not(recorder: Recorder, server: TestServer) -> None:
    """Calls under OTel's suppress-instrumentation key (Logfire sets it) are recorded; our export key's are not."""

    def agent() -> None:
        with suppress_instrumentation():
            httpx.get(server.url("/json"))
            requests.get(server.url("/json"), timeout=5)
        token = export_traffic()
        try:
            httpx.get(server.url("/json?export=1"))
        finally:
            otel_context.detach(token)
        httpx.get(server.url("/status/200"))

    _, trace = recorder.run(agent)
    assert [e.request.url for e in trace.exchanges] == [
        server.url("/json"),
        server.url("/json"),
        server.url("/status/200"),
    ]
    assert otel_context.get_current() is not None


def test_capture_failure_falls_back(
    recorder: Recorder, server: TestServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """If recording breaks inside the interceptor, the real call proceeds and one warning is printed."""

    def broken(*args: object) -> object:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(_capture, "_open", broken)

    def agent() -> list[int]:
        return [int(httpx.get(server.url("/json")).status_code) for _ in range(3)] + [
            int(requests.get(server.url("/json"), timeout=5).status_code)
        ]

    statuses, trace = recorder.run(agent)
    assert statuses == [200, 200, 200, 200]
    assert trace.exchanges == []
    err = capsys.readouterr().err
    assert err.count("could not record a httpx call") == 1
    assert err.count("could not record a urllib3 call") == 1


def test_200_tasks_each_in_own_step(recorder: Recorder, server: TestServer) -> None:
    """200 concurrent asyncio tasks, each in its own step: every call carries its own step."""

    async def one(client: httpx.AsyncClient, i: int) -> None:
        with agenttrace.step(f"task-{i}"):
            await client.get(server.url(f"/json?i={i}"))

    async def agent() -> None:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=20)) as client:
            await asyncio.gather(*(one(client, i) for i in range(200)))

    _, trace = recorder.run(agent)
    assert len(trace.exchanges) == 200
    for exchange in trace.exchanges:
        i = exchange.request.url.rsplit("=", 1)[1]
        assert exchange.step_path == (f"task-{i}",)
    assert sorted(e.ordinal for e in trace.exchanges) == list(range(200))


def test_thread_pool_keeps_step(recorder: Recorder, server: TestServer) -> None:
    """Work submitted to a ThreadPoolExecutor (and run_in_executor) inside a step keeps its step."""

    def fetch(i: int) -> None:
        requests.get(server.url(f"/json?i={i}"), timeout=5)

    def agent() -> None:
        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = []
            for i in range(40):
                with agenttrace.step(f"job-{i}"):
                    futures.append(pool.submit(fetch, i))
            for f in futures:
                f.result()

        async def via_loop() -> None:
            loop = asyncio.get_running_loop()
            with agenttrace.step("job-loop"):
                await loop.run_in_executor(None, fetch, 999)

        asyncio.run(via_loop())

    _, trace = recorder.run(agent)
    assert len(trace.exchanges) == 41
    for exchange in trace.exchanges:
        i = exchange.request.url.rsplit("=", 1)[1]
        assert exchange.step_path == (("job-loop",) if i == "999" else (f"job-{i}",))
    assert threading.active_count() >= 1
