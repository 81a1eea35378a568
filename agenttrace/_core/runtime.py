"""Process-global state: settings, the tracer provider AgentTrace joins, and run lifecycle hooks.

Mode decisions live here, under one lock, not in contextvars: asyncio's DNS executor and
thread pools do not carry contextvars, but they must still obey the mode.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from agenttrace._core.config import Settings, resolve_settings
from agenttrace._core.scope import RunState
from agenttrace._format.schema import INSTRUMENTATION_SCOPE
from agenttrace._version import __version__
from agenttrace.exporters.processor import RunFileProcessor

__all__ = ["init", "runtime"]


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
        self._active_runs = 0
        # (install, uninstall) pairs run when the first run starts and the last one ends.
        self._run_hooks: list[tuple[Callable[[], None], Callable[[], None]]] = []
        # Called with the new settings on every init().
        self._configure_hooks: list[Callable[[Settings], None]] = []
        # Called with each run's state as it starts and just before its span ends.
        self.run_start_hooks: list[Callable[[RunState], None]] = []
        self.run_end_hooks: list[Callable[[RunState], None]] = []

    def configure(self, settings: Settings) -> None:
        """Apply ``settings``: join or create the tracer provider, update the processors."""
        with self.lock:
            self._join_provider()
            self.files.enabled = settings.local_files
            self.files.folder = settings.trace_dir
            self.files.quiet = settings.quiet
            self.settings = settings
            try:
                for hook in list(self._configure_hooks):
                    hook(settings)
            except BaseException as exc:
                # A half-applied configuration must not let runs go on (a replay whose recording
                # failed to load would reach the real network): every run fails the same way
                # until an init() succeeds.
                self.settings = None
                self.failed = exc
                raise
            self.failed = None

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
            created = TracerProvider(resource=Resource.create(attributes))
            trace.set_tracer_provider(created)
            provider = trace.get_tracer_provider()  # the user's, if they won a race to set it
            owned = provider is created
        provider.add_span_processor(self.files)
        self.owns_provider = owned
        self.provider = provider
        self.tracer = provider.get_tracer(INSTRUMENTATION_SCOPE, __version__)

    def current_settings(self) -> Settings:
        """The settings in force, running ``init()`` with no arguments the first time."""
        settings = self.settings
        if settings is None and self.failed is not None:
            raise self.failed
        if settings is None:
            init()
            settings = self.settings
            assert settings is not None
        return settings

    def on_configure(self, hook: Callable[[Settings], None]) -> None:
        """Call ``hook(settings)`` now (if configured) and on every later ``init()``."""
        with self.lock:
            self._configure_hooks.append(hook)
            if self.settings is not None:
                hook(self.settings)

    def on_runs(self, install: Callable[[], None], uninstall: Callable[[], None]) -> None:
        """Run ``install`` when the first run starts and ``uninstall`` when the last one ends."""
        with self.lock:
            self._run_hooks.append((install, uninstall))
            if self._active_runs:
                install()

    @property
    def runs_active(self) -> bool:
        """True while at least one run is active in the process (any thread)."""
        return self._active_runs > 0

    def enter_run(self) -> None:
        """A run starts: the first one in installs the run hooks."""
        with self.lock:
            self._active_runs += 1
            if self._active_runs == 1:
                for install, _ in self._run_hooks:
                    install()

    def exit_run(self) -> None:
        """A run ends: the last one out uninstalls the run hooks."""
        with self.lock:
            self._active_runs -= 1
            if self._active_runs == 0:
                for _, uninstall in reversed(self._run_hooks):
                    uninstall()


runtime = Runtime()


def init(
    api_key: str | None = None,
    api_url: str | None = None,
    mode: str | None = None,
    replay_events: list[dict[str, Any]] | None = None,
    governance_level: str | None = None,
    **settings: Any,
) -> None:
    """Configure AgentTrace; an argument left as None falls back to its variable, the file, the default.

    ``mode`` defaults to ``"record"`` and ``governance_level`` to ``"relaxed"``; every other
    setting of docs/configuration.md (``trace_dir``, ``quiet``, ...) is accepted by keyword.
    Calling ``init()`` again reconfigures cleanly. Raises :class:`ConfigurationError` (a
    ``ValueError``) naming the setting, where it came from and the valid values.
    """
    resolved = resolve_settings(
        {
            "api_key": api_key,
            "api_url": api_url,
            "mode": mode,
            "replay_events": replay_events,
            "governance_level": governance_level,
            **settings,
        }
    )
    runtime.configure(resolved)
