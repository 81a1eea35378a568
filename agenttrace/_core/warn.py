"""Warnings on stderr: one line per distinct problem per process, never an exception."""

from __future__ import annotations

import sys
import threading

__all__ = ["say", "warn_once"]

_lock = threading.Lock()
_seen: set[str] = set()


def say(message: str) -> None:
    """Print one ``agenttrace:`` line on stderr; a closed stderr is ignored."""
    try:
        print(f"agenttrace: {message}", file=sys.stderr, flush=True)
    except Exception:  # noqa: BLE001, S110 - stderr gone (closed pipe at exit): nothing to tell
        pass


def warn_once(key: str, message: str) -> bool:
    """Print ``WARNING: message`` the first time ``key`` is seen; return whether it printed."""
    with _lock:
        if key in _seen:
            return False
        _seen.add(key)
    say(f"WARNING: {message}")
    return True


def _reset_for_tests() -> None:
    with _lock:
        _seen.clear()
