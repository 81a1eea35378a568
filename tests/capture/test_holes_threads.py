"""Plain threads started inside a run belong to it; the patch that makes it so lives only while runs do."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import requests
from agenttrace.exporters.traffic import suppress_instrumentation as export_traffic
from opentelemetry import context as otel_context
from opentelemetry.instrumentation.utils import suppress_instrumentation

import agenttrace
from agenttrace._core.scope import current_scope
from tests.recording import Recorder
from tests.servers import TestServer


def test_thread_started_in_a_step_records_in_that_step(recorder: Recorder, server: TestServer) -> None:
    """A Thread started inside a step records its call with the run's ordinal and the step's path."""

    def agent() -> None:
        with agenttrace.step("outer"), agenttrace.step("spawn"):
            thread = threading.Thread(target=lambda: httpx.get(server.url("/json?from=thread")))
            thread.start()
            thread.join()

    _, trace = recorder.run(agent)
    calls = trace.call_spans
    assert len(calls) == 1
    attributes = trace.attrs(calls[0])
    assert list(attributes["agenttrace.call.step_path"]) == ["outer", "spawn"]
    assert attributes["agenttrace.call.ordinal"] == 0


def test_thread_patch_lives_only_while_runs_do(recorder: Recorder) -> None:
    """Thread.start is patched while a run is active and exactly the original again afterwards."""
    original = threading.Thread.__dict__["start"]
    seen: list[bool] = []

    def agent() -> None:
        seen.append(threading.Thread.__dict__["start"] is not original)

    recorder.run(agent)
    assert seen == [True]
    assert threading.Thread.__dict__["start"] is original


def test_pool_worker_threads_do_not_keep_the_run_that_started_them(recorder: Recorder) -> None:
    """A ThreadPoolExecutor's worker started inside a run carries no scope for work submitted later, outside it."""
    executor = ThreadPoolExecutor(1)
    try:

        def agent() -> None:
            executor.submit(lambda: None).result()  # starts the worker thread inside the run

        recorder.run(agent)
        assert executor.submit(current_scope).result() is None
    finally:
        executor.shutdown()


def test_foreign_suppression_records_export_key_does_not(recorder: Recorder, server: TestServer) -> None:
    """OpenTelemetry's suppression key records like any call; only AgentTrace's export key keeps a call out."""

    def agent() -> None:
        with suppress_instrumentation():
            httpx.get(server.url("/json?foreign=1"))
        token = export_traffic()
        try:
            requests.get(server.url("/json?export=1"), timeout=5)
        finally:
            otel_context.detach(token)

    _, trace = recorder.run(agent)
    assert [e.request.url for e in trace.exchanges] == [server.url("/json?foreign=1")]
