"""Child processes of a recording process record into its run; those of a replaying one replay too.

While record runs are active, the environment every child inherits carries the run's trace
context (``_AGENTTRACE_PARENT_SPAN``), the record settings a child needs (mode, trace folder,
local files) and the folder of AgentTrace's ``sitecustomize`` first on ``PYTHONPATH``: a Python
child (a ``multiprocessing`` spawn or forkserver worker, a ``ProcessPoolExecutor`` worker, a
``subprocess`` running Python) starts AgentTrace before any of its code runs, with one run
around the process whose span is a child of the parent's run span, in the same trace. Its spans
go to the same trace file (merged when either side commits), so replay serves them back in the
workers. A forked child inherits its parent's run as it stands (see the trace files' processor).

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
from typing import Any

from agenttrace._core.config import Settings
from agenttrace._replay.entropy import private_file

__all__ = [
    "CHANNEL_VAR",
    "CHILD_RUN_SUFFIXES",
    "PARENT_SPAN_VAR",
    "PROCESS_RUN_VAR",
    "arm",
    "arm_record",
    "boot_pythonpath",
    "disarm",
    "in_child",
    "parent_span",
    "read",
    "set_child_env",
    "tell",
]

CHANNEL_VAR = "_AGENTTRACE_REPLAY_CHANNEL"
PARENT_SPAN_VAR = "_AGENTTRACE_PARENT_SPAN"  # "<trace id>-<span id>" (hex) of the run a child joins
# The process runs of multiprocessing workers and of `python -c` children are named after the
# parent's run with these suffixes: they are never a top-level run of the recording.
CHILD_RUN_SUFFIXES = (" (worker)", " (child)")
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
            with os.fdopen(handle, "wb") as stream:
                stream.write(_dumps(list(settings.replay_events)))
            _temporary.append(events_file)
            env["AGENTTRACE_REPLAY_EVENTS_FILE"] = events_file
        elif settings.replay_events_file:
            env["AGENTTRACE_REPLAY_EVENTS_FILE"] = str(Path(settings.replay_events_file).resolve())
        env["AGENTTRACE_MODE"] = "replay"
        env["AGENTTRACE_GOVERNANCE_LEVEL"] = settings.governance_level
        env["AGENTTRACE_REPLAY_PACING"] = settings.replay_pacing
        env["AGENTTRACE_VIRTUAL_CLOCK"] = "1" if settings.virtual_clock else "0"
        env["AGENTTRACE_REPLAY_LIVE"] = ",".join(settings.replay_live)
        if settings.replay_live_from is not None:
            env["AGENTTRACE_REPLAY_LIVE_FROM"] = settings.replay_live_from
        env["AGENTTRACE_QUIET"] = "1"  # a child's clean report is the parent's to give
        env[PROCESS_RUN_VAR] = os.environ.get(PROCESS_RUN_VAR) or run_name
        env["PYTHONPATH"] = boot_pythonpath(os.environ.get("PYTHONPATH", ""))
        _export(env)


def arm_record(settings: Settings, run_name: str, trace_id: int, span_id: int) -> None:
    """Make every child process started from now on record into the run ``span_id`` (first run in)."""
    with _lock:
        if _saved:
            return
        env = {
            "AGENTTRACE_MODE": "record",
            "AGENTTRACE_TRACE_DIR": str(Path(settings.trace_dir).resolve()),
            "AGENTTRACE_LOCAL_FILES": "1" if settings.local_files else "0",
            "AGENTTRACE_MAX_BODY_BYTES": str(settings.max_body_bytes),
            "AGENTTRACE_VIRTUAL_CLOCK": "1" if settings.virtual_clock else "0",
            "AGENTTRACE_QUIET": "1",  # the child's "trace written" line is the parent's to say
            PARENT_SPAN_VAR: f"{trace_id:032x}-{span_id:016x}",
            PROCESS_RUN_VAR: os.environ.get(PROCESS_RUN_VAR) or run_name,
            "PYTHONPATH": boot_pythonpath(os.environ.get("PYTHONPATH", "")),
        }
        _export(env)


def set_child_env(key: str, value: str) -> None:
    """Change a variable of the environment armed for children (given back by :func:`disarm`)."""
    with _lock:
        _export({key: value})


def _export(env: dict[str, str]) -> None:
    """Set ``env`` in this process's environment; :func:`disarm` gives back each variable's first value.

    Called under ``_lock``.
    """
    for key, value in env.items():
        _saved.setdefault(key, os.environ.get(key))
        os.environ[key] = value


def parent_span() -> tuple[int, int] | None:
    """``(trace id, span id)`` of the run this process's parent asked it to join, if any (and well formed)."""
    value = os.environ.get(PARENT_SPAN_VAR, "")
    trace_hex, _, span_hex = value.partition("-")
    try:
        trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    except ValueError:
        return None
    if len(trace_hex) != 32 or len(span_hex) != 16 or not trace_id or not span_id:
        return None
    return trace_id, span_id


def _dumps(events: list[Any]) -> bytes:
    """The events as JSON: orjson when installed (about 15 times faster on a large list), else json."""
    from agenttrace._format.exactjson import orjson_module

    orjson = orjson_module()
    if orjson is not None:
        try:
            return bytes(orjson.dumps(events))
        except TypeError:  # a value orjson does not take (an int beyond 64 bits): json's way
            pass
    return json.dumps(events).encode("utf-8")


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
