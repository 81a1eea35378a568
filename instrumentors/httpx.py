"""Record every httpx call (sync and async) as a CLIENT span with its full payload.

Usage::

    from agenttrace.instrumentors.httpx import HttpxInstrumentor

    HttpxInstrumentor().instrument()    # every httpx.Client / AsyncClient is now recorded
    HttpxInstrumentor().uninstrument()

``@agenttrace.run`` does this for you; ``opentelemetry-instrument`` finds it through the
``agenttrace_httpx`` entry point. The patch sits on ``HTTPTransport.handle_request`` and
``AsyncHTTPTransport.handle_async_request``; see docs/instrumentors.md for what is recorded.
"""

from __future__ import annotations

from agenttrace._httpx_adapter import HttpxFamilyInstrumentor

__all__ = ["HttpxInstrumentor"]


class HttpxInstrumentor(HttpxFamilyInstrumentor):
    """OTel instrumentor recording full httpx payloads (requires ``httpx``)."""

    module_name = "httpx"
    library = "httpx"
    requirement = "httpx >= 0.23"
    extra = None
