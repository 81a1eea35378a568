"""Record every urllib3 exchange (and so every ``requests`` and botocore call) with its full payload.

Usage::

    from agenttrace.instrumentors.urllib3 import Urllib3Instrumentor

    Urllib3Instrumentor().instrument()     # every PoolManager / requests.Session is now recorded
    Urllib3Instrumentor().uninstrument()

The patch sits on ``HTTPConnectionPool._make_request``: one HTTP exchange on one connection,
below urllib3's retries and redirects (each attempt is its own call span, as each is its own
exchange) and below OpenTelemetry's own urllib3/requests instrumentations. Install the
library with ``pip install 'agenttrace[requests]'``. See docs/instrumentors.md.

Response bodies are teed where urllib3 reads raw (still content-encoded) bytes: with
``preload_content=False`` each ``stream()`` chunk reaches the caller the moment it arrives.
The patch itself is ``agenttrace._urllib3_adapter``, which ``@run`` installs directly.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from agenttrace._urllib3_adapter import urllib3_adapter

__all__ = ["Urllib3Instrumentor"]


class Urllib3Instrumentor(BaseInstrumentor):  # type: ignore[misc]
    """OTel instrumentor recording full urllib3 payloads (covers requests and botocore)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        """The instrumented distribution and its supported versions."""
        return ("urllib3 >= 2.0",)

    def _instrument(self, **kwargs: Any) -> None:
        urllib3_adapter().install()

    def _uninstrument(self, **kwargs: Any) -> None:
        urllib3_adapter().uninstall()
