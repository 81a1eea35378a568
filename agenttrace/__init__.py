"""AgentTrace: record every I/O exchange of an AI agent run as OpenTelemetry spans, and replay it.

Quick start::

    import agenttrace

    @agenttrace.run("support-agent")
    def main() -> None:
        with agenttrace.step("search", type="tool_call", query="refund"):
            agenttrace.set_result({"hits": 3})

The public API is exactly what ``__all__`` lists; every other module is private.
"""

from __future__ import annotations

from agenttrace._capture.filter import FILTERED
from agenttrace._core.errors import (
    AgentTraceError,
    ConfigurationError,
    DeterminismLeakError,
    ReplayMismatchError,
    SocketLeakError,
)
from agenttrace._core.lifecycle import init
from agenttrace._core.run import run
from agenttrace._core.step import set_result, step
from agenttrace._replay import load_events
from agenttrace._version import __version__

trace = run  # `@agenttrace.trace` is the other name of `@agenttrace.run` (docs/api.md)

__all__ = [
    "FILTERED",
    "AgentTraceError",
    "ConfigurationError",
    "DeterminismLeakError",
    "ReplayMismatchError",
    "SocketLeakError",
    "__version__",
    "init",
    "load_events",
    "run",
    "set_result",
    "step",
    "trace",
]
