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

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from agenttrace._httpx_adapter import adapter_for

__all__ = ["HttpxFamilyInstrumentor", "HttpxInstrumentor"]


class HttpxFamilyInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Base of the httpx and httpx2 instrumentors; subclasses only name their module.

    The patch itself is the library's adapter in ``agenttrace._httpx_adapter``, which ``@run``
    installs directly (without importing ``opentelemetry.instrumentation``, see _interceptors).
    """

    module_name = "httpx"
    library = "httpx"
    requirement = "httpx >= 0.23"
    extra: str | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        """The instrumented distribution and its supported versions."""
        return (self.requirement,)

    def _instrument(self, **kwargs: Any) -> None:
        adapter_for(self.module_name, self.library, self.extra).install()

    def _uninstrument(self, **kwargs: Any) -> None:
        adapter_for(self.module_name, self.library, self.extra).uninstall()


class HttpxInstrumentor(HttpxFamilyInstrumentor):
    """OTel instrumentor recording full httpx payloads (requires ``httpx``)."""
