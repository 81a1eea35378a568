"""The OpenTelemetry ``BaseInstrumentor`` for httpx: ``instrument()`` installs the patch in ``adapter``."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from agenttrace.instrumentors.httpx.adapter import adapter_for
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from agenttrace._capture.record import configure_first_with
from agenttrace._core.lifecycle import current_settings

__all__ = ["HttpxFamilyInstrumentor", "HttpxInstrumentor"]


class HttpxFamilyInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Base of the httpx and httpx2 instrumentors; subclasses only name their module.

    The patch itself is the library's adapter in ``agenttrace.instrumentors.httpx.adapter``, which ``@run``
    installs directly (without importing ``opentelemetry.instrumentation``, see agenttrace._capture.activation).
    """

    module_name = "httpx"
    library = "httpx"
    requirement = "httpx >= 0.23"
    extra: str | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        """The instrumented distribution and its supported versions."""
        return (self.requirement,)

    def _instrument(self, **kwargs: Any) -> None:
        configure_first_with(current_settings)
        adapter_for(self.module_name, self.library, self.extra).install()

    def _uninstrument(self, **kwargs: Any) -> None:
        adapter_for(self.module_name, self.library, self.extra).uninstall()


class HttpxInstrumentor(HttpxFamilyInstrumentor):
    """OTel instrumentor recording full httpx payloads (requires ``httpx``)."""
