"""What ``init()`` sets up, and what the start and end of a run switch on.

The one place that calls into capture, replay and export, in this order:

- ``init()`` resolves the settings, makes them the settings in force (the tracer provider, the
  trace files), then configures export, capture (extra redacted headers) and replay (loading
  the recording, which may fail: then every run fails with the same error until an ``init()``
  succeeds);
- the first run in installs the instrumentors' patches and replay's serving and sandbox; the
  last run out removes them, in the reverse order;
- a run's start maps it to the run it replays; its end records the calls still open and
  reports what replay served.
"""

from __future__ import annotations

import os
from typing import Any, Literal, NoReturn

from agenttrace import _replay as replay
from agenttrace._capture import activation
from agenttrace._capture.filter import FilterSpec
from agenttrace._core.config import Settings, resolve_settings
from agenttrace._core.errors import warn_once
from agenttrace._core.runtime import runtime
from agenttrace._core.scope import RunState
from agenttrace.exporters import setup as export

__all__ = ["configure", "current_settings", "init", "run_ended", "run_entered", "run_exited"]


def init(
    api_key: str | None = None,
    api_url: str | None = None,
    mode: Literal["record", "replay"] | None = None,
    replay_events: list[dict[str, Any]] | None = None,
    governance_level: Literal["relaxed", "governance"] | None = None,
    *,
    replay_events_file: str | os.PathLike[str] | None = None,
    trace_dir: str | os.PathLike[str] | None = None,
    local_files: bool | None = None,
    quiet: bool | None = None,
    max_body_bytes: int | None = None,
    replay_pacing: Literal["instant", "recorded"] | None = None,
    redact_headers: str | list[str] | tuple[str, ...] | None = None,
    filter: FilterSpec = None,  # noqa: A002 - the setting's name, as in step(filter=...)
    fail_on_unused: bool | None = None,
    virtual_clock: bool | None = None,
    replay_live: str | list[str] | tuple[str, ...] | None = None,
    replay_live_from: str | None = None,
    backend: bool | None = None,
    spool_dir: str | os.PathLike[str] | None = None,
    spool_max_bytes: int | None = None,
    exit_timeout: float | None = None,
    exit_upload: Literal["background", "wait"] | None = None,
    export_timeout: float | None = None,
    openinference: bool | None = None,
    export_run_metadata: bool | None = None,
    **unknown: NoReturn,
) -> None:
    """Configure AgentTrace for this process: call it once at start-up, before the first run.

    Each argument left as ``None`` falls back to its environment variable, then to the
    configuration file, then to its default: argument > ``AGENTTRACE_*`` variable >
    ``agenttrace.toml`` / ``[tool.agenttrace]`` > default. docs/configuration.md has the full
    table (variables, defaults, meaning).

    ``api_key``: project key (``at_live_...`` / ``at_test_...``); with one, traces go to the backend.
    ``api_url``: backend host or URL (default ``https://api.theagenttrace.com``).
    ``mode``: ``"record"`` (default) or ``"replay"``.
    ``replay_events``: the events to replay, as :func:`agenttrace.load_events` returns them.
    ``governance_level``: ``"relaxed"`` (default; replay warns on leaks) or ``"governance"`` (raises).
    The rest are keyword-only: ``replay_events_file`` (a trace file to replay), ``trace_dir``,
    ``local_files``, ``quiet``, ``max_body_bytes``, ``replay_pacing`` (``"instant"`` or
    ``"recorded"``), ``redact_headers``, ``filter`` (the rules of ``step(filter=...)``, for every
    run), ``fail_on_unused``, ``virtual_clock`` (the wall clock a run reads, recorded and served
    back in replay), ``replay_live`` and ``replay_live_from`` (replay with one thing
    changed, docs/replay.md), and the export settings ``backend``, ``spool_dir``,
    ``spool_max_bytes``, ``exit_timeout``, ``exit_upload`` (``"background"`` or ``"wait"``),
    ``export_timeout``, ``openinference`` (OpenInference's attributes on LLM call spans too) and
    ``export_run_metadata`` (the run's source and distributions to OTLP
    destinations too).

    Calling ``init()`` again reconfigures cleanly. Raises :class:`ConfigurationError` (a
    ``ValueError``) naming the setting, where it came from and the valid values; a misspelt
    keyword (``**unknown``, typed so that type checkers reject any) raises it too, listing the
    valid names.
    """
    resolved = resolve_settings(
        {
            "api_key": api_key,
            "api_url": api_url,
            "mode": mode,
            "replay_events": replay_events,
            "governance_level": governance_level,
            "replay_events_file": replay_events_file,
            "trace_dir": trace_dir,
            "local_files": local_files,
            "quiet": quiet,
            "max_body_bytes": max_body_bytes,
            "replay_pacing": replay_pacing,
            "redact_headers": redact_headers,
            "filter": filter,
            "fail_on_unused": fail_on_unused,
            "virtual_clock": virtual_clock,
            "replay_live": replay_live,
            "replay_live_from": replay_live_from,
            "backend": backend,
            "spool_dir": spool_dir,
            "spool_max_bytes": spool_max_bytes,
            "exit_timeout": exit_timeout,
            "exit_upload": exit_upload,
            "export_timeout": export_timeout,
            "openinference": openinference,
            "export_run_metadata": export_run_metadata,
            **unknown,
        }
    )
    configure(resolved)


def configure(settings: Settings) -> None:
    """Apply ``settings``: the runtime, then export, capture and replay (see the module docstring)."""
    from agenttrace._replay.entropy import exempt

    # Entropy drawn while setting up (the SDK's resource detectors, ids) is AgentTrace's own, not
    # the agent's, even when init() runs inside a run (a forked worker's).
    with runtime.lock, exempt():
        runtime.chosen = True
        runtime.apply(settings)
        try:
            export.configure(settings, runtime.provider, owns_provider=runtime.owns_provider)
            activation.configure(settings)
            replay.configure(settings)
            runtime.update_traced(export.exporting())
        except BaseException as exc:
            runtime.fail(exc)
            raise
        runtime.failed = None


def current_settings() -> Settings:
    """The settings in force, running ``init()`` with no arguments the first time."""
    if runtime.settings is None and runtime.failed is None:
        init()
    return runtime.current_settings()


def run_entered(state: RunState) -> None:
    """A run starts (its span and scope are open): the first one in installs the patches."""
    with runtime.lock:
        runtime.active_runs += 1
        if runtime.active_runs == 1:
            activation.install()
            replay.install()
    _guarded(replay.run_started, state)


def step_started(name: str) -> None:
    """A step starts inside a run."""
    try:
        replay.step_started(name)
    except Exception as exc:  # noqa: BLE001 - an AgentTrace bug must not break the agent
        warn_once("step-hook", f"internal error in a step hook: {exc!r}")


def run_ended(state: RunState) -> None:
    """A run is about to end its span: record its calls still open, report what replay served."""
    # Imported here, not at the top: `import agenttrace` does not load the recording machinery.
    from agenttrace._capture.record import finish_run as finish_open_calls

    _guarded(finish_open_calls, state)
    _guarded(replay.run_ended, state)


def run_exited() -> None:
    """A run has ended: the last one out removes the patches."""
    with runtime.lock:
        runtime.active_runs -= 1
        if runtime.active_runs == 0:
            replay.uninstall()
            activation.uninstall()


def _guarded(step: Any, state: RunState) -> None:
    try:
        step(state)
    except Exception as exc:  # noqa: BLE001 - an AgentTrace bug must not break the agent
        warn_once(f"run-hook:{getattr(step, '__qualname__', step)}", f"internal error in a run hook: {exc!r}")
