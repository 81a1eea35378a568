"""The span processor AgentTrace adds to the tracer provider for export: it fans spans out to the lanes.

A provider's processors cannot be removed, so :mod:`agenttrace.exporters.setup` adds one
:class:`ExportHub` and swaps its lanes when ``init()`` changes the targets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from agenttrace.exporters.exit import exit_timeout, in_worker_process
from agenttrace.exporters.lanes import ExportLane, shutdown_all
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.KIND

__all__ = ["ExportHub"]


class ExportHub(SpanProcessor):
    """Added once to the tracer provider; fans spans out to the current lanes.

    A provider's processors cannot be removed, so ``init()`` changing the targets swaps lanes
    here instead.
    """

    agenttrace_own = True  # see agenttrace._core.runtime.Runtime.traced

    def __init__(self) -> None:
        self.lanes: dict[tuple[Any, ...], ExportLane] = {}

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        """Nothing to do until a span ends."""

    def on_end(self, span: ReadableSpan) -> None:
        """Hand ``span`` to every lane; in a multiprocessing worker, wait for them at each run's end."""
        lanes = tuple(self.lanes.values())
        for lane in lanes:
            lane.on_end(span)
        if span.attributes and span.attributes.get(S.KIND) == "run" and in_worker_process():
            deadline = time.monotonic() + exit_timeout()
            for lane in lanes:
                lane.settle(deadline)

    def set_lanes(self, wanted: dict[tuple[Any, ...], Callable[[], ExportLane]]) -> None:
        """Keep lanes whose key is still wanted, create the new ones, close the others."""
        current = dict(self.lanes)
        new = {key: current.get(key) or make() for key, make in wanted.items()}
        self.lanes = new
        for key, lane in current.items():
            if key not in new:
                lane.close(time.monotonic() + exit_timeout(), exiting=False)

    def shutdown(self) -> None:
        """Close every lane of this process within the exit bound."""
        shutdown_all()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush every lane."""
        return all(lane.force_flush(timeout_millis) for lane in tuple(self.lanes.values()))
