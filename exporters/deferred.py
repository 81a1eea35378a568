"""The backend lane's exporter before it is built, and what is known of the backend without building it.

Nothing heavy is imported here (see :class:`DeferredExporter`): the backend's spool folder, how
messages name it and the background uploader's variables are defined here, for
:mod:`agenttrace.exporters.setup`, which decides the lanes in ``init()``, and for the backend
exporter itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

if TYPE_CHECKING:
    from agenttrace.exporters.spool import Delivery, Spool

__all__ = ["BACKEND_TARGET", "DeferredExporter", "backend_destination", "backend_uploader_env"]

BACKEND_TARGET = "agenttrace"  # the backend's spool folder (AgentTraceSpanExporter.target)


def backend_destination(api_url: str) -> str:
    """How messages name the AgentTrace backend at ``api_url``."""
    return f"the AgentTrace backend at {api_url}/v1/traces"


def backend_uploader_env(api_key: str, api_url: str, timeout: float) -> dict[str, str]:
    """The variables with which the background uploader sends to that backend (never a command line)."""
    return {
        "AGENTTRACE_API_KEY": api_key,
        "AGENTTRACE_API_URL": api_url,
        "AGENTTRACE_EXPORT_TIMEOUT": repr(float(timeout)),
    }


class DeferredExporter(SpanExporter):
    """Stands for the backend exporter until its lane first needs it.

    Building ``AgentTraceSpanExporter`` imports OpenTelemetry's OTLP/HTTP exporter, protobuf and
    ``requests``: about 0.15 s, which a short agent would pay in ``init()`` only to hand its spans
    to the background uploader at exit. The lane builds it on its own thread when it first sends;
    what exit needs (the spool, the destination's name, the uploader's variables) is known
    without it.
    """

    def __init__(
        self,
        build: Callable[[], SpanExporter],
        *,
        target: str,
        spool: Spool,
        destination: str,
        uploader_env: dict[str, str] | None,
        probe_endpoint: str | None = None,
    ) -> None:
        self._build = build
        self.probe_endpoint = probe_endpoint  # where exit may try a connect (agenttrace.exporters.probe)
        self._real: SpanExporter | None = None
        self._real_lock = threading.Lock()
        self.target = target
        self.spool = spool
        self.destination = destination
        self._uploader_env = uploader_env

    def real(self) -> SpanExporter:
        """The exporter, built on first use."""
        with self._real_lock:
            if self._real is None:
                self._real = self._build()
            return self._real

    def __getattr__(self, name: str) -> Any:
        # deliver, deliver_serialized, keep, keep_outcome, ...: the real exporter's.
        if name.startswith("__") or name in ("_build", "_real", "_real_lock", "probe_endpoint"):
            raise AttributeError(name)
        return getattr(self.real(), name)

    def uploader_env(self) -> dict[str, str] | None:
        """The background uploader's variables for this destination."""
        return None if self._uploader_env is None else dict(self._uploader_env)

    def deliver_serialized(self, data: bytes) -> Delivery:
        """Send one spool file through the real exporter (defined here: asking whether it exists builds nothing)."""
        deliver: Callable[[bytes], Delivery] = self.real().deliver_serialized  # type: ignore[attr-defined]
        return deliver(data)

    def clone(self) -> DeferredExporter:
        """Another stand-in with the same settings, for a forked child (nothing built, nothing shared)."""
        return DeferredExporter(
            self._build,
            target=self.target,
            spool=self.spool,
            destination=self.destination,
            uploader_env=self._uploader_env,
            probe_endpoint=self.probe_endpoint,
        )

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Send through the real exporter."""
        return self.real().export(spans)

    def shutdown(self) -> None:
        """Shut the real exporter down, if it was ever built."""
        with self._real_lock:
            real = self._real
        if real is not None:
            real.shutdown()
