"""Our OTLP JSON encoding equals what opentelemetry-proto's encoder produces, field for field."""

from __future__ import annotations

import json
import math

import pytest
from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from agenttrace._format.otlp_json import attributes_text, decode_attributes, traces_data_line, value_text
from tests.recording import hex_ids_to_base64


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
    ours = json_format.ParseDict(hex_ids_to_base64(json.loads(traces_data_line(finished))), TracesData())
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
    """decode_attributes inverts attributes_text for every attribute type AgentTrace writes."""
    attributes = {"s": "x", "i": -3, "f": 0.25, "b": False, "arr": ["a"], "ints": [1, 2], "big": 2**62}
    assert decode_attributes(json.loads(attributes_text(attributes))) == attributes


def test_text_encoding_of_awkward_values_matches_the_protobuf_encoder(spans: InMemorySpanExporter) -> None:
    """The trace writer's JSON text handles what plain json.dumps would get wrong or slow.

    Non-ASCII, quotes and control characters in strings, non-finite floats (the proto3 JSON
    mapping's "NaN"/"Infinity" strings, not bare NaN tokens that no JSON parser but Python's
    accepts), bool lists, floats, trace state, a remote parent, and AgentTrace's own payload
    events (added behind a read-only view, see agenttrace._capture.record.add_event).
    """
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState, set_span_in_context

    from agenttrace._capture.record import add_event

    remote = SpanContext(
        trace_id=0x1234,
        span_id=0x5678,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "v1")]),
    )
    tracer = trace.get_tracer("encoding-test-2", "0.1", attributes={"scope.attr": "v"})
    with tracer.start_as_current_span(
        'awkward "span"\n',
        context=set_span_in_context(NonRecordingSpan(remote)),
        attributes={
            "unicode": "héllo ✓ 日本",
            "quotes": 'say "hi"\\ \t\x00',
            "nan": float("nan"),
            "inf": float("inf"),
            "ninf": float("-inf"),
            "floats": [0.1, 1e300, -2.5],
            "bools": [True, False],
            "big": 2**62,
            # Long strings are quoted by orjson rather than json (agenttrace._format.otlp_json._LONG).
            "long_unicode": "héllo ✓ 日本 \U0001f600 \u2028" * 10,
            "long_quotes": 'say "hi"\\ \t\x00\x1f</script>' * 10,
        },
    ) as span:
        add_event(span, "agenttrace.request", {"body": '{"a": "ü\\n"}', "sizes": (1, 2, 3), "ok": True})
    finished = spans.get_finished_spans()
    line = traces_data_line(finished)
    json.loads(line, parse_constant=lambda name: pytest.fail(f"bare {name} in the JSON text"))
    ours = json_format.ParseDict(hex_ids_to_base64(json.loads(line)), TracesData())
    theirs = encode_spans(finished)
    assert ours.resource_spans[0].scope_spans[0].spans[0] == theirs.resource_spans[0].scope_spans[0].spans[0]
    assert ours.resource_spans[0].scope_spans[0].scope == theirs.resource_spans[0].scope_spans[0].scope
    assert ours.resource_spans[0].scope_spans[0].scope.attributes[0].key == "scope.attr"
    attrs = decode_attributes(json.loads(line)["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"])
    assert math.isnan(attrs["nan"])
    assert attrs["inf"] == math.inf
    assert attrs["ninf"] == -math.inf
    assert attrs["unicode"] == "héllo ✓ 日本"
    assert attrs["quotes"] == 'say "hi"\\ \t\x00'
    assert attrs["long_unicode"] == "héllo ✓ 日本 \U0001f600 \u2028" * 10
    assert attrs["long_quotes"] == 'say "hi"\\ \t\x00\x1f</script>' * 10


@pytest.mark.parametrize("text", ["\ud800" + "x" * 60, "x" * 60 + "\udfff", "\ud83d" * 50])
def test_long_string_with_a_lone_surrogate_is_quoted_the_json_way(text: str) -> None:
    """orjson refuses lone surrogates; such a string is quoted the json way (the trace file then
    writes the surrogate as its backslash escape, which reads back as the same string)."""
    encoded = value_text(text)
    assert json.loads(encoded) == {"stringValue": text}
    assert json.loads(encoded.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")) == {
        "stringValue": text
    }
