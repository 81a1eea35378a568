"""OTLP over gRPC, the ``grpc`` extra: OpenTelemetry's gRPC span exporter, imported only when asked for.

AgentTrace itself sends OTLP/HTTP (:mod:`agenttrace.exporters.otlp_http`), so grpcio is not
installed with it. ``OTEL_TRACES_EXPORTER=otlp`` with ``OTEL_EXPORTER_OTLP_PROTOCOL=grpc`` (or no
protocol: gRPC is OpenTelemetry Python's default) and ``otlp_proto_grpc`` need
``pip install 'agenttrace[grpc]'``; without it, export set-up says so and the agent runs on.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["GRPC_INSTALL_HINT", "grpc_span_exporter"]

GRPC_INSTALL_HINT = "pip install 'agenttrace[grpc]'"
_MODULE = "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"


def grpc_span_exporter() -> Any:
    """OpenTelemetry's OTLP/gRPC span exporter, configured by the ``OTEL_EXPORTER_OTLP_*`` variables.

    Raises ModuleNotFoundError with the install hint when the ``grpc`` extra is not installed.
    """
    try:
        module = importlib.import_module(_MODULE)
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "opentelemetry-exporter-otlp-proto-grpc is not installed, so AgentTrace cannot export over "
            f"OTLP/gRPC (OTEL_EXPORTER_OTLP_PROTOCOL=grpc, OpenTelemetry Python's default for "
            f"OTEL_TRACES_EXPORTER=otlp); install it with: {GRPC_INSTALL_HINT}, or set "
            "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
            name=_MODULE,
        ) from exc
    return module.OTLPSpanExporter()
