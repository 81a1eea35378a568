"""The OpenTelemetry ``BaseInstrumentor`` for websockets: ``instrument()`` installs the patch in ``adapter``."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from agenttrace.instrumentors.websockets.adapter import websockets_adapter
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from agenttrace._capture.record import configure_first_with
from agenttrace._core.lifecycle import current_settings

__all__ = ["WebSocketsInstrumentor"]


class WebSocketsInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """OTel instrumentor recording websockets client connections, frame by frame (requires ``websockets >= 13``)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        """The instrumented distribution and its supported versions."""
        return ("websockets >= 13",)

    def _instrument(self, **kwargs: Any) -> None:
        configure_first_with(current_settings)
        websockets_adapter().install()

    def _uninstrument(self, **kwargs: Any) -> None:
        websockets_adapter().uninstall()
