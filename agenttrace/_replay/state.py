"""The replay session in force and the hooks that connect it to the run lifecycle.

Everything here is reached through the functions of ``agenttrace._replay``, which import this
module only once ``init()`` configures a replay or a run starts.
"""

from __future__ import annotations

import threading

from agenttrace._core.config import Settings
from agenttrace._core.errors import ConfigurationError
from agenttrace._core.scope import RunState
from agenttrace._replay import children as _children
from agenttrace._replay import clock as _clock
from agenttrace._replay import entropy as _entropy
from agenttrace._replay.session import ReplaySession

__all__ = ["active", "configure", "install", "run_ended", "run_started", "session", "step_started", "uninstall"]

_lock = threading.RLock()
session: ReplaySession | None = None
active = False  # True while at least one run is active
_children_armed = False  # the environment asks child processes to record into a run (record mode)


def configure(settings: Settings) -> None:
    """Build the session for ``settings`` (validating the recording now) or drop it."""
    global session
    new: ReplaySession | None = None
    if settings.replaying:
        _check_live(settings)
        from agenttrace._replay.loader import check_events, collector_paused, load_recording

        with collector_paused():
            if settings.replay_events is not None:
                source = "init(replay_events=...)"
                # Checking each call event builds its exchange: the session takes those.
                events, exchanges = check_events(settings.replay_events, source, keep_calls=False)
            elif settings.replay_events_file:
                source = settings.replay_events_file
                # A trace file's call spans become exchanges directly, with no call events between;
                # governance serves a file only as it was written (digests checked, no span twice).
                events, exchanges = load_recording(source, source, sealed=settings.governance)
            else:
                raise ConfigurationError(
                    "mode 'replay' needs a recording: pass init(replay_events=[...]) (see agenttrace.load_events) "
                    "or set AGENTTRACE_REPLAY_EVENTS_FILE to a trace file"
                )
            new = ReplaySession(settings, events, source, exchanges)
    with _lock:
        old, session = session, new
        if active:
            if old is not None:
                old.deactivate()
            if new is not None:
                new.activate()


def _check_live(settings: Settings) -> None:
    """The live settings parse, or ConfigurationError naming the setting and where it came from."""
    from agenttrace._replay.live import parse_fork_point, parse_live

    try:
        parse_live(settings.replay_live)
        if settings.replay_live_from is not None:
            parse_fork_point(settings.replay_live_from)
    except ValueError as exc:
        from agenttrace._core.config import source_of_setting

        name = str(exc).partition(":")[0]
        raise ConfigurationError(f"{exc} (from {source_of_setting(settings, name)})") from None


def install() -> None:
    """The first run starts: entropy capture always (the wall clock too, unless ``virtual_clock`` is off).

    Serving too, when replaying.
    """
    global active  # noqa: PLW0603 - process-global mode
    from agenttrace._core.runtime import runtime

    with _lock:
        active = True
        _entropy.install()
        if runtime.settings is None or runtime.settings.virtual_clock:
            _clock.install()
        if session is not None:
            session.activate()


def uninstall() -> None:
    """The last run ended: undo :func:`install`."""
    global active, _children_armed  # noqa: PLW0603 - process-global mode
    with _lock:
        active = False
        if session is not None:
            session.deactivate()
        _clock.uninstall()
        _entropy.uninstall()
        if _children_armed:
            _children_armed = False
            _children.disarm()


def run_started(run: RunState) -> None:
    """A run starts: map it to the recorded run (replay), then start its entropy log.

    When recording, the first run in asks the child processes started from now on to record
    into it (see :mod:`agenttrace._replay.children`).
    """
    current = session
    if current is not None:
        current.run_started(run)
    else:
        _arm_record(run)
    _entropy.run_started(run)


def _arm_record(run: RunState) -> None:
    global _children_armed  # noqa: PLW0603 - process-global mode
    with _lock:
        if _children_armed:
            return
        _children_armed = True
    from agenttrace._core.runtime import runtime

    settings = runtime.settings
    if settings is None or settings.mode != "record":
        return
    try:
        with _entropy.exempt():
            context = run.span.get_span_context()
            _children.arm_record(settings, run.name, context.trace_id, context.span_id)
    except Exception as exc:  # noqa: BLE001 - the run goes on; its children run unrecorded
        from agenttrace._core.errors import warn_once

        warn_once("record-children", f"could not pass the recording on to child processes: {exc!r}")


def step_started(name: str) -> None:
    """A step starts: a replay going live from a step needs to know."""
    current = session
    if current is not None and current.fork is not None:
        current.step_started(name)


def run_ended(run: RunState) -> None:
    """A run ends: write its entropy, and in replay report what was served and what was not."""
    _entropy.run_ended(run)
    current = session
    if current is None:
        return
    stats = current.run_ended(run)
    if stats is not None:
        from agenttrace._replay.report import report

        report(current, stats)
