"""The wall clock the agent reads during a run: recorded, then served back on replay (the virtual clock).

Clock-based ids (uuid7: a new millisecond draws 10 random bytes, the same millisecond 4) and
timestamps in an agent's output depend on the readings, so a replay that read the real clock
would draw differently and print other times. Each reading the agent makes in a run's context
is logged in the run's draw sequence (source ``clock``, see :mod:`agenttrace._replay.entropy`),
and in replay the session serves the recorded readings in order, then advances from the last
one by the real time elapsed when the agent reads more than the recording holds.

Read through the clock while runs are active (``virtual_clock``, on by default):

* ``time.time()`` and ``time.time_ns()`` (module attributes), and through them what looks them up
  at each call: ``datetime.date.today()`` and ``datetime.datetime.today()`` (in C), ``uuid.uuid1()``,
  ``uuid.uuid7()`` (Python 3.14), pydantic-ai's uuid7, logging's record times;
* ``datetime.datetime.now()`` and ``utcnow()``: C methods of a built-in type, replaced in the
  type's namespace (so ``from datetime import datetime`` done earlier is covered too);
* ``time.localtime()``, ``time.gmtime()``, ``time.ctime()`` and ``time.strftime(format)`` called
  without a time.

Not virtualized: monotonic clocks (``time.monotonic``, ``perf_counter``, ``process_time``: timeouts,
the event loop and stream pacing run on them); names bound before the first run started
(``from time import time`` at import); C extensions that read the OS clock themselves
(``uuid_utils``); readings in threads that carry no run; AgentTrace's and OpenTelemetry's own
readings (span times are real).
"""

from __future__ import annotations

import datetime
import sys
import threading
import time
import warnings
from typing import Any

from agenttrace._replay.entropy import clock_reading, real_time_ns

__all__ = ["install", "installed", "uninstall"]

_real_localtime = time.localtime
_real_gmtime = time.gmtime
_real_ctime = time.ctime
_real_strftime = time.strftime
_DATETIME = datetime.datetime
_REAL_NOW = _DATETIME.__dict__["now"]
_REAL_UTCNOW = _DATETIME.__dict__["utcnow"]
_NS = 1_000_000_000
_OWN = ("agenttrace", "opentelemetry")  # packages whose readings are never the agent's
_lock = threading.Lock()
_installed: list[str] = []  # what install() replaced: "time", "datetime"


def _now_ns() -> int:
    """The reading to hand the caller of the wrapper that calls this (two frames up)."""
    real = real_time_ns()
    try:
        caller = sys._getframe(2).f_globals.get("__name__") or ""
    except ValueError:  # called from C with no Python frame above
        caller = ""
    if caller.partition(".")[0] in _OWN:
        return real
    return clock_reading(real)


def _time() -> float:
    return float(_now_ns()) / 1e9  # as CPython's time.time() converts its nanoseconds


def _time_ns() -> int:
    return _now_ns()


def _localtime(secs: float | None = None) -> time.struct_time:
    return _real_localtime(_now_ns() // _NS if secs is None else secs)


def _gmtime(secs: float | None = None) -> time.struct_time:
    return _real_gmtime(_now_ns() // _NS if secs is None else secs)


def _ctime(secs: float | None = None) -> str:
    return _real_ctime(_now_ns() // _NS if secs is None else secs)


def _strftime(format: str, t: Any = None) -> str:  # noqa: A002 - time.strftime's own parameter name
    return _real_strftime(format, _real_localtime(_now_ns() // _NS) if t is None else t)


def _from_ns(cls: type[datetime.datetime], ns: int, tz: datetime.tzinfo | None) -> datetime.datetime:
    # As datetime.now() does: the reading floored to the microsecond.
    secs, micros = divmod(ns // 1000, 1_000_000)
    return cls.fromtimestamp(secs, tz).replace(microsecond=micros)


def _now(cls: type[datetime.datetime], tz: datetime.tzinfo | None = None) -> datetime.datetime:
    return _from_ns(cls, _now_ns(), tz)


def _utcnow(cls: type[datetime.datetime]) -> datetime.datetime:
    if sys.version_info >= (3, 12):
        warnings.warn(
            "datetime.datetime.utcnow() is deprecated and scheduled for removal in a future version. Use "
            "timezone-aware objects to represent datetimes in UTC: datetime.datetime.now(datetime.UTC).",
            DeprecationWarning,
            stacklevel=2,
        )
    return _from_ns(cls, _now_ns(), datetime.timezone.utc).replace(tzinfo=None)


_TIME_PATCHES = {
    "time": _time,
    "time_ns": _time_ns,
    "localtime": _localtime,
    "gmtime": _gmtime,
    "ctime": _ctime,
    "strftime": _strftime,
}
_TIME_REAL = {name: getattr(time, name) for name in _TIME_PATCHES}


def _set_type_attribute(cls: type, name: str, value: Any) -> None:
    """Set ``name`` on a built-in (immutable) type: in its namespace, then invalidate its method cache."""
    import ctypes
    import gc

    (namespace,) = gc.get_referents(cls.__dict__)  # the dict behind the type's read-only mapping proxy
    namespace[name] = value
    ctypes.pythonapi.PyType_Modified(ctypes.py_object(cls))


def install() -> None:
    """Read the wall clock through the run's log (the first run starts; idempotent)."""
    with _lock:
        if _installed:
            return
        for name, wrapper in _TIME_PATCHES.items():
            setattr(time, name, wrapper)
        _installed.append("time")
        try:
            _set_type_attribute(_DATETIME, "now", classmethod(_now))
            _set_type_attribute(_DATETIME, "utcnow", classmethod(_utcnow))
        except Exception as exc:  # noqa: BLE001 - time.time() is still virtual; datetime.now() stays real
            from agenttrace._core.errors import warn_once

            warn_once(
                "clock-datetime",
                f"datetime.datetime.now() cannot be virtualized in this Python ({exc!r}); it reads the real clock",
            )
        else:
            _installed.append("datetime")
    from agenttrace._replay import ids

    ids.install()
    _hook_ids_import()


_hooked: list[bool] = []


def _hook_ids_import() -> None:
    # uuid_utils imported while a run is active (a framework imported inside the run) gets its
    # ids from the run too; the hook fires once, on the import.
    with _lock:
        if _hooked:
            return
        _hooked.append(True)
    import wrapt

    def imported(_module: Any) -> None:
        if installed():
            from agenttrace._replay import ids

            ids.install()

    wrapt.register_post_import_hook(imported, "uuid_utils.compat")


def uninstall() -> None:
    """Restore the real clock exactly (the last run ended)."""
    from agenttrace._replay import ids

    ids.uninstall()
    with _lock:
        if "time" in _installed:
            for name, real in _TIME_REAL.items():
                setattr(time, name, real)
        if "datetime" in _installed:
            _set_type_attribute(_DATETIME, "now", _REAL_NOW)
            _set_type_attribute(_DATETIME, "utcnow", _REAL_UTCNOW)
        _installed.clear()


def installed() -> bool:
    """True while the clock is read through the runs' logs."""
    return bool(_installed)
