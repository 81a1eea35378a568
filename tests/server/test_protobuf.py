"""The protobuf ingest path stores the very lines protobuf's own JSON mapping gave (``MessageToDict``
with hex ids and integer enums), on every field OTLP defines, and refuses what it refused."""

from __future__ import annotations

import base64
import dataclasses
import json
import math
from typing import Any

import pytest
from google.protobuf import json_format  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from agenttrace._server.ingest import BadRequestError, _rows, decode_request
from agenttrace._server.protobuf import Budget, message_object
from agenttrace._server.store.records import SpanRow

PROTOBUF = "application/x-protobuf"


def _json_mapping(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """MessageToDict with OTLP JSON's integer enums, and the ids of spans and links turned to hex."""
    document: dict[str, Any] = json_format.MessageToDict(request, use_integers_for_enums=True)
    for resource_spans in document.get("resourceSpans", ()):
        for scope_spans in resource_spans.get("scopeSpans", ()):
            for span in scope_spans.get("spans", ()):
                for item in (span, *span.get("links", ())):
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if item.get(key):
                            item[key] = base64.b64decode(item[key]).hex()
    return document


def _reference_rows(body: bytes) -> list[SpanRow]:
    """What the server stored before: the JSON mapping, then the JSON path's rows."""
    return list(_rows(_json_mapping(ExportTraceServiceRequest.FromString(body))))


def _values() -> list[KeyValue]:
    """An attribute of every kind AnyValue has, with the edge values of each."""
    values: list[Any] = [
        AnyValue(string_value=""),
        AnyValue(string_value='text \u2603 \x00 "quoted"'),
        AnyValue(bool_value=False),
        AnyValue(bool_value=True),
        AnyValue(int_value=0),
        AnyValue(int_value=-(2**63)),
        AnyValue(int_value=2**63 - 1),
        AnyValue(double_value=0.0),
        AnyValue(double_value=-0.1),
        AnyValue(double_value=1e20),
        AnyValue(double_value=math.inf),
        AnyValue(double_value=-math.inf),
        AnyValue(double_value=math.nan),
        AnyValue(bytes_value=b""),
        AnyValue(bytes_value=bytes(range(256))),
        AnyValue(array_value=ArrayValue()),
        AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1), AnyValue(array_value=ArrayValue())])),
        AnyValue(kvlist_value=KeyValueList()),
        AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="inner", value=AnyValue(bool_value=True))])),
        AnyValue(string_value_strindex=7),
        AnyValue(),
    ]
    attributes = [KeyValue(key=f"k{i}", value=value) for i, value in enumerate(values)]
    attributes += [KeyValue(key="no-value"), KeyValue(key="indexed", key_strindex=-3)]
    return attributes


def _every_field() -> bytes:
    request = ExportTraceServiceRequest()
    first = request.resource_spans.add(schema_url="https://schema/r")
    first.resource.attributes.add(key="service.name", value=AnyValue(string_value="svc"))
    first.resource.dropped_attributes_count = 2
    scope_spans = first.scope_spans.add(schema_url="https://schema/s")
    scope_spans.scope.name, scope_spans.scope.version = "agenttrace", "1"
    scope_spans.scope.attributes.add(key="scope.attr", value=AnyValue(int_value=5))
    span = scope_spans.spans.add(
        trace_id=bytes(range(1, 17)),
        span_id=bytes(range(1, 9)),
        trace_state="a=b",
        parent_span_id=bytes(range(9, 17)),
        flags=0x301,
        name="every field",
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=2**63 - 2,
        end_time_unix_nano=2**63 - 1,
        attributes=_values(),
        dropped_attributes_count=1,
        dropped_events_count=2,
        dropped_links_count=3,
        status=Status(code=Status.STATUS_CODE_ERROR, message="failed"),
    )
    event = span.events.add(time_unix_nano=5, name="agenttrace.request", dropped_attributes_count=4)
    event.attributes.extend(_values())
    span.events.add()  # an empty event
    link = span.links.add(trace_id=b"\xab" * 16, span_id=b"\xcd" * 8, trace_state="x=y", flags=1)
    link.attributes.add(key="link.attr", value=AnyValue(double_value=2.5))
    link.dropped_attributes_count = 9
    # A span with nothing but its ids, a status set to its defaults, under a scope and a resource
    # that are absent, and a resource that is present but empty.
    bare = request.resource_spans.add().scope_spans.add().spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
    bare.status.SetInParent()
    request.resource_spans.add().resource.SetInParent()
    return bytes(request.SerializeToString())


