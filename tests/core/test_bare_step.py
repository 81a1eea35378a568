"""A step opened outside any run is a run of its own: its I/O is recorded, served and sandboxed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

import agenttrace
from agenttrace._core import errors as _warn
from tests.recording import Trace, read_trace, replaying
from tests.servers import TestServer


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    """A trace folder for record mode; record mode again afterwards."""
    _warn._reset_for_tests()
    agenttrace.init(trace_dir=str(tmp_path), quiet=True)
    yield tmp_path
    agenttrace.init(trace_dir=str(tmp_path), quiet=True)


def _only_trace(folder: Path) -> Trace:
    files = sorted(folder.glob("*.jsonl"))
    assert len(files) == 1, files
    return read_trace(files[0])


def test_bare_step_records_its_calls_under_a_run_named_after_it(folder: Path, server: TestServer) -> None:
    """The spec's example, a step with no @run around it: its call is recorded with its payloads."""
    with agenttrace.step("query-inventory", type="tool_call", sku="A123"):
        resp = requests.get(server.url("/json?sku=A123"), timeout=5)
    assert resp.status_code == 200
    trace = _only_trace(folder)
    kinds = {trace.attrs(s)["agenttrace.kind"]: s for s in trace.spans}
    assert set(kinds) == {"run", "step", "call"}
    run = trace.attrs(kinds["run"])
    assert run["agenttrace.run.name"] == "query-inventory"
    assert run["agenttrace.run.function"] == "agenttrace.step"
    assert run["agenttrace.run.source_file"] == __file__  # the file that opened the step
    assert run["agenttrace.run.status"] == "ok"
    assert kinds["step"]["parentSpanId"] == kinds["run"]["spanId"]
    assert trace.attrs(kinds["call"])["agenttrace.call.step_path"] == ["query-inventory"]
    (exchange,) = trace.exchanges
    assert exchange.response is not None
    assert exchange.response.body.data == resp.content


def test_bare_async_step_and_its_failure(folder: Path, server: TestServer) -> None:
    """async with works the same; an exception fails step and run, and still propagates."""

    async def agent() -> None:
        async with httpx.AsyncClient() as client, agenttrace.step("fetch"):
            await client.get(server.url("/json"))
            raise KeyError("boom")

    with pytest.raises(KeyError):
        asyncio.run(agent())
    trace = _only_trace(folder)
    run = next(trace.attrs(s) for s in trace.spans if trace.attrs(s)["agenttrace.kind"] == "run")
    step = next(trace.attrs(s) for s in trace.spans if trace.attrs(s)["agenttrace.kind"] == "step")
    assert run["agenttrace.run.status"] == "error"
    assert step["agenttrace.step.type"] == "error"
    assert len(trace.exchanges) == 1


def test_step_inside_a_run_opens_no_run(folder: Path, server: TestServer) -> None:
    """Inside a run a step stays a step: one run span in the trace."""

    @agenttrace.run("outer")
    def agent() -> None:
        with agenttrace.step("inner"):
            requests.get(server.url("/json"), timeout=5)

    agent()
    trace = _only_trace(folder)
    runs = [trace.attrs(s)["agenttrace.run.name"] for s in trace.spans if trace.attrs(s)["agenttrace.kind"] == "run"]
    assert runs == ["outer"]


def test_bare_step_is_served_and_sandboxed_in_governance_replay(folder: Path, fresh_server: TestServer) -> None:
    """Replayed, the bare step's call is served without I/O, and a call the recording lacks stops it."""

    def agent(path: str) -> Any:
        with agenttrace.step("lookup", type="tool_call"):
            return requests.get(fresh_server.url(path), timeout=5).json()

    recorded = agent("/json?q=1")
    served_before = fresh_server.connections
    with replaying(folder):
        assert agent("/json?q=1") == recorded  # the same random id: served from the recording
        with pytest.raises(agenttrace.ReplayMismatchError):
            agent("/json?q=not-recorded")
    assert fresh_server.connections == served_before  # no real I/O in the replay


def test_step_in_a_bare_thread_during_a_run_stays_a_step(folder: Path, server: TestServer) -> None:
    """While a run is active, a step in a thread without its context opens no run of its own."""
    import threading

    @agenttrace.run("main")
    def agent() -> None:
        def worker() -> None:
            with agenttrace.step("worker-step"):
                pass

        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        requests.get(server.url("/json"), timeout=5)

    agent()
    trace = _only_trace(folder)  # one file: the worker's step made no trace of its own
    runs = [trace.attrs(s)["agenttrace.run.name"] for s in trace.spans if trace.attrs(s)["agenttrace.kind"] == "run"]
    assert runs == ["main"]


def test_source_file_through_an_exit_stack(folder: Path, server: TestServer) -> None:
    """A step entered through contextlib.ExitStack records the user's file, not contextlib's."""
    import contextlib

    with contextlib.ExitStack() as stack:
        stack.enter_context(agenttrace.step("stacked"))
        requests.get(server.url("/json"), timeout=5)
    trace = _only_trace(folder)
    run = next(trace.attrs(s) for s in trace.spans if trace.attrs(s)["agenttrace.kind"] == "run")
    assert run["agenttrace.run.source_file"] == __file__
