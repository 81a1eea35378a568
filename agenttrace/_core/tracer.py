"""AgentTrace's tracer: its run, step and call spans start even under another library's suppression.

OpenTelemetry's suppress-instrumentation key asks *instrumentations* to stay quiet; the SDK's own
tracer ignores it. Logfire's tracer provider does not: when it is the global provider (Logfire
configured before AgentTrace joins it), every tracer it hands out returns a non-recording span
while the key is set, and Logfire's ``instrument_openai()`` sets it around each LLM request. The
call made there is still the agent's call, recorded and served like any other (docs/instrumentors.md),
so its span must reach the trace file: the key is lifted for the instant the span starts, and
only then. Nothing else sees the lifted context; the code after it runs suppressed as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.util.types import Attributes

from agenttrace.exporters.traffic import OTEL_SUPPRESS_KEY

__all__ = ["UnsuppressedTracer"]

# The keys suppress_instrumentation() sets: opentelemetry.context's (its private name, looked up once,
# with its fallback, in agenttrace.exporters.traffic) and the plain string older instrumentations and
# Logfire still set.
_SUPPRESS_KEYS: tuple[str, ...] = tuple(
    key for key in (OTEL_SUPPRESS_KEY, "suppress_instrumentation") if isinstance(key, str)
)


class UnsuppressedTracer(trace.Tracer):
    """Wraps the tracer AgentTrace got from the provider in use; starts spans with suppression lifted."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer

    def start_span(  # noqa: PLR0917 - opentelemetry.trace.Tracer's signature
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        """Start a span as the wrapped tracer does, as if no suppress-instrumentation key were set."""
        current = otel_context.get_current()
        if not any(current.get(key) for key in _SUPPRESS_KEYS):
            return self.tracer.start_span(
                name, context, kind, attributes, links, start_time, record_exception, set_status_on_exception
            )
        lifted = current
        for key in _SUPPRESS_KEYS:
            lifted = otel_context.set_value(key, False, lifted)
        token = otel_context.attach(lifted)
        try:
            return self.tracer.start_span(
                name, context, kind, attributes, links, start_time, record_exception, set_status_on_exception
            )
        finally:
            otel_context.detach(token)

    def start_as_current_span(  # noqa: PLR0917 - opentelemetry.trace.Tracer's signature
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Any:  # the API's context-manager type is private (opentelemetry.util._decorator)
        """Start a span (suppression lifted); the ``with`` block runs with it as the current span."""
        span = self.start_span(
            name, context, kind, attributes, links, start_time, record_exception, set_status_on_exception
        )
        return trace.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        )
