"""``agenttrace.step()`` and ``agenttrace.set_result()``."""

from __future__ import annotations

import contextlib
import sys
from types import TracebackType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from agenttrace._capture.filter import FilterSpec, compile_filter
from agenttrace._core import lifecycle
from agenttrace._core.errors import warn_once
from agenttrace._core.outcome import dumps, record_failure, redact_text, rendered_result, to_jsonable
from agenttrace._core.run import RunContext
from agenttrace._core.runtime import runtime
from agenttrace._core.scope import Scope, current_scope, enter_scope, exit_scope
from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.STEP_NAME

__all__ = ["set_result", "step"]

_PRIMITIVES = (str, bool, int, float)


class step:  # noqa: N801 - the API names it as a function: agenttrace.step(...) (docs/api.md)
    """Mark a logical step of the run; I/O inside is tagged with it (``with`` or ``async with``).

    ``type`` classifies the step ("tool_call", "thought", "observation", ...); ``filter`` names
    what must never be recorded inside it (see docs/api.md); other keyword arguments become
    span attributes. An exception marks the step ``type="error"`` and propagates unchanged.
    """

    __slots__ = ("_implicit", "_otel_token", "_rules", "_scope_token", "filter", "kwargs", "name", "span", "type")

    def __init__(self, name: str, type: str = "observation", filter: FilterSpec = None, **kwargs: Any) -> None:  # noqa: A002 - names fixed by the API (docs/api.md)
        if not isinstance(name, str) or not name:
            raise TypeError(f"agenttrace.step() needs a non-empty str name, got {name!r}")
        self.name = name
        self.type = str(type)
        self.filter = compile_filter(filter)
        self.kwargs = kwargs
        self._implicit: Any = None

    def __enter__(self) -> step:
        settings = lifecycle.current_settings()
        parent = current_scope()
        if parent is None and not runtime.runs_active:
            # A step outside any run is a run of its own, named after it: its I/O is recorded
            # (and served, and sandboxed, in replay) as docs/api.md promises for a step's block.
            # While a run is active elsewhere (a worker thread that did not copy the context),
            # the step stays a step: its calls and violations belong to the runs in progress.
            self._implicit = RunContext(None, self.name, file=_caller_file())
            self._implicit.__enter__()
            parent = current_scope()
        rules = (parent.filter if parent is not None else settings.filter).extend(self.filter)
        self._rules = rules
        attributes: dict[str, Any] = {
            S.KIND: "step",
            S.SCHEMA: S.SCHEMA_VERSION,
            S.STEP_NAME: self.name,
            S.STEP_TYPE: self.type,
        }
        for key, value in self.kwargs.items():
            attributes[S.STEP_KWARG_PREFIX + key] = _attribute_value(rules.apply(to_jsonable(value), (key,)))
        self.span = runtime.tracer.start_span(self.name, attributes=attributes)
        self._otel_token = otel_context.attach(trace.set_span_in_context(self.span))
        scope = Scope(
            span=self.span,
            kind="step",
            run=parent.run if parent is not None else None,
            step_path=(*(parent.step_path if parent is not None else ()), self.name),
            filter=rules,
        )
        self._scope_token = enter_scope(scope)
        if scope.run is not None:
            lifecycle.step_started(self.name)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        exit_scope(self._scope_token)
        otel_context.detach(self._otel_token)
        if exc is not None:
            self.span.set_attribute(S.STEP_TYPE, "error")
            record_failure(self.span, exc, self._rules)
        self.span.end()
        implicit, self._implicit = self._implicit, None
        if implicit is not None:
            implicit.finish(error=exc)

    async def __aenter__(self) -> step:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def _caller_file() -> str | None:
    """The file of the code that opened the step (the first frame outside this module)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename in _NOT_CALLERS:
        frame = frame.f_back  # type: ignore[assignment]
    return frame.f_code.co_filename if frame is not None else None


# Frames between the user's code and step.__enter__: this module, and contextlib's ExitStack.
_NOT_CALLERS = frozenset({__file__, contextlib.__file__})


def _attribute_value(value: Any) -> Any:
    """A keyword argument as a span attribute; a URL in its text has its secrets redacted."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, _PRIMITIVES):
        return value
    return redact_text(dumps(value))


def set_result(result_data: Any) -> None:
    """Store a JSON rendering of ``result_data`` on the active step (or the run); never raises."""
    scope = current_scope()
    if scope is None:
        warn_once("set_result-outside", "set_result() was called outside any run or step; ignored")
        return
    rendered = rendered_result(result_data, scope.filter)
    if scope.kind == "step":
        scope.span.set_attribute(S.STEP_RESULT, rendered)
    else:
        scope.span.set_attribute(S.RUN_RESULT, rendered)
        if scope.run is not None:
            scope.run.result_set = True
