"""How AgentTrace reports trouble: the exceptions it raises, all rooted in :class:`AgentTraceError`,
and, for trouble that must not stop the agent, one warning line on stderr (:func:`warn_once`).

``AgentTraceError``
    Base class: ``except agenttrace.AgentTraceError`` catches everything below.
``ConfigurationError`` (also a ``ValueError``)
    A setting given to ``init()`` or read from the environment is invalid: an API key
    without the ``at_live_``/``at_test_`` prefix, an unknown mode or governance level, a
    malformed URL, or a replay file that cannot be used. The message names the setting,
    where it came from and what was expected; it never echoes a secret.
``ReplayMismatchError``
    In ``governance`` replay the agent made a call the recording does not contain. The
    message shows the call, the closest recorded call and what differs.
``DeterminismLeakError``
    In ``governance`` replay the agent reached outside the sandbox without an intercepted
    client (raw DNS, a socket connect, entropy the recording cannot serve). For a raw socket
    connect or datagram it is also a ``ReplayMismatchError`` (:class:`SocketLeakError`): the SDK
    reference counts "a network/socket call not found in the recording" as a mismatch, the
    design as a leak, and code written to either catches it.
"""

from __future__ import annotations

import sys
import threading

__all__ = [
    "AgentTraceError",
    "ConfigurationError",
    "DeterminismLeakError",
    "ReplayMismatchError",
    "SocketLeakError",
    "say",
    "warn_once",
]


class AgentTraceError(Exception):
    """Base class of every error AgentTrace raises on purpose."""


class ConfigurationError(AgentTraceError, ValueError):
    """A setting is invalid; the message names it, its source and the valid values."""


class ReplayMismatchError(AgentTraceError):
    """A call made during governance replay is not in the recording."""


class DeterminismLeakError(AgentTraceError):
    """Governance replay caught the agent reaching outside the sandbox."""


class SocketLeakError(DeterminismLeakError, ReplayMismatchError):
    """A raw socket connect or datagram in governance replay: a leak, and a call not recorded."""


# --- warnings: one line per distinct problem per process, never an exception ----------------------

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
