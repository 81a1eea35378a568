"""The OpenTelemetry ``BaseInstrumentor`` for aiohttp: ``instrument()`` installs the patch in ``adapter``."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from agenttrace.instrumentors.aiohttp.adapter import aiohttp_adapter
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from agenttrace._capture.record import configure_first_with
from agenttrace._core.lifecycle import current_settings

__all__ = ["AiohttpInstrumentor"]


class AiohttpInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """OTel instrumentor recording full aiohttp client payloads (requires ``aiohttp``)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        """The instrumented distribution and its supported versions."""
        return ("aiohttp >= 3.9",)

    def _instrument(self, **kwargs: Any) -> None:
        configure_first_with(current_settings)
        aiohttp_adapter().install()

    def _uninstrument(self, **kwargs: Any) -> None:
        aiohttp_adapter().uninstall()
