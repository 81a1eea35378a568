"""The exporters' own traffic: marking export work so that nothing records it and the sandbox lets it through.

Export threads carry a marker attribute, and :func:`exporting` marks any other thread while an
AgentTrace exporter sends on it (a user's ``BatchSpanProcessor`` thread). :func:`suppress_instrumentation`
sets AgentTrace's own export key (:data:`agenttrace._core.scope.EXPORT_TRAFFIC_KEY`), which
AgentTrace's instrumentors and the replay sandbox exempt, and OpenTelemetry's
suppress-instrumentation flag, so OpenTelemetry's instrumentors do not record the exporter's HTTP
traffic either. OpenTelemetry's flag alone exempts nothing from AgentTrace: any library can set it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextvars import Token

from opentelemetry import context as otel_context

from agenttrace._core.scope import EXPORT_TRAFFIC_KEY

__all__ = ["OTEL_SUPPRESS_KEY", "exporting", "is_exporter_thread", "mark_exporter_thread", "suppress_instrumentation"]

_marker = threading.local()


@contextlib.contextmanager
def exporting() -> Iterator[None]:
    """Mark the current thread as doing export work while the block runs."""
    depth = getattr(_marker, "depth", 0)
    _marker.depth = depth + 1
    try:
        yield
    finally:
        _marker.depth = depth


def mark_exporter_thread(thread: threading.Thread) -> None:
    """Mark ``thread`` (not started yet) as one of AgentTrace's export threads."""
    thread._agenttrace_exporter = True  # type: ignore[attr-defined]  # read by is_exporter_thread()


def is_exporter_thread() -> bool:
    """True on AgentTrace's export threads and while an AgentTrace exporter sends on any thread.

    The replay sandbox uses it to exempt the exporter's own traffic from leak detection.
    """
    return bool(getattr(threading.current_thread(), "_agenttrace_exporter", False) or getattr(_marker, "depth", 0))


# OpenTelemetry's suppress-instrumentation key has no public name in opentelemetry-api (its
# instrumentations read this private one; a public helper exists only in
# opentelemetry-instrumentation, slow to import). Checked here, at import: without it, only
# AgentTrace's own key marks export traffic, which AgentTrace's instrumentors still skip.
OTEL_SUPPRESS_KEY: str | None = getattr(otel_context, "_SUPPRESS_INSTRUMENTATION_KEY", None)


def suppress_instrumentation() -> Token[otel_context.Context]:
    """Mark the current context as export traffic (AgentTrace's key and OpenTelemetry's); the token to detach it."""
    context = otel_context.set_value(EXPORT_TRAFFIC_KEY, True)
    if OTEL_SUPPRESS_KEY is not None:
        context = otel_context.set_value(OTEL_SUPPRESS_KEY, True, context)
    return otel_context.attach(context)
