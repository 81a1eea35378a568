"""The exceptions AgentTrace raises, all rooted in :class:`AgentTraceError`.

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

__all__ = [
    "AgentTraceError",
    "ConfigurationError",
    "DeterminismLeakError",
    "ReplayMismatchError",
    "SocketLeakError",
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
