"""Ids that C extensions make from the OS clock and random source, made from the run's instead.

``uuid_utils`` (Rust; LangChain's message and run ids come from ``uuid_utils.compat.uuid7``) reads
the clock and draws its random bits where AgentTrace cannot see them, so a replay would print
other ids. While runs are active (and ``virtual_clock`` is on), the module-level functions behind
``uuid_utils.compat.uuid7()`` and ``uuid4()`` are replaced by ones that build the same kind of id
(RFC 9562: uuid7 with the 42-bit counter of method 1, as Python 3.14's ``uuid.uuid7()``) from a
wall-clock reading and ``os.urandom``: both recorded, and served back in replay. Calls that pass
their own time go to the library unchanged.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from agenttrace._replay.entropy import clock_reading, real_time_ns

__all__ = ["install", "uninstall"]

_MODULE = "uuid_utils.compat"
_lock = threading.Lock()
_saved: dict[str, Any] = {}  # the library's functions we replaced, by name
_last_ms: list[int] = [-1]
_last_counter: list[int] = [0]
_VERSION_7 = 0x0000_0000_0000_7000_8000_0000_0000_0000
_VERSION_4_MASK = ~(0xF000 << 64) & ~(0xC000 << 48)
_VERSION_4 = (0x4000 << 64) | (0x8000 << 48)


def _counter_and_tail() -> tuple[int, int]:
    rand = int.from_bytes(os.urandom(10), "big")
    return (rand >> 32) & 0x1FF_FFFF_FFFF, rand & 0xFFFF_FFFF


def _uuid7_int(*args: Any, **kwargs: Any) -> int:
    if any(value is not None for value in (*args, *kwargs.values())):
        return int(_saved["_uuid7_int"](*args, **kwargs))  # the caller's own time
    ms = clock_reading(real_time_ns()) // 1_000_000
    with _lock:
        if ms > _last_ms[0]:
            counter, tail = _counter_and_tail()
        else:
            ms = _last_ms[0]
            counter = _last_counter[0] + 1
            if counter > 0x3FF_FFFF_FFFF:  # the counter overflows: the next millisecond
                ms += 1
                counter, tail = _counter_and_tail()
            else:
                tail = int.from_bytes(os.urandom(4), "big")
        _last_ms[0], _last_counter[0] = ms, counter
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= ((counter >> 30) & 0x0FFF) << 64
    value |= (counter & 0x3FFF_FFFF) << 32
    value |= tail & 0xFFFF_FFFF
    return value | _VERSION_7


def _uuid4_int() -> int:
    return (int.from_bytes(os.urandom(16), "big") & _VERSION_4_MASK) | _VERSION_4


_REPLACEMENTS = {"_uuid7_int": _uuid7_int, "_uuid4_int": _uuid4_int}


def install() -> None:
    """Replace the functions if ``uuid_utils.compat`` is imported (idempotent; with the clock)."""
    module = sys.modules.get(_MODULE)
    if module is None:
        return
    with _lock:
        if _saved:
            return
        for name, replacement in _REPLACEMENTS.items():
            original = getattr(module, name, None)
            if callable(original):
                _saved[name] = original
                setattr(module, name, replacement)


def uninstall() -> None:
    """Give the library its functions back (the last run ended)."""
    module = sys.modules.get(_MODULE)
    with _lock:
        if module is not None:
            for name, original in _saved.items():
                if getattr(module, name, None) is _REPLACEMENTS[name]:
                    setattr(module, name, original)
        _saved.clear()
