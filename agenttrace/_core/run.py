"""``@agenttrace.run`` / ``@agenttrace.trace``: one run, one root span (or a child of the caller's)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from agenttrace._core import metadata as _metadata
from agenttrace._core.runtime import runtime
from agenttrace._core.scope import RunState, Scope, current_scope, enter_scope, exit_scope
from agenttrace._core.step import record_failure, rendered_result
from agenttrace._core.warn import warn_once
from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.RUN_NAME

__all__ = ["RunContext", "run"]

F = TypeVar("F", bound=Callable[..., Any])


class RunContext:
    """Set-up and teardown of one run, shared by the sync and async wrappers and by a step
    opened outside any run (``func`` None: the run of that step, ``file`` the caller's file)."""

    __slots__ = ("_otel_token", "_rules", "_scope_token", "file", "func", "name", "state")

    def __init__(self, func: Callable[..., Any] | None, name: str, file: str | None = None) -> None:
        self.func = func
        self.name = name
        self.file = file

    def __enter__(self) -> RunState:
        settings = runtime.current_settings()
        func = self.func
        source_file, source = _metadata.source_of(func) if func is not None else _metadata.source_of_file(self.file)
        attributes: dict[str, Any] = {
            S.KIND: "run",
            S.SCHEMA: S.SCHEMA_VERSION,
            S.RUN_NAME: self.name,
            S.RUN_FUNCTION: f"{func.__module__}.{func.__qualname__}" if func is not None else "agenttrace.step",
            S.RUN_DISTRIBUTIONS: list(_metadata.distributions()),
            S.RUN_PYTHON: _metadata.python_version(),
            S.RUN_MODE: settings.mode,
            S.RUN_GOVERNANCE_LEVEL: settings.governance_level,
        }
        if source_file is not None:
            attributes[S.RUN_SOURCE_FILE] = source_file
        # A run inside a step keeps the step's rules (they already hold the global ones).
        parent = current_scope()
        self._rules = parent.filter if parent is not None else settings.filter
        if source is not None:
            # A key written into the entry file is found by the patterns (names need fields).
            attributes[S.RUN_SOURCE] = self._rules.text(source)
        span = runtime.tracer.start_span(self.name, attributes=attributes)
        trace_id = span.get_span_context().trace_id
        self.state = RunState(span=span, name=self.name, trace_id=trace_id)
        runtime.files.open_trace(trace_id)
        self._otel_token = otel_context.attach(trace.set_span_in_context(span))
        self._scope_token = enter_scope(Scope(span=span, kind="run", run=self.state, filter=self._rules))
        runtime.enter_run()
        _call_hooks(runtime.run_start_hooks, self.state)
        return self.state

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        """Record the outcome, end the span and hand the trace to the exporters."""
        span = self.state.span
        _call_hooks(runtime.run_end_hooks, self.state)
        swallowed: BaseException | None = None
        if error is None and self.state.violations:
            # Governance violations the agent's code caught (or found at run end) still fail the run.
            from agenttrace._replay.session import swallowed_violation

            swallowed = error = swallowed_violation(self.state)
        try:
            runtime.exit_run()
        finally:
            exit_scope(self._scope_token)
            otel_context.detach(self._otel_token)
            if error is None:
                span.set_attribute(S.RUN_STATUS, "ok")
                if not self.state.result_set:
                    span.set_attribute(S.RUN_RESULT, rendered_result(result, self._rules))
                span.set_status(Status(StatusCode.OK))
            else:
                span.set_attribute(S.RUN_STATUS, "error")
                record_failure(span, error, self._rules)
            span.end()
            runtime.files.close_trace(self.state.trace_id)
        if swallowed is not None:
            raise swallowed


def _call_hooks(hooks: list[Callable[[RunState], None]], state: RunState) -> None:
    for hook in list(hooks):
        try:
            hook(state)
        except Exception as exc:  # noqa: BLE001 - an AgentTrace bug must not break the agent
            warn_once(f"run-hook:{getattr(hook, '__qualname__', hook)}", f"internal error in a run hook: {exc!r}")


def _wrap(func: F, name: str | None) -> F:
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        raise TypeError(
            f"agenttrace.run cannot wrap the generator function {func.__qualname__!r}: "
            "decorate the function that consumes it instead"
        )
    run_name = name or func.__qualname__

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            ctx = RunContext(func, run_name)
            ctx.__enter__()
            try:
                result = await func(*args, **kwargs)
            except BaseException as exc:
                ctx.finish(error=exc)
                raise
            ctx.finish(result=result)
            return result

        return run_async  # type: ignore[return-value]

    @functools.wraps(func)
    def run_sync(*args: Any, **kwargs: Any) -> Any:
        ctx = RunContext(func, run_name)
        ctx.__enter__()
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            ctx.finish(error=exc)
            raise
        ctx.finish(result=result)
        return result

    return run_sync  # type: ignore[return-value]


@overload
def run(name: F) -> F: ...
@overload
def run(name: str | None = None) -> Callable[[F], F]: ...
def run(name: str | F | None = None) -> F | Callable[[F], F]:
    """Decorate an agent's entry point so each call is one traced run (sync or async).

    Use as ``@agenttrace.run``, ``@agenttrace.run()`` or ``@agenttrace.run("name")``; the
    name defaults to the function's qualified name. Return values and exceptions pass through
    untouched. A run inside a run becomes a child span of the outer one.
    """
    if callable(name):
        return _wrap(name, None)
    if name is not None and not isinstance(name, str):
        raise TypeError(f"agenttrace.run(name=...) expects a str, got {type(name).__name__}")

    def decorate(func: F) -> F:
        return _wrap(func, name)

    return decorate
