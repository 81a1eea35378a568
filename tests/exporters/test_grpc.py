"""OTLP over gRPC (OpenTelemetry Python's default protocol): undelivered batches are spooled and re-sent."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from concurrent import futures

import grpc  # type: ignore[import-untyped]
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from .conftest import AGENT, Agents, wait_until


class GrpcReceiver(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    """A real OTLP/gRPC trace receiver on 127.0.0.1 that keeps the span ids it accepted."""

    def __init__(self) -> None:
        self.span_ids: set[str] = set()
        self.lock = threading.Lock()

    def Export(self, request: trace_service_pb2.ExportTraceServiceRequest, context: object) -> object:
        with self.lock:
            for resource_spans in request.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    self.span_ids.update(span.span_id.hex() for span in scope_spans.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def port() -> int:
    """A 127.0.0.1 port with nothing listening yet."""
    return _free_port()


@pytest.fixture
def start_receiver(port: int) -> Iterator[object]:
    """Call to start the gRPC receiver on ``port``; stopped after the test."""
    servers: list[grpc.Server] = []
    receiver = GrpcReceiver()

    def start() -> GrpcReceiver:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        servers.append(server)
        return receiver

    yield start
    for server in servers:
        server.stop(None)


def grpc_env(port: int) -> dict[str, str]:
    """OTLP over gRPC to 127.0.0.1:``port``, by the standard variables."""
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
    }


def test_grpc_batches_spooled_then_uploaded(agents: Agents, port: int, start_receiver: object) -> None:
    """With the gRPC collector down the spans are spooled; `agenttrace upload` later delivers every one.

    ``AGENTTRACE_EXIT_UPLOAD=wait``: the agent's own lane tries the collector at exit, and fails.
    """
    env = {**grpc_env(port), "AGENTTRACE_EXIT_UPLOAD": "wait"}
    done = agents(AGENT, env, args=("3",), timeout=90)
    assert done.returncode == 0, done.stderr
    assert any("otlp_grpc" in str(p) for p in done.spool_files())
    assert "sent on the next run or by `agenttrace upload`" in done.stderr

    receiver = start_receiver()  # type: ignore[operator]
    uploaded = agents.upload(env)
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    assert receiver.span_ids == done.local_span_ids()
    assert len(receiver.span_ids) == 4
    assert not done.spool_files()


def test_grpc_handed_off_at_exit_is_sent_by_the_background_uploader(
    agents: Agents, port: int, start_receiver: object
) -> None:
    """Handed off at exit, the OTLP/gRPC spool folder is sent by the uploader through a gRPC exporter of its own."""
    receiver = start_receiver()  # type: ignore[operator]
    done = agents(AGENT, grpc_env(port), args=("3",), timeout=90)
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr
    assert len(done.local_span_ids()) == 4
    assert wait_until(lambda: receiver.span_ids == done.local_span_ids(), timeout=60)
    done.wait_for_uploader()
    assert not done.spool_files()
