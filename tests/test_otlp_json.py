"""Our OTLP JSON encoding equals what opentelemetry-proto's encoder produces, field for field."""

from __future__ import annotations

import json

from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from agenttrace._otlp_json import decode_attributes, encode_attributes, traces_data_line
from tests.test_trace_files import _hex_ids_to_base64


def test_encoding_matches_the_protobuf_encoder(spans: InMemorySpanExporter) -> None:
    """Kinds, status, every attribute type, events and links encode as the OTLP protobuf does."""
    tracer = trace.get_tracer("encoding-test", "1.2")
    with (
        tracer.start_as_current_span("parent", kind=SpanKind.SERVER) as parent,
        tracer.start_as_current_span(
            "child",
            kind=SpanKind.CLIENT,
            links=[Link(parent.get_span_context(), {"why": "test"})],
            attributes={"s": "text", "i": 7, "f": 1.5, "b": True, "arr": ["a", "b"], "ints": [1, 2]},
        ) as child,
    ):
        child.add_event("evt", {"body": "x" * 10, "n": 3})
        child.set_status(Status(StatusCode.ERROR, "broken"))
    finished = spans.get_finished_spans()
    ours = json_format.ParseDict(_hex_ids_to_base64(json.loads(traces_data_line(finished))), TracesData())
    theirs = encode_spans(finished)

    def spans_of(message: object) -> dict[str, object]:
        out = {}
        for rs in message.resource_spans:  # type: ignore[attr-defined]
            for ss in rs.scope_spans:
                for span in ss.spans:
                    out[span.name] = span
        return out

    ours_by_name, theirs_by_name = spans_of(ours), spans_of(theirs)
    assert set(ours_by_name) == {"parent", "child"}
    for name, span in theirs_by_name.items():
        assert ours_by_name[name] == span, name
    assert ours.resource_spans[0].resource == theirs.resource_spans[0].resource


def test_attribute_roundtrip() -> None:
    """decode_attributes inverts encode_attributes for every attribute type AgentTrace writes."""
    attributes = {"s": "x", "i": -3, "f": 0.25, "b": False, "arr": ["a"], "ints": [1, 2], "big": 2**62}
    assert decode_attributes(json.loads(json.dumps(encode_attributes(attributes)))) == attributes
