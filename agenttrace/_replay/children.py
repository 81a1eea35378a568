"""Child processes of a replaying process replay too, and report what they did to the parent.

While replay runs are active, the environment every child inherits asks for the same replay:
``AGENTTRACE_MODE=replay``, the recording, the governance level and pacing, and the folder of
AgentTrace's ``sitecustomize`` first on ``PYTHONPATH`` (what ``agenttrace-instrument`` uses), so a
Python child (a ``multiprocessing`` spawn or forkserver worker, a ``ProcessPoolExecutor`` worker,
a ``subprocess`` running Python) starts AgentTrace before any of its code runs, with one run
around the process: its calls are served from the recording and its sandbox holds. A forked
child inherits its parent's active session as it stands.

A child tells the parent what it served, missed and leaked through a channel file (one line
per item, appended with a single write): the parent's report counts a child's misses, leaks
and governance violations as its own, and does not call the recorded calls a child served
"unused". The environment is restored, and the channel removed, when the last run ends.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from agenttrace._core.config import Settings
from agenttrace._replay.entropy import private_file

__all__ = ["CHANNEL_VAR", "PROCESS_RUN_VAR", "arm", "boot_pythonpath", "disarm", "in_child", "read", "tell"]

CHANNEL_VAR = "_AGENTTRACE_REPLAY_CHANNEL"
PROCESS_RUN_VAR = "_AGENTTRACE_PROCESS_RUN"  # the name a child's process run is derived from

_lock = threading.Lock()
_owner_pid: int | None = None  # the process that created the channel (the replaying parent)
_saved: dict[str, str | None] = {}
_temporary: list[str] = []  # files this process created for its children: removed by disarm()
_offset = [0]  # how much of the channel the parent has read


def in_child() -> bool:
    """True in a child of a replaying process (spawned, or forked with its parent's session)."""
    return _owner_pid != os.getpid() and bool(os.environ.get(CHANNEL_VAR))


def boot_pythonpath(current: str) -> str:
    """``PYTHONPATH`` with the folder of AgentTrace's ``sitecustomize`` first (once): Python children start it."""
    boot = str(Path(__file__).resolve().parents[1] / "_cli" / "boot")
    paths = [p for p in current.split(os.pathsep) if p and p != boot]
    return os.pathsep.join([boot, *paths])


def arm(settings: Settings, run_name: str) -> None:
    """Make every child process started from now on replay ``settings``' recording (first run in)."""
    global _owner_pid  # noqa: PLW0603 - one channel per replaying process
    with _lock:
        if _saved:
            return
        env: dict[str, str] = {}
        channel = os.environ.get(CHANNEL_VAR)
        if not channel:
            handle, channel = private_file("agenttrace-replay-", ".channel")
            os.close(handle)
            _temporary.append(channel)
            _owner_pid = os.getpid()
            _offset[0] = 0
        env[CHANNEL_VAR] = channel
        if settings.replay_events is not None:
            # Events given in code: the children read them from a copy on disk.
            handle, events_file = private_file("agenttrace-replay-", ".json")
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(settings.replay_events, stream)
            _temporary.append(events_file)
            env["AGENTTRACE_REPLAY_EVENTS_FILE"] = events_file
        elif settings.replay_events_file:
            env["AGENTTRACE_REPLAY_EVENTS_FILE"] = str(Path(settings.replay_events_file).resolve())
        env["AGENTTRACE_MODE"] = "replay"
        env["AGENTTRACE_GOVERNANCE_LEVEL"] = settings.governance_level
        env["AGENTTRACE_REPLAY_PACING"] = settings.replay_pacing
        env["AGENTTRACE_QUIET"] = "1"  # a child's clean report is the parent's to give
        env[PROCESS_RUN_VAR] = os.environ.get(PROCESS_RUN_VAR) or run_name
        env["PYTHONPATH"] = boot_pythonpath(os.environ.get("PYTHONPATH", ""))
        for key, value in env.items():
            _saved[key] = os.environ.get(key)
            os.environ[key] = value


def disarm() -> None:
    """Give the environment back as it was and remove the channel (last run out)."""
    global _owner_pid  # noqa: PLW0603 - one channel per replaying process
    with _lock:
        for key, value in _saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _saved.clear()
        if _owner_pid == os.getpid():
            for path in _temporary:
                try:
                    os.unlink(path)
                except OSError:
                    pass
            _owner_pid = None
        _temporary.clear()


def tell(kind: str, text: str) -> None:
    """In a child: append one item (``served``, ``missed``, ``leak``, ``violation``) to the channel."""
    channel = os.environ.get(CHANNEL_VAR)
    if not channel:
        return
    line = json.dumps([kind, os.getpid(), text]) + "\n"
    try:
        fd = os.open(channel, os.O_WRONLY | os.O_APPEND)
    except OSError:
        return  # the parent's replay is over: nobody left to tell
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def read() -> Iterator[tuple[str, int, str]]:
    """In the parent: the items children appended since the last read."""
    channel = os.environ.get(CHANNEL_VAR)
    if not channel or _owner_pid != os.getpid():
        return
    try:
        with open(channel, "rb") as stream:
            stream.seek(_offset[0])
            data = stream.read()
    except OSError:
        return
    complete = data.rfind(b"\n") + 1  # a line still being written is read next time
    _offset[0] += complete
    for raw in data[:complete].splitlines():
        try:
            kind, pid, text = json.loads(raw)
        except ValueError:
            continue
        yield str(kind), int(pid), str(text)
