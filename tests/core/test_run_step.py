"""@run / @trace, step() and set_result() as OpenTelemetry spans (in-process, in-memory exporter)."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import agenttrace


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {s.name: s for s in exporter.get_finished_spans()}


def test_run_sync_records_root_span_and_passes_result(spans: InMemorySpanExporter) -> None:
    """A sync run returns its value untouched and records one root span with metadata."""

    @agenttrace.run("sync-agent")
    def agent(x: int) -> dict[str, int]:
        return {"double": x * 2}

    assert agent(21) == {"double": 42}
    (span,) = spans.get_finished_spans()
    attrs = dict(span.attributes or {})
    assert span.name == "sync-agent"
    assert span.parent is None
    assert attrs["agenttrace.kind"] == "run"
    assert attrs["agenttrace.schema_version"] == 1
    assert attrs["agenttrace.run.status"] == "ok"
    assert json.loads(str(attrs["agenttrace.run.result"])) == {"double": 42}
    assert str(attrs["agenttrace.run.source_file"]).endswith("test_run_step.py")
    assert "def test_run_sync_records_root_span" in str(attrs["agenttrace.run.source"])
    dists = list(attrs["agenttrace.run.distributions"])  # type: ignore[arg-type]
    assert any(d.startswith("opentelemetry-sdk==") for d in dists)
    assert span.status.status_code is StatusCode.OK


def test_run_async_and_default_name(spans: InMemorySpanExporter) -> None:
    """An async run awaits the function; the name defaults to the function's qualified name."""

    @agenttrace.run
    async def my_agent() -> str:
        await asyncio.sleep(0)
        return "done"

    assert asyncio.run(my_agent()) == "done"
    (span,) = spans.get_finished_spans()
    assert span.name.endswith("my_agent")


@pytest.mark.parametrize("form", ["trace", "trace()", "trace('named')", "run()", "run(name='named')"])
def test_decorator_forms(spans: InMemorySpanExporter, form: str) -> None:
    """@trace is @run; both work with and without parentheses and with a name."""
    decorator = eval(f"agenttrace.{form}")

    @decorator
    def agent() -> int:
        return 7

    assert agent() == 7
    (span,) = spans.get_finished_spans()
    assert span.name == ("named" if "named" in form else agent.__qualname__)


def test_run_exception_passes_through_unchanged(spans: InMemorySpanExporter) -> None:
    """The very exception object raised inside a run reaches the caller; the span says ERROR."""
    boom = KeyError("missing")

    @agenttrace.run
    def agent() -> None:
        raise boom

    with pytest.raises(KeyError) as caught:
        agent()
    assert caught.value is boom
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["agenttrace.run.status"] == "error"
    assert [e.name for e in span.events] == ["exception"]


def test_run_generator_function_refused() -> None:
    """Decorating a generator function is refused at decoration time, with the reason."""
    with pytest.raises(TypeError, match="generator function"):

        @agenttrace.run
        def gen() -> Any:
            yield 1


def test_nested_run_is_child_span(spans: InMemorySpanExporter) -> None:
    """A run inside a run is a child of the outer run, in the same trace."""

    @agenttrace.run("inner")
    def inner() -> int:
        return 1

    @agenttrace.run("outer")
    def outer() -> int:
        return inner() + 1

    assert outer() == 2
    named = by_name(spans)
    assert named["inner"].parent is not None
    assert named["inner"].parent.span_id == named["outer"].context.span_id
    assert named["inner"].context.trace_id == named["outer"].context.trace_id


def test_concurrent_async_runs_are_separate_traces(spans: InMemorySpanExporter) -> None:
    """Runs in concurrent asyncio tasks are separate traces, each step under its own run."""

    @agenttrace.run("task-run")
    async def agent(i: int) -> int:
        with agenttrace.step(f"step-{i}"):
            await asyncio.sleep(0.01)
        return i

    async def main() -> list[int]:
        return await asyncio.gather(*(agent(i) for i in range(10)))

    assert asyncio.run(main()) == list(range(10))
    finished = spans.get_finished_spans()
    runs = [s for s in finished if s.name == "task-run"]
    assert len({s.context.trace_id for s in runs}) == 10
    run_ids = {s.context.span_id: s.context.trace_id for s in runs}
    for step in (s for s in finished if s.name.startswith("step-")):
        assert step.parent is not None
        assert run_ids[step.parent.span_id] == step.context.trace_id


