"""The OpenTelemetry ``BaseInstrumentor`` for socket: ``instrument()`` installs the patch in ``adapter``."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from agenttrace.instrumentors.socket.adapter import socket_adapter
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from agenttrace._capture.record import configure_first_with
from agenttrace._core.lifecycle import current_settings

__all__ = ["SocketInstrumentor"]


class SocketInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """OTel instrumentor recording raw socket connects and DNS lookups outside instrumented clients."""

    def instrumentation_dependencies(self) -> Collection[str]:
        """None: ``socket`` is in the standard library."""
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        configure_first_with(current_settings)
        socket_adapter().install()

    def _uninstrument(self, **kwargs: Any) -> None:
        socket_adapter().uninstall()
