"""The OpenTelemetry ``BaseInstrumentor`` for urllib3: ``instrument()`` installs the patch in ``adapter``."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from agenttrace.instrumentors.urllib3.adapter import urllib3_adapter
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from agenttrace._capture.record import configure_first_with
from agenttrace._core.lifecycle import current_settings

__all__ = ["Urllib3Instrumentor"]


class Urllib3Instrumentor(BaseInstrumentor):  # type: ignore[misc]
    """OTel instrumentor recording full urllib3 payloads (covers requests and botocore)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        """The instrumented distribution and its supported versions."""
        return ("urllib3 >= 2.0",)

    def _instrument(self, **kwargs: Any) -> None:
        configure_first_with(current_settings)
        urllib3_adapter().install()

    def _uninstrument(self, **kwargs: Any) -> None:
        urllib3_adapter().uninstall()
