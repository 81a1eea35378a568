"""Process exit: the exit bound, and what exit does with the spans the lanes have not delivered yet.

What happens is the ``exit_upload`` setting:

* ``"background"`` (the default): nothing waits on the network. Whatever is still queued or in
  flight is written to the spool at once, and when a lane's spool then holds something to send,
  the process starts one detached uploader (:mod:`agenttrace.exporters.uploader`) that sends those
  folders after the process is gone. A multiprocessing worker spools but starts nothing: its
  files are its parent's to hand off.
* ``"wait"``: the lanes get ``exit_timeout`` seconds in total; whatever is still queued or in
  flight then is spooled and the process goes on exiting. Also used where an uploader cannot
  be started (a frozen or embedded interpreter, the uploader itself, a container's PID 1,
  whose children die with it).

The lanes call :func:`close_lanes` through :func:`agenttrace.exporters.lanes.shutdown_all`; the
settings of the last ``init()`` come from :func:`use_settings`.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from agenttrace.exporters import uploader

if TYPE_CHECKING:
    from agenttrace.exporters.spool import Spool

    from agenttrace._core.config import Settings

__all__ = [
    "Lane",
    "close_lanes",
    "exit_timeout",
    "handed_off_to",
    "in_worker_process",
    "is_spawned_worker",
    "run_metadata_exported",
    "use_settings",
]

_settings: Settings | None = None

handed_off_to: int | None = None  # pid of the background uploader this process started at exit


class Lane(Protocol):
    """What exit needs of an export lane (:class:`agenttrace.exporters.lanes.ExportLane`)."""

    @property
    def spool(self) -> Spool | None:
        """Where the lane keeps what it could not deliver."""

    def destination(self) -> str:
        """Where the lane sends, for messages."""

    def can_hand_off(self, spawn: bool) -> bool:
        """True when exit may spool the lane's work without waiting."""

    def wait_inflight(self, deadline: float) -> None:
        """Wait until ``deadline`` for the batch being sent to be answered."""

    def hand_off(self, spawn: bool) -> dict[str, str] | None:
        """Spool at once what is queued or in flight; the uploader's variables when it has something to send."""

    def close(self, deadline: float, *, exiting: bool = True) -> None:
        """Wait until ``deadline`` for what is queued, then spool the rest."""


def use_settings(settings: Settings) -> None:
    """Take the exit bound, the exit mode and the export timeout from ``settings`` (on every ``init()``)."""
    global _settings  # noqa: PLW0603 - the settings of the process's last init()
    _settings = settings


def run_metadata_exported() -> bool:
    """True when the run's source and distributions go to OTLP destinations too (``export_run_metadata``)."""
    if _settings is not None:
        value = getattr(_settings, "export_run_metadata", None)
        if value is not None:
            return bool(value)
    # Before any init() (a lane made by opentelemetry-instrument's configurator): the variable.
    return os.environ.get("AGENTTRACE_EXPORT_RUN_METADATA", "").strip().lower() in ("1", "true", "yes", "on")


def exit_timeout() -> float:
    """The exit bound in seconds (``exit_timeout``; 0.5 before any ``init()``)."""
    if _settings is not None:
        return _settings.exit_timeout
    return 0.5


def in_worker_process() -> bool:
    """True in a multiprocessing worker (forked or spawned)."""
    multiprocessing = sys.modules.get("multiprocessing")
    return multiprocessing is not None and multiprocessing.parent_process() is not None


def is_spawned_worker() -> bool:
    """True in a process multiprocessing spawned as a worker (spawn or forkserver's server start it
    as ``python -c ... --multiprocessing-fork``); known from the command line, so also while the
    interpreter starts, before multiprocessing has set the worker up."""
    return "--multiprocessing-fork" in getattr(sys, "orig_argv", ())


def _exit_plan() -> str | None:
    """How exit treats what is not delivered yet.

    ``"spawn"``: spool it at once and start the background uploader. ``"leave"``: spool it at once
    and start nothing (a multiprocessing worker: its parent hands the spool off). None: wait up to
    ``exit_timeout``, then spool (``exit_upload="wait"``, or no uploader can be started here).
    """
    if _settings is not None and _settings.exit_upload == "wait":
        return None
    if in_worker_process():
        return "leave"
    if os.getpid() == 1 or uploader.command() is None:
        return None  # PID 1: a container's main process, whose children are killed with it
    return "spawn"


# How long a multiprocessing worker's exit waits for an upload in flight before spooling it.
_WORKER_INFLIGHT_WAIT = 1.0


def close_lanes(lanes: Sequence[Lane]) -> None:
    """Close ``lanes`` (every lane of this process) at exit, sharing one exit bound between them.

    With ``exit_upload="background"`` the lanes that can hand off spool their undelivered spans at
    once and one uploader is started for all of them; the others (and every lane in ``"wait"``
    mode) wait for the network until the bound, then spool.
    """
    deadline = time.monotonic() + exit_timeout()
    plan = _exit_plan()
    spawn = plan == "spawn"
    waiting: list[Lane] = []
    jobs: list[tuple[Lane, dict[str, str]]] = []
    for lane in lanes:
        if plan is None or not lane.can_hand_off(spawn):
            waiting.append(lane)
            continue
        if plan == "leave":  # a worker: an upload in flight is let finish (no second copy in the spool)
            lane.wait_inflight(min(deadline, time.monotonic() + _WORKER_INFLIGHT_WAIT))
        env = lane.hand_off(spawn)
        if env is not None:
            jobs.append((lane, env))
    if jobs:
        _start_uploader(jobs)
    for lane in waiting:
        lane.close(deadline)
    spool = sys.modules.get("agenttrace.exporters.spool")
    if spool is not None:
        spool.DROPS.report()


def _start_uploader(jobs: list[tuple[Lane, dict[str, str]]]) -> None:
    """Start the one detached process that sends the spool folders of ``jobs``; never raises.

    If it cannot start, the data is already in the spool: the usual warning says so.
    """
    global handed_off_to  # noqa: PLW0603 - one uploader per process
    # Only the variables the lanes need: an AGENTTRACE_* value that init() arguments overrode
    # here must not stop the uploader's own settings from resolving.
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTTRACE_")}
    folders: list[dict[str, Any]] = []
    started: list[Lane] = []
    for lane, extra in jobs:
        spool = lane.spool
        if spool is None or any(env.get(key, value) != value for key, value in extra.items()):
            continue  # another lane needs other values of the same variables: these files wait for the next run
        env.update(extra)
        folder = {"target": spool.target, "spool_dir": os.path.abspath(spool.root), "spool_max_bytes": spool.max_bytes}
        if folder not in folders:
            folders.append(folder)
        started.append(lane)
    if not folders:
        return
    timeout = _settings.export_timeout if _settings is not None else 10.0
    try:
        handed_off_to = uploader.start(folders, env, timeout)
    except Exception as exc:  # noqa: BLE001 - no fork allowed, exec failed, ...: the spool keeps the data
        from agenttrace.exporters.spool import Delivery, report_failure

        for lane in started:
            reason = f"not delivered before exit, and the background upload could not start: {exc}"
            report_failure(lane.destination(), Delivery(reason=reason), lane.spool)
