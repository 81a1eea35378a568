"""Process-global state: the settings in force, the tracer provider AgentTrace joins, the runs active.

Mode decisions live here, under one lock, not in contextvars: asyncio's DNS executor and
thread pools do not carry contextvars, but they must still obey the mode.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

from agenttrace._core.config import Settings
from agenttrace._core.tracer import UnsuppressedTracer
from agenttrace._format.schema import INSTRUMENTATION_SCOPE
from agenttrace._version import __version__
from agenttrace.exporters.processor import RunFileProcessor

__all__ = ["Runtime", "replay_requested", "runtime"]


def replay_requested() -> bool:
    """True when the environment asks for a replay (``AGENTTRACE_MODE=replay``, however written)."""
    return os.environ.get("AGENTTRACE_MODE", "").strip().lower() == "replay"


class Runtime:
    """The one AgentTrace instance of this process."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.settings: Settings | None = None
        self.failed: BaseException | None = None  # why the last init() failed, until one succeeds
        self.provider: Any = None
        self.owns_provider = False  # True when AgentTrace created the global provider
        self.tracer: trace.Tracer = trace.NoOpTracer()
        self.files = RunFileProcessor()
        self.active_runs = 0  # changed under ``lock`` by agenttrace._core.lifecycle
        # True once this process chose AgentTrace: an init() (the user's, a run's, the zero-code
        # command's, AgentTrace's configurator's), AgentTrace's distro, or AGENTTRACE_MODE=replay
        # (a replay must not go live because another distro was picked). Until then the
        # instrumentors, turned on by another distro's opentelemetry-instrument, capture nothing:
        # being installed is not consent (docs/instrumentors.md).
        self.chosen = replay_requested()
        # False while nothing would receive a call's span: AgentTrace's own provider, no trace
        # files, no export lane and no span processor of anyone else's. Replay then serves calls
        # without opening a span for them (the pytest plugin's default), see update_traced().
        self.traced = True

    def apply(self, settings: Settings) -> None:
        """Make ``settings`` the settings in force: join or create the tracer provider, set the trace files."""
        with self.lock:
            self._join_provider()
            self.files.enabled = settings.local_files
            self.files.folder = settings.trace_dir
            self.files.quiet = settings.quiet
            self.settings = settings

    def fail(self, exc: BaseException) -> None:
        """A configuration failed half-way: every run fails the same way until one succeeds.

        A half-applied configuration must not let runs go on (a replay whose recording failed to
        load would reach the real network).
        """
        with self.lock:
            self.settings = None
            self.failed = exc

    def _join_provider(self) -> None:
        current = trace.get_tracer_provider()
        if self.provider is not None and current is self.provider:
            return
        provider: Any = current
        owned = False
        if not hasattr(current, "add_span_processor"):
            # No SDK provider yet (the API's proxy): make ours. A user's SDK provider, or a wrapper
            # such as Logfire's, is joined instead, never replaced.
            attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "agenttrace"}
            created = _OwnProvider(resource=Resource.create(attributes))
            trace.set_tracer_provider(created)
            provider = trace.get_tracer_provider()  # the user's, if they won a race to set it
            owned = provider is created
        provider.add_span_processor(self.files)
        self.owns_provider = owned
        self.provider = provider
        self.tracer = UnsuppressedTracer(provider.get_tracer(INSTRUMENTATION_SCOPE, __version__))

    def current_settings(self) -> Settings:
        """The settings in force; the error of the last failed ``init()`` if it failed.

        Raises RuntimeError before any configuration: callers above capture and replay
        (``@run``, ``step``, the instrumentors) configure first, through
        :func:`agenttrace._core.lifecycle.current_settings`.
        """
        settings = self.settings
        if settings is None:
            if self.failed is not None:
                raise self.failed
            raise RuntimeError("AgentTrace is not configured yet (agenttrace.init() was not called)")
        return settings

    def update_traced(self, exporting: bool) -> None:
        """Work out :attr:`traced` after a configuration; ``exporting``: an export lane is on."""
        provider = self.provider
        self.traced = not (
            self.owns_provider
            and isinstance(provider, _OwnProvider)
            and not provider.foreign
            and not self.files.enabled
            and not exporting
        )

    @property
    def runs_active(self) -> bool:
        """True while at least one run is active in the process (any thread)."""
        return self.active_runs > 0


class _OwnProvider(TracerProvider):
    """The tracer provider AgentTrace creates when the process has none: it notes when code other
    than AgentTrace's adds a span processor (from then on, every call's span has a receiver)."""

    foreign = False

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        """Add ``span_processor``; one that is not AgentTrace's own makes the runtime traced."""
        super().add_span_processor(span_processor)
        if not getattr(span_processor, "agenttrace_own", False):
            self.foreign = True
            runtime.traced = True


runtime = Runtime()
