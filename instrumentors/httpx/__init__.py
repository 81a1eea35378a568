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

from typing import TYPE_CHECKING

from agenttrace._capture.adapters import lazy_instrumentors

if TYPE_CHECKING:
    from agenttrace.instrumentors.httpx.instrumentor import HttpxFamilyInstrumentor, HttpxInstrumentor

__all__ = ["HttpxFamilyInstrumentor", "HttpxInstrumentor"]

__getattr__ = lazy_instrumentors(__name__, __all__)
