"""OTLP JSON encoding of finished spans, as the OpenTelemetry file exporter specification asks.

Why not ``google.protobuf.json_format`` over the OTLP protobuf encoder: OTLP JSON differs from
the proto3 JSON mapping (trace and span ids are hex, not base64), and going through protobuf
costs several times more per span on the agent's thread. The mapping is small and stable;
``tests/test_otlp_json.py`` checks it against ``opentelemetry-proto``'s ``TracesData`` parser.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext

__all__ = ["encode_attributes", "encode_span", "encode_value", "traces_data_line"]


def encode_value(value: Any) -> dict[str, Any]:
    """One ``AnyValue``."""
    # Exact-type checks first: attribute values are almost always these, and the isinstance
    # checks against the Mapping/Sequence ABCs below are slow.
    kind = type(value)
    if kind is str:
        return {"stringValue": value}
    if kind is int:
        return {"intValue": str(value)}
    if kind is tuple or kind is list:
        return {"arrayValue": {"values": [encode_value(v) for v in value]}}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, (bytes, bytearray)):
        return {"bytesValue": base64.b64encode(value).decode("ascii")}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": encode_attributes(value)}}
    if isinstance(value, Sequence):
        return {"arrayValue": {"values": [encode_value(v) for v in value]}}
    return {"stringValue": str(value)}


def encode_attributes(attributes: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """A list of ``KeyValue``."""
    if not attributes:
        return []
    return [{"key": k, "value": encode_value(v)} for k, v in attributes.items()]


def _hex(number: int, width: int) -> str:
    return format(number, f"0{width}x")


def _flags(context: SpanContext | None) -> int:
    # SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK, plus IS_REMOTE when the other end is remote.
    return 0x100 | (0x200 if context is not None and context.is_remote else 0)


def encode_span(span: ReadableSpan) -> dict[str, Any]:
    """One OTLP JSON ``Span``."""
    ctx = span.context
    assert ctx is not None
    out: dict[str, Any] = {
        "traceId": _hex(ctx.trace_id, 32),
        "spanId": _hex(ctx.span_id, 16),
        "name": span.name,
        "kind": span.kind.value + 1,  # OTLP numbers SPAN_KIND_INTERNAL as 1
        "startTimeUnixNano": str(span.start_time or 0),
        "endTimeUnixNano": str(span.end_time or 0),
        "attributes": encode_attributes(span.attributes),
        "flags": _flags(span.parent),
    }
    if ctx.trace_state:
        out["traceState"] = ctx.trace_state.to_header()
    if span.parent is not None:
        out["parentSpanId"] = _hex(span.parent.span_id, 16)
    if span.events:
        out["events"] = [
            {"timeUnixNano": str(e.timestamp), "name": e.name, "attributes": encode_attributes(e.attributes)}
            for e in span.events
        ]
    if span.links:
        out["links"] = [
            {
                "traceId": _hex(link.context.trace_id, 32),
                "spanId": _hex(link.context.span_id, 16),
                "attributes": encode_attributes(link.attributes),
                "flags": _flags(link.context),
            }
            for link in span.links
        ]
    status: dict[str, Any] = {"code": span.status.status_code.value}
    if span.status.description:
        status["message"] = span.status.description
    out["status"] = status
    for name, dropped in (
        ("droppedAttributesCount", span.dropped_attributes),
        ("droppedEventsCount", span.dropped_events),
        ("droppedLinksCount", span.dropped_links),
    ):
        if dropped:
            out[name] = dropped
    return out


def traces_data_line(spans: Iterable[ReadableSpan]) -> str:
    """One JSON Lines record: a ``TracesData`` holding ``spans`` grouped by resource and scope."""
    groups: dict[tuple[int, str, str], tuple[Any, Any, list[dict[str, Any]]]] = {}
    for span in spans:
        scope = span.instrumentation_scope
        key = (id(span.resource), scope.name if scope else "", (scope.version or "") if scope else "")
        if key not in groups:
            groups[key] = (span.resource, scope, [])
        groups[key][2].append(encode_span(span))
    return _line(groups.values())


def _line(groups: Iterable[tuple[Any, Any, list[dict[str, Any]]]]) -> str:
    resource_spans: list[dict[str, Any]] = []
    by_resource: dict[int, dict[str, Any]] = {}
    for resource, scope, encoded in groups:
        entry = by_resource.get(id(resource))
        if entry is None:
            entry = {"resource": {"attributes": encode_attributes(resource.attributes)}, "scopeSpans": []}
            if resource.schema_url:
                entry["schemaUrl"] = resource.schema_url
            by_resource[id(resource)] = entry
            resource_spans.append(entry)
        scope_json: dict[str, Any] = {}
        if scope is not None:
            scope_json = {"name": scope.name}
            if scope.version:
                scope_json["version"] = scope.version
        scope_spans: dict[str, Any] = {"scope": scope_json, "spans": encoded}
        if scope is not None and scope.schema_url:
            scope_spans["schemaUrl"] = scope.schema_url
        entry["scopeSpans"].append(scope_spans)
    return json.dumps({"resourceSpans": resource_spans}, ensure_ascii=False, separators=(",", ":"))


def group_encoded(items: Sequence[tuple[Any, Any, dict[str, Any]]]) -> str:
    """A ``TracesData`` line from spans already encoded, with their resource and scope."""
    groups: dict[tuple[int, int], tuple[Any, Any, list[dict[str, Any]]]] = {}
    for resource, scope, encoded in items:
        key = (id(resource), id(scope))
        if key not in groups:
            groups[key] = (resource, scope, [])
        groups[key][2].append(encoded)
    return _line(groups.values())


def decode_value(value: Mapping[str, Any]) -> Any:
    """Python value of one OTLP JSON ``AnyValue`` (the inverse of :func:`encode_value`)."""
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        return [decode_value(v) for v in value["arrayValue"].get("values", ())]
    if "kvlistValue" in value:
        return decode_attributes(value["kvlistValue"].get("values", ()))
    if "bytesValue" in value:
        return base64.b64decode(value["bytesValue"])
    return None


def decode_attributes(attributes: Iterable[Mapping[str, Any]] | None) -> dict[str, Any]:
    """``{key: value}`` of an OTLP JSON ``KeyValue`` list."""
    return {kv["key"]: decode_value(kv.get("value", {})) for kv in attributes or ()}
