"""The OTLP/HTTP sender on OpenTelemetry's public parts, and OTLP/gRPC as an extra with an install hint.

The version matrix (.ci/oldest) runs these on the oldest supported OpenTelemetry release too:
nothing here depends on the insides of OpenTelemetry's own exporter.
"""

from __future__ import annotations

import sys

import pytest
from agenttrace.exporters.backend import SpoolingOTLPSpanExporter
from agenttrace.exporters.grpc import GRPC_INSTALL_HINT, grpc_span_exporter
from agenttrace.exporters.otlp_http import DEFAULT_ENDPOINT, OTLPHTTPSender
from agenttrace.exporters.setup import exporter_names
from agenttrace.exporters.spool import Spool
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider

from .conftest import AGENT, Agents, Answer, Receiver, otlp_env, wait_until

_OTLP_VARS = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_TRACES_EXPORTER",
)


@pytest.fixture(autouse=True)
def clean_otlp_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with none of the OTLP variables set."""
    for name in _OTLP_VARS:
        monkeypatch.delenv(name, raising=False)


def test_settings_come_from_the_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Endpoint (/v1/traces appended to the base, the signal's own as given), headers, timeout, compression."""
    assert OTLPHTTPSender().endpoint == DEFAULT_ENDPOINT
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-team=agents,x-b=2")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "3")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip")
    sender = OTLPHTTPSender()
    assert sender.endpoint == "http://collector:4318/v1/traces"
    assert sender.headers["x-team"] == "agents"
    assert sender.headers["x-b"] == "2"
    assert sender.headers["Content-Encoding"] == "gzip"
    assert sender.timeout == 3.0
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:9999/custom")
    assert OTLPHTTPSender().endpoint == "http://traces:9999/custom"
    assert OTLPHTTPSender(endpoint="http://arg/v1/traces", timeout=1).endpoint == "http://arg/v1/traces"


def test_exporter_sends_gzip_protobuf_and_retries_503(receiver: Receiver, tmp_path: object) -> None:
    """A 503 is retried, the second try delivers; the body is the encoded request, gzipped, with the headers given."""
    answers = iter([Answer(503, {"Retry-After": "0"})])
    receiver.answer = lambda _: next(answers, Answer())
    spool = Spool(tmp_path, "otlp", 1 << 20)  # type: ignore[arg-type]
    exporter = SpoolingOTLPSpanExporter(
        endpoint=receiver.url + "/v1/traces", headers={"x-k": "v"}, compression="gzip", timeout=10, spool=spool
    )
    provider = TracerProvider()
    span = provider.get_tracer("t").start_span("one")
    span.end()
    delivery = exporter.deliver([span])  # type: ignore[list-item]
    assert delivery.ok
    assert [r.status for r in receiver.requests] == [503, 200]
    assert receiver.requests[-1].headers["x-k"] == "v"
    assert receiver.requests[-1].headers["content-type"] == "application/x-protobuf"
    assert receiver.requests[-1].request == encode_spans([span])  # type: ignore[list-item]
    assert receiver.requests[-1].headers["content-encoding"] == "gzip"  # the receiver un-gzipped it
    assert exporter.destination == f"the OTLP endpoint {receiver.url}/v1/traces"
    exporter.shutdown()


def test_otlp_without_protocol_means_grpc_as_in_opentelemetry_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """`otlp` is gRPC unless the protocol variable says http/protobuf; an unknown protocol names what is expected."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp,console")
    assert exporter_names() == ["otlp_proto_grpc", "console"]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    assert exporter_names() == ["otlp_proto_http", "console"]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")
    with pytest.raises(RuntimeError, match=r"'http/json'; expected one of grpc, http/protobuf"):
        exporter_names()


def test_grpc_without_the_extra_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """With opentelemetry-exporter-otlp-proto-grpc missing, asking for gRPC export names `agenttrace[grpc]`."""
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.grpc.trace_exporter", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'agenttrace\[grpc\]'") as raised:
        grpc_span_exporter()
    assert "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf" in str(raised.value)
    assert GRPC_INSTALL_HINT in str(raised.value)


# The gRPC exporter made unimportable, as in an install without the grpc extra.
NO_GRPC = """
    import sys
    sys.modules["opentelemetry.exporter.otlp.proto.grpc.trace_exporter"] = None
"""


def test_an_agent_asking_for_grpc_without_the_extra_warns_once_and_runs(agents: Agents, receiver: Receiver) -> None:
    """OTEL_TRACES_EXPORTER=otlp, no protocol (so gRPC), no grpc extra: one warning with the hint, the agent runs."""
    env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}
    done = agents(NO_GRPC + AGENT, env, args=("2",))
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, done.stderr
    assert "pip install 'agenttrace[grpc]'" in warnings[0]
    assert len(done.local_span_ids()) == 3  # the local trace file is unaffected


def test_http_protobuf_needs_no_grpc(agents: Agents, receiver: Receiver) -> None:
    """OTLP/HTTP export works in a process where the gRPC exporter cannot be imported."""
    done = agents(NO_GRPC + AGENT, otlp_env(receiver.url), args=("2",))
    assert done.returncode == 0, done.stderr
    assert wait_until(lambda: len(receiver.accepted_span_ids()) == 3)