def test_every_field_converts_as_protobufs_json_mapping_does() -> None:
    """message_object gives MessageToDict's object, key for key and in the same order, hex ids aside."""
    request = ExportTraceServiceRequest.FromString(_every_field())
    expected = _json_mapping(request)
    got = message_object(request, Budget(10**6))
    assert json.dumps(got) == json.dumps(expected)
    assert got["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] == bytes(range(1, 17)).hex()


def test_stored_lines_are_those_of_the_json_mapping() -> None:
    """decode_request's rows keep the spans as protobuf; their columns, and the lines made from them when
    read, are byte for byte what the MessageToDict path stored."""
    body = _every_field()
    rows = decode_request(body, PROTOBUF)
    assert len(rows) == 2
    assert all(row.proto and not row.line for row in rows)
    reference = _reference_rows(body)
    assert [dataclasses.replace(row, line=row.text, proto=None) for row in rows] == reference
    assert [row.text for row in rows] == [row.line for row in reference]
    assert '"doubleValue":"NaN"' in rows[0].text
    assert '"intValue":"-9223372036854775808"' in rows[0].text


@pytest.mark.parametrize("where", ["span", "event", "nested"])
def test_an_attribute_without_a_key_is_refused_as_before(where: str) -> None:
    """An empty key (absent in OTLP JSON) is refused with the message the JSON path gives."""
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
    keyless = KeyValue(value=AnyValue(int_value=1))
    if where == "span":
        span.attributes.append(keyless)
    elif where == "event":
        span.events.add(name="e").attributes.append(keyless)
    else:
        span.events.add(name="e").attributes.add(key="k", value=AnyValue(kvlist_value=KeyValueList(values=[keyless])))
    body = request.SerializeToString()
    with pytest.raises(BadRequestError) as new:
        decode_request(body, PROTOBUF)
    with pytest.raises(BadRequestError) as old:
        _reference_rows(body)
    assert str(new.value) == str(old.value)
    assert "KeyError" in str(new.value)


def test_the_columns_of_protobuf_spans_are_those_of_their_json_form() -> None:
    """The listing's columns (run name and mode, model, tokens) read from the protobuf as from its JSON form,
    whatever the attributes' types, and the last of a key given twice wins, as in the JSON path."""
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans

    def add(number: int, attributes: list[KeyValue], status: int = 0) -> None:
        spans.add(
            trace_id=b"\x01" * 16,
            span_id=number.to_bytes(8, "big"),
            name=f"span {number}",
            attributes=attributes,
            status=Status(code=status),  # type: ignore[arg-type]
        )

    def text(key: str, value: str) -> KeyValue:
        return KeyValue(key=key, value=AnyValue(string_value=value))

    def number(key: str, value: int) -> KeyValue:
        return KeyValue(key=key, value=AnyValue(int_value=value))

    add(1, [text("agenttrace.kind", "run"), number("agenttrace.run.name", 7), text("agenttrace.run.mode", "replay")])
    add(2, [text("agenttrace.kind", "run")])  # a run without a name: named by the span
    add(
        3,
        [
            text("agenttrace.kind", "call"),
            text("gen_ai.operation.name", "chat"),
            text("gen_ai.request.model", "gpt-4o"),
            text("gen_ai.response.model", "gpt-4o-2024"),
            number("gen_ai.usage.input_tokens", 10),
            number("gen_ai.usage.input_tokens", 12),
            text("gen_ai.usage.output_tokens", "5"),  # not an integer: counted as 0
            number("gen_ai.usage.cache_read.input_tokens", 2),
        ],
        status=2,
    )
    add(4, [KeyValue(key="agenttrace.kind", value=AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1)])))])
    body = request.SerializeToString()
    rows = decode_request(body, PROTOBUF)
    assert [dataclasses.replace(row, line=row.text, proto=None) for row in rows] == _reference_rows(body)
    assert (rows[0].run_name, rows[0].run_mode, rows[1].run_name) == ("7", "replay", "span 2")
    call = rows[2]
    assert (call.model, call.input_tokens, call.output_tokens, call.status_code) == ("gpt-4o-2024", 12, 0, 2)


def test_the_value_budget_counts_what_the_conversion_would() -> None:
    """The limit on values a request holds counts attributes, events, links and nested values at every
    depth, as converting the request to JSON counts them (which the server now does when spans are read)."""
    request = ExportTraceServiceRequest.FromString(_every_field())
    converted = Budget(10**6)
    for resource_spans in request.resource_spans:  # what the conversion of each resource, scope and span spends
        message_object(resource_spans.resource, converted)
        for scope_spans in resource_spans.scope_spans:
            message_object(scope_spans.scope, converted)
            for span in scope_spans.spans:
                message_object(span, converted)
    spent = 10**6 - converted.left
    body = request.SerializeToString()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("agenttrace._server.ingest.MAX_VALUES_PER_REQUEST", spent)
        assert len(decode_request(body, PROTOBUF)) == 2
        patch.setattr("agenttrace._server.ingest.MAX_VALUES_PER_REQUEST", spent - 1)
        with pytest.raises(BadRequestError) as refused:
            decode_request(body, PROTOBUF)
    assert refused.value.status == 413
