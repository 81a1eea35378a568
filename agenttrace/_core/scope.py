"""Which run and step the running code belongs to (contextvars), and per-run state."""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Span

from agenttrace._capture.filter import EMPTY, Filter

__all__ = ["EXPORT_TRAFFIC_KEY", "RunState", "Scope", "ThreadFlag", "current_scope", "export_thread"]

# The OpenTelemetry context key that marks AgentTrace's own export traffic (set by
# agenttrace.exporters.traffic): code running under it belongs to no run, and the replay sandbox
# exempts it. OpenTelemetry's suppress-instrumentation key is deliberately not such a mark: any
# library can set it (Logfire's instrument_openai does, around the agent's LLM calls).
EXPORT_TRAFFIC_KEY = "agenttrace-export-traffic"


@dataclass
class RunState:
    """One ``@run`` invocation: its root span and the counters its calls draw from."""

    span: Span
    name: str
    trace_id: int
    _ordinals: itertools.count[int] = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    result_set: bool = False
    violations: list[BaseException] = field(default_factory=list)

    def next_ordinal(self) -> int:
        """The next call ordinal of this run (0, 1, 2, ...), unique across threads."""
        with self._lock:
            return next(self._ordinals)

    def add_violation(self, error: BaseException) -> None:
        """Remember a governance violation so the run can report it even if it was swallowed."""
        with self._lock:
            self.violations.append(error)


@dataclass(frozen=True)
class Scope:
    """The innermost AgentTrace span around the running code."""

    span: Span
    kind: str  # "run" | "step"
    run: RunState | None
    step_path: tuple[str, ...] = ()
    filter: Filter = EMPTY

    @property
    def step_name(self) -> str | None:
        """Name of the innermost step, None directly inside the run."""
        return self.step_path[-1] if self.step_path else None


_current: ContextVar[Scope | None] = ContextVar("agenttrace_scope", default=None)


def current_scope() -> Scope | None:
    """The innermost run or step around the caller, if any."""
    return _current.get()


def enter_scope(scope: Scope) -> Any:
    """Make ``scope`` current; returns the token for :func:`exit_scope`."""
    return _current.set(scope)


def exit_scope(token: Any) -> None:
    """Restore the scope that was current before ``enter_scope``."""
    try:
        _current.reset(token)
    except ValueError:
        # Token made in another context (a generator resumed elsewhere): clear instead.
        _current.set(None)


class ThreadFlag:
    """A flag a thread raises for the length of a block (``with flag.raised():``), read with ``flag.up``.

    Unlike a contextvar it is not copied into the threads and tasks the block starts: it marks
    what the calling thread itself does there (AgentTrace's own lookups, connects and draws).
    """

    def __init__(self) -> None:
        self._local = threading.local()

    @property
    def up(self) -> bool:
        """True inside a ``raised()`` block of the calling thread."""
        return bool(getattr(self._local, "up", False))

    @contextlib.contextmanager
    def raised(self) -> Iterator[None]:
        """Raise the flag for the calling thread until the block ends (nested blocks keep it up)."""
        previous = self.up
        self._local.up = True
        try:
            yield
        finally:
            self._local.up = previous


# Threads that are never the agent's: the OpenTelemetry SDK's processors and readers
# (BatchSpanProcessor, BatchLogRecordProcessor, PeriodicExportingMetricReader) and AgentTrace's
# own (the trace writer, the export lanes, the exit probe, the SIGTERM writer: "agenttrace-...").
_EXPORT_THREAD_PREFIXES = ("OtelBatch", "OtelPeriodic", "agenttrace-")


def export_thread(thread: threading.Thread | None = None) -> bool:
    """True for a thread of the export machinery (``thread``, or the calling one): never the agent's work."""
    return (thread or threading.current_thread()).name.startswith(_EXPORT_THREAD_PREFIXES)
