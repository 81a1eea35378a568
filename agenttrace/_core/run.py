"""``@agenttrace.run`` / ``@agenttrace.trace``: one run, one root span (or a child of the caller's).

The run's span also carries its metadata: the entry file's source and the installed
distributions (read once per process).
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from typing import Any, TypeVar, overload

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

from agenttrace._core import lifecycle
from agenttrace._core.outcome import record_failure, rendered_result
from agenttrace._core.runtime import runtime
from agenttrace._core.scope import RunState, Scope, current_scope, enter_scope, exit_scope
from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.RUN_NAME

__all__ = ["RunContext", "run"]

F = TypeVar("F", bound=Callable[..., Any])


class RunContext:
    """Set-up and teardown of one run, shared by the sync and async wrappers and by a step
    opened outside any run (``func`` None: the run of that step, ``file`` the caller's file)."""

    __slots__ = ("_otel_token", "_rules", "_scope_token", "file", "func", "name", "parent", "state")

    def __init__(
        self,
        func: Callable[..., Any] | None,
        name: str,
        file: str | None = None,
        parent: tuple[int, int] | None = None,
    ) -> None:
        self.func = func
        self.name = name
        self.file = file
        # (trace id, span id) of a run in the parent process that this one joins (a child
        # process's run): its span is that run's child, in the same trace and trace file.
        self.parent = parent

    def __enter__(self) -> RunState:
        settings = lifecycle.current_settings()
        func = self.func
        source_file, source = source_of(func) if func is not None else source_of_file(self.file)
        attributes: dict[str, Any] = {
            S.KIND: "run",
            S.SCHEMA: S.SCHEMA_VERSION,
            S.RUN_NAME: self.name,
            S.RUN_FUNCTION: f"{func.__module__}.{func.__qualname__}" if func is not None else "agenttrace.step",
            S.RUN_DISTRIBUTIONS: list(distributions()),
            S.RUN_PYTHON: python_version(),
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
        context = None
        if self.parent is not None:
            remote = SpanContext(*self.parent, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
            context = trace.set_span_in_context(NonRecordingSpan(remote))
        span = runtime.tracer.start_span(self.name, context=context, attributes=attributes)
        trace_id = span.get_span_context().trace_id
        self.state = RunState(span=span, name=self.name, trace_id=trace_id)
        with _own_entropy():  # a trace file's unique name is AgentTrace's draw, not the agent's
            runtime.files.open_trace(trace_id, joined=self.parent is not None)
        self._otel_token = otel_context.attach(trace.set_span_in_context(span))
        self._scope_token = enter_scope(Scope(span=span, kind="run", run=self.state, filter=self._rules))
        lifecycle.run_entered(self.state)
        return self.state

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        """Record the outcome, end the span and hand the trace to the exporters."""
        span = self.state.span
        lifecycle.run_ended(self.state)
        swallowed: BaseException | None = None
        if error is None and self.state.violations:
            # Governance violations the agent's code caught (or found at run end) still fail the run.
            from agenttrace._replay.session import swallowed_violation

            swallowed = error = swallowed_violation(self.state)
        try:
            lifecycle.run_exited()
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
            with _own_entropy():
                span.end()
                runtime.files.close_trace(self.state.trace_id)
        if swallowed is not None:
            raise swallowed


def _own_entropy() -> Any:
    """A block whose entropy draws are AgentTrace's own (neither recorded nor served)."""
    from agenttrace._replay.entropy import exempt  # imported here: `import agenttrace` stays light

    return exempt()


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


# --- the run's metadata -------------------------------------------------------------------------

_MAX_SOURCE_BYTES = 1 << 20


@functools.lru_cache(maxsize=1)
def distributions() -> tuple[str, ...]:
    """Installed distributions as sorted ``name==version`` (read once, never via a subprocess)."""
    from importlib import metadata  # imported here: its cost falls on the first run, not on `import agenttrace`

    found: dict[str, str] = {}
    for dist in metadata.distributions():
        try:
            name, version = _name_version(dist)
        except Exception:  # noqa: BLE001, S112 - a broken METADATA file must not fail a run
            continue
        if name:
            found.setdefault(name, version)
    return tuple(f"{n}=={v}" for n, v in sorted(found.items(), key=lambda kv: kv[0].lower()))


def _name_version(dist: Any) -> tuple[str | None, str]:
    """``(Name, Version)`` from the header block of the distribution's METADATA (or PKG-INFO).

    ``dist.metadata`` runs the whole file, long description included, through the email parser,
    and ``dist.version`` does it again, for every installed distribution at the first run. The
    two fields are single header lines before the first blank line; a file
    without them plainly there goes the email parser's way.
    """
    for file in ("METADATA", "PKG-INFO"):
        text = dist.read_text(file)
        if not text:
            continue
        name = version = None
        for line in text.partition("\n\n")[0].splitlines():
            if line.startswith("Name:"):
                name = line[5:].strip()
            elif line.startswith("Version:"):
                version = line[8:].strip()
        if name and version:
            return name, version
        break
    return dist.metadata["Name"], dist.version


@functools.lru_cache(maxsize=64)
def _read_source(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_MAX_SOURCE_BYTES + 1)
    except OSError:
        return None
    text = raw[:_MAX_SOURCE_BYTES].decode("utf-8", errors="replace")
    if len(raw) > _MAX_SOURCE_BYTES:
        text += f"\n# [agenttrace: source cut at {_MAX_SOURCE_BYTES} bytes]\n"
    return text


def source_of(func: Callable[..., Any]) -> tuple[str | None, str | None]:
    """``(path, source)`` of the file that defines ``func``; ``(None, None)`` if unknown."""
    import inspect

    try:
        path = inspect.getsourcefile(inspect.unwrap(func))
    except (TypeError, OSError):
        return None, None
    if path is None:
        return None, None
    return path, _read_source(path)


def source_of_file(path: str | None) -> tuple[str | None, str | None]:
    """``(path, source)`` of the file at ``path``; ``(None, None)`` without one."""
    if path is None or path.startswith("<"):  # <stdin>, <string>: no file to read
        return None, None
    return path, _read_source(path)


def python_version() -> str:
    """``implementation major.minor.micro`` of this interpreter."""
    info = sys.version_info
    return f"{sys.implementation.name} {info.major}.{info.minor}.{info.micro}"