def test_threaded_runs_are_separate_traces(spans: InMemorySpanExporter) -> None:
    """Runs in threads are separate traces."""

    @agenttrace.run("thread-run")
    def agent() -> None:
        with agenttrace.step("work"):
            pass

    threads = [threading.Thread(target=agent) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    runs = [s for s in spans.get_finished_spans() if s.name == "thread-run"]
    assert len({s.context.trace_id for s in runs}) == 8


def test_step_kwargs_become_attributes(spans: InMemorySpanExporter) -> None:
    """Step kwargs are attributes; primitives as-is, others as JSON; type defaults to observation."""

    @agenttrace.run
    def agent() -> None:
        with agenttrace.step("query-inventory", type="tool_call", sku="A123", qty=3, tags=["a", "b"]):
            pass
        with agenttrace.step("look"):
            pass

    agent()
    named = by_name(spans)
    attrs = dict(named["query-inventory"].attributes or {})
    assert attrs["agenttrace.kind"] == "step"
    assert attrs["agenttrace.step.type"] == "tool_call"
    assert attrs["agenttrace.step.kwargs.sku"] == "A123"
    assert attrs["agenttrace.step.kwargs.qty"] == 3
    assert json.loads(str(attrs["agenttrace.step.kwargs.tags"])) == ["a", "b"]
    assert (named["look"].attributes or {})["agenttrace.step.type"] == "observation"


def test_step_exception_marks_error_and_reraises(spans: InMemorySpanExporter) -> None:
    """An exception in a step sets type=error, status ERROR, records it, and re-raises it unchanged."""
    boom = RuntimeError("tool failed")

    @agenttrace.run
    def agent() -> None:
        with agenttrace.step("call-tool", type="tool_call"):
            raise boom

    with pytest.raises(RuntimeError) as caught:
        agent()
    assert caught.value is boom
    step = by_name(spans)["call-tool"]
    assert (step.attributes or {})["agenttrace.step.type"] == "error"
    assert step.status.status_code is StatusCode.ERROR
    assert step.events[0].name == "exception"
    assert (step.events[0].attributes or {})["exception.message"] == "tool failed"


def test_async_step_and_nesting(spans: InMemorySpanExporter) -> None:
    """`async with step(...)` works and nested steps are children of their parent step."""

    @agenttrace.run
    async def agent() -> None:
        async with agenttrace.step("outer"):
            with agenttrace.step("inner"):
                await asyncio.sleep(0)

    asyncio.run(agent())
    named = by_name(spans)
    assert named["inner"].parent is not None
    assert named["inner"].parent.span_id == named["outer"].context.span_id


def test_set_result_on_step_and_run(spans: InMemorySpanExporter) -> None:
    """set_result stores JSON on the active step, or on the run outside any step."""

    class Opaque:
        def __repr__(self) -> str:
            return "<Opaque>"

    @agenttrace.run
    def agent() -> str:
        with agenttrace.step("validate-user"):
            agenttrace.set_result({"valid": True, "obj": Opaque(), "raw": b"\xff"})
        agenttrace.set_result(["final"])
        return "ignored in favour of set_result"

    agent()
    named = by_name(spans)
    step_result = json.loads(str((named["validate-user"].attributes or {})["agenttrace.step.result"]))
    assert step_result == {"valid": True, "obj": "<Opaque>", "raw": {"base64": "/w=="}}
    run_span = next(s for s in spans.get_finished_spans() if (s.attributes or {}).get("agenttrace.kind") == "run")
    assert json.loads(str((run_span.attributes or {})["agenttrace.run.result"])) == ["final"]


def test_set_result_outside_run_warns_once(spans: InMemorySpanExporter, capsys: pytest.CaptureFixture[str]) -> None:
    """set_result outside any run warns once on stderr and does nothing."""
    from agenttrace._core import errors as _warn

    _warn._reset_for_tests()
    agenttrace.set_result(1)
    agenttrace.set_result(2)
    err = capsys.readouterr().err
    assert err.count("set_result() was called outside any run") == 1
    assert spans.get_finished_spans() == ()


def test_set_result_never_raises_on_hostile_objects(spans: InMemorySpanExporter) -> None:
    """Objects whose repr raises, cycles and NaN are rendered safely."""

    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    cyclic: list[Any] = []
    cyclic.append(cyclic)

    @agenttrace.run
    def agent() -> None:
        with agenttrace.step("s"):
            agenttrace.set_result({"h": Hostile(), "c": cyclic, "n": float("nan")})

    agent()
    rendered = json.loads(str((by_name(spans)["s"].attributes or {})["agenttrace.step.result"]))
    assert rendered["c"] == ["<cycle>"]
    assert rendered["n"] == "nan"
    assert "repr failed" in rendered["h"]


def test_filter_forms_apply_to_kwargs_and_result(spans: InMemorySpanExporter) -> None:
    """filter= by field name, path, pattern and callable hides data in kwargs and results, nested steps included."""
    secret_pattern = re.compile(r"sk-[a-z0-9]+")

    def drop_emails(path: str, value: Any) -> Any:
        return "[email]" if isinstance(value, str) and "@" in value else value

    @agenttrace.run
    def agent() -> None:
        with agenttrace.step(
            "login",
            filter=["password", "user.ssn", secret_pattern, drop_emails],
            user={"ssn": "1", "name": "ann"},
            password="hunter2",
        ):
            with agenttrace.step("inner", note="key sk-abc123 here", contact="a@b.c"):
                agenttrace.set_result({"password": "x", "ok": True})

    agent()
    named = by_name(spans)
    login = dict(named["login"].attributes or {})
    assert login["agenttrace.step.kwargs.password"] == "[FILTERED]"
    assert json.loads(str(login["agenttrace.step.kwargs.user"])) == {"ssn": "[FILTERED]", "name": "ann"}
    inner = dict(named["inner"].attributes or {})
    assert inner["agenttrace.step.kwargs.note"] == "key [FILTERED] here"
    assert inner["agenttrace.step.kwargs.contact"] == "[email]"
    assert json.loads(str(inner["agenttrace.step.result"])) == {"password": "[FILTERED]", "ok": True}


def test_bad_filter_is_refused() -> None:
    """A filter entry of the wrong type is refused with the accepted forms."""
    with pytest.raises(agenttrace.ConfigurationError, match="compiled re pattern"):
        agenttrace.step("s", filter=[42])  # type: ignore[list-item]


def test_joins_user_provider_and_nests_under_user_span(spans: InMemorySpanExporter) -> None:
    """With the user's SDK provider set, AgentTrace spans go to it, under the user's current span."""
    tracer = trace.get_tracer("user-app")

    @agenttrace.run("agent")
    def agent() -> None:
        with agenttrace.step("s"), tracer.start_as_current_span("user-inside"):
            pass

    with tracer.start_as_current_span("user-request") as parent:
        agent()
    named = by_name(spans)
    assert named["agent"].parent is not None
    assert named["agent"].parent.span_id == parent.get_span_context().span_id
    assert {s.context.trace_id for s in named.values()} == {parent.get_span_context().trace_id}
    assert named["user-inside"].parent is not None
    assert named["user-inside"].parent.span_id == named["s"].context.span_id


def test_public_surface() -> None:
    """The public API is exactly what the spec names (a change here is deliberate)."""
    assert set(agenttrace.__all__) == {
        "AgentTraceError",
        "ConfigurationError",
        "DeterminismLeakError",
        "FILTERED",
        "ReplayMismatchError",
        "SocketLeakError",  # a DeterminismLeakError and a ReplayMismatchError: the two spec files' words
        "__version__",
        "init",
        "load_events",
        "run",
        "set_result",
        "step",
        "trace",
    }
    for name in agenttrace.__all__:
        assert hasattr(agenttrace, name)


def test_exception_hierarchy() -> None:
    """Every AgentTrace error derives from AgentTraceError; configuration errors are ValueErrors."""
    for cls in (agenttrace.ConfigurationError, agenttrace.ReplayMismatchError, agenttrace.DeterminismLeakError):
        assert issubclass(cls, agenttrace.AgentTraceError)
    assert issubclass(agenttrace.ConfigurationError, ValueError)
    assert issubclass(agenttrace.SocketLeakError, agenttrace.DeterminismLeakError)
    assert issubclass(agenttrace.SocketLeakError, agenttrace.ReplayMismatchError)


def test_distributions_read_from_header_lines_equal_the_email_parser() -> None:
    """The run's distribution list, read from METADATA header lines, is what importlib.metadata parses."""
    from importlib import metadata

    from agenttrace._core import run as _metadata

    expected: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            expected.setdefault(name, dist.version)
    _metadata.distributions.cache_clear()
    assert _metadata.distributions() == tuple(
        f"{n}=={v}" for n, v in sorted(expected.items(), key=lambda kv: kv[0].lower())
    )


def test_results_of_common_value_types_are_written_as_text(spans: InMemorySpanExporter) -> None:
    """Decimal, UUID, paths and dates in a run's result are written as their text."""
    import datetime
    import decimal
    import pathlib
    import uuid

    @agenttrace.run("typed")
    def agent() -> dict[str, object]:
        return {
            "price": decimal.Decimal("12.50"),
            "id": uuid.UUID(int=7),
            "path": pathlib.PurePosixPath("/a/b"),
            "day": datetime.date(2026, 1, 31),
        }

    agent()
    (span,) = spans.get_finished_spans()
    assert json.loads(str(dict(span.attributes or {})["agenttrace.run.result"])) == {
        "price": "12.50",
        "id": "00000000-0000-0000-0000-000000000007",
        "path": "/a/b",
        "day": "2026-01-31",
    }
