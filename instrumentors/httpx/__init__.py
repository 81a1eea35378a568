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

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agenttrace.instrumentors.httpx.instrumentor import HttpxFamilyInstrumentor, HttpxInstrumentor

__all__ = ["HttpxFamilyInstrumentor", "HttpxInstrumentor"]


def __getattr__(name: str) -> Any:
    # The instrumentor derives from BaseInstrumentor, whose import (opentelemetry.instrumentation)
    # costs tens of milliseconds; ``@run`` imports only the adapter beside it, so the class is
    # loaded on first use (PEP 562).
    if name in __all__:
        from agenttrace.instrumentors.httpx import instrumentor

        return getattr(instrumentor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
