"""Replay: re-run a recorded agent with no real I/O (see docs/replay.md).

:mod:`agenttrace._core.lifecycle` calls these: the recording is read when ``init()``
configures replay, and the machinery is imported when a run starts.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from agenttrace._core.config import Settings
from agenttrace._core.scope import RunState

__all__ = ["configure", "install", "load_events", "run_ended", "run_started", "step_started", "uninstall"]


def load_events(path: str | Path) -> list[dict[str, Any]]:
    """Read a trace file into the event list ``init(replay_events=...)`` takes (format detected).

    Accepts a local or downloaded trace (OTLP JSON Lines), an OTel Collector file exporter's
    output (JSON Lines or one document) or a JSON array of events. Raises
    :class:`ConfigurationError` naming the file, the line and what was expected.
    """
    from agenttrace._replay.loader import load_events as load

    return load(path)


def configure(settings: Settings) -> None:
    from agenttrace._replay.entropy import isolate_span_ids

    isolate_span_ids()
    # Record mode with no session ever built: nothing more to import.
    if not settings.replaying and "agenttrace._replay.state" not in sys.modules:
        return
    from agenttrace._replay import state as _state

    _state.configure(settings)


def install() -> None:
    from agenttrace._replay import state as _state

    _state.install()


def uninstall() -> None:
    from agenttrace._replay import state as _state

    _state.uninstall()


def run_started(run: RunState) -> None:
    from agenttrace._replay import state as _state

    _state.run_started(run)


def run_ended(run: RunState) -> None:
    from agenttrace._replay import state as _state

    _state.run_ended(run)


def step_started(name: str) -> None:
    """A step starts in a run (a replay may go live from it, see ``replay_live_from``)."""
    state = sys.modules.get("agenttrace._replay.state")
    if state is not None:
        state.step_started(name)
