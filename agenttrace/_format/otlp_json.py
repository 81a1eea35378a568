"""OTLP JSON encoding of finished spans, as the OpenTelemetry file exporter specification asks.

Why not ``google.protobuf.json_format`` over the OTLP protobuf encoder: OTLP JSON differs from
the proto3 JSON mapping (trace and span ids are hex, not base64), and going through protobuf
costs several times more per span on the agent's thread. The mapping is small and stable;
``tests/format/test_otlp_json.py`` checks it against ``opentelemetry-proto``'s ``TracesData`` parser.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext

__all__ = [
    "attributes_text",
    "group_encoded",
    "group_parts",
    "span_text",
    "traces_data_line",
    "value_text",
]


def _non_finite(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _hex(number: int, width: int) -> str:
    return format(number, f"0{width}x")


def _flags(context: SpanContext | None) -> int:
    # SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK, plus IS_REMOTE when the other end is remote.
    return 0x100 | (0x200 if context is not None and context.is_remote else 0)


# --- JSON text, written directly ------------------------------------------------------------
#
# The trace writer encodes every span straight to JSON text: building the nested dicts first
# and serialising them with json.dumps cost about four times as much, and a pending batch of
# dicts kept the garbage collector busy (strings are not tracked by it, dicts are).
# tests/format/test_otlp_json.py checks the text against opentelemetry-proto's own encoder.

_quote = json.encoder.encode_basestring  # C-accelerated; keeps non-ASCII as is (UTF-8 files)
_key_prefixes: dict[str, str] = {}

# From this length on a string is quoted by orjson, which escapes a vector at a time where json's
# encoder goes character by character (a call span's bodies and header list are long strings);
# below it, the call and the decode cost more than they save.
_LONG = 48


def _quote_long(value: str) -> str:
    dumps = _dumps[0]
    if dumps is None:
        from agenttrace._format.exactjson import orjson_module

        orjson = orjson_module()
        dumps = _dumps[0] = orjson.dumps if orjson is not None else False
    if dumps:
        try:
            return dumps(value).decode()  # type: ignore[no-any-return]  # bytes.decode: str
        except Exception:  # noqa: BLE001, S110 - a lone surrogate (orjson refuses it): json's way below
            pass
    return _quote(value)


_dumps: list[Any] = [None]  # orjson.dumps once looked up; False without orjson


def _key(key: Any) -> str:
    prefix = _key_prefixes.get(key) if type(key) is str else None
    if prefix is None:
        prefix = '{"key":' + _quote(str(key)) + ',"value":'
        if type(key) is str and len(_key_prefixes) < 4096:
            _key_prefixes[key] = prefix
    return prefix


def value_text(value: Any) -> str:
    """One ``AnyValue`` as JSON text."""
    kind = type(value)
    if kind is str:
        return '{"stringValue":' + (_quote(value) if len(value) < _LONG else _quote_long(value)) + "}"
    if kind is int:
        return '{"intValue":"' + str(value) + '"}'
    if kind is tuple or kind is list:
        return '{"arrayValue":{"values":[' + ",".join([value_text(v) for v in value]) + "]}}"
    if isinstance(value, bool):
        return '{"boolValue":true}' if value else '{"boolValue":false}'
    if isinstance(value, int):
        return '{"intValue":"' + str(int(value)) + '"}'
    if isinstance(value, float):
        if not math.isfinite(value):
            return '{"doubleValue":"' + _non_finite(value) + '"}'
        return '{"doubleValue":' + repr(float(value)) + "}"
    if isinstance(value, str):
        return '{"stringValue":' + _quote(str(value)) + "}"
    if isinstance(value, (bytes, bytearray)):
        return '{"bytesValue":"' + base64.b64encode(value).decode("ascii") + '"}'
    if isinstance(value, Mapping):
        return '{"kvlistValue":{"values":' + attributes_text(value) + "}}"
    if isinstance(value, Sequence):
        return '{"arrayValue":{"values":[' + ",".join([value_text(v) for v in value]) + "]}}"
    return '{"stringValue":' + _quote(str(value)) + "}"


def attributes_text(attributes: Mapping[str, Any] | None) -> str:
    """A list of ``KeyValue`` as JSON text."""
    out: list[str] = []
    _attributes_parts(attributes, out)
    return "".join(out)


def _attributes_parts(attributes: Mapping[str, Any] | None, out: list[str]) -> None:
    # Appends pieces to ``out`` instead of concatenating: a body is a megabyte-long string, and
    # every ``+`` on the way to the line would copy it again.
    if not attributes:
        out.append("[]")
        return
    if type(attributes) is not dict:
        # The SDK hands out read-only views of its BoundedAttributes, whose items() is a
        # Python-level walk (one __getitem__ per key); their copy() is a plain dict in one step.
        copy = getattr(attributes, "copy", None)
        if copy is not None:
            with contextlib.suppress(Exception):
                copied = copy()
                if type(copied) is dict:
                    attributes = copied
    append = out.append
    separator = "["
    for key, value in attributes.items():
        append(separator)
        separator = ","
        append(_key(key))
        kind = type(value)
        if kind is str:
            append('{"stringValue":')
            append(_quote(value) if len(value) < _LONG else _quote_long(value))
            append("}}")
        elif kind is int:
            append('{"intValue":"' + str(value) + '"}}')
        else:
            append(value_text(value))
            append("}")
    append("]")


def span_text(span: ReadableSpan) -> str:
    """One OTLP JSON ``Span`` as compact JSON text."""
    out: list[str] = []
    _span_parts(span, out)
    return "".join(out)


def _span_parts(span: ReadableSpan, out: list[str]) -> None:
    ctx = span.context
    assert ctx is not None
    parent = span.parent
    append = out.append
    append(
        '{"traceId":"'
        + _hex(ctx.trace_id, 32)
        + '","spanId":"'
        + _hex(ctx.span_id, 16)
        + '","name":'
        + _quote(str(span.name))
        + ',"kind":'
        + str(span.kind.value + 1)  # OTLP numbers SPAN_KIND_INTERNAL as 1
        + ',"startTimeUnixNano":"'
        + str(span.start_time or 0)
        + '","endTimeUnixNano":"'
        + str(span.end_time or 0)
        + '","attributes":'
    )
    _attributes_parts(span.attributes, out)
    append(',"flags":' + str(_flags(parent)))
    if ctx.trace_state:
        append(',"traceState":' + _quote(ctx.trace_state.to_header()))
    if parent is not None:
        append(',"parentSpanId":"' + _hex(parent.span_id, 16) + '"')
    events = span.events
    if events:
        separator = ',"events":['
        for event in events:
            append(separator)
            separator = ","
            append('{"timeUnixNano":"' + str(event.timestamp) + '","name":' + _quote(str(event.name)))
            append(',"attributes":')
            _attributes_parts(event.attributes, out)
            append("}")
        append("]")
    links = span.links
    if links:
        separator = ',"links":['
        for link in links:
            append(separator)
            separator = ","
            append(
                '{"traceId":"'
                + _hex(link.context.trace_id, 32)
                + '","spanId":"'
                + _hex(link.context.span_id, 16)
                + '","attributes":'
            )
            _attributes_parts(link.attributes, out)
            append(',"flags":' + str(_flags(link.context)) + "}")
        append("]")
    status = span.status
    append(',"status":{"code":' + str(status.status_code.value))
    if status.description:
        append(',"message":' + _quote(str(status.description)))
    append("}")
    for name, dropped in (
        ("droppedAttributesCount", span.dropped_attributes),
        ("droppedEventsCount", span.dropped_events),
        ("droppedLinksCount", span.dropped_links),
    ):
        if dropped:
            append(',"' + name + '":' + str(int(dropped)))
    append("}")


def traces_data_line(spans: Iterable[ReadableSpan]) -> str:
    """One JSON Lines record: a ``TracesData`` holding ``spans`` grouped by resource and scope."""
    return group_encoded([(span.resource, span.instrumentation_scope, span_text(span)) for span in spans])


def group_encoded(items: Sequence[tuple[Any, Any, str]]) -> str:
    """A ``TracesData`` line from spans already encoded (:func:`span_text`), with their resource and scope."""
    return "".join(group_parts(items))


def group_parts(items: Sequence[tuple[Any, Any, str]]) -> list[str]:
    """:func:`group_encoded` as pieces to write one after the other (no copy of the spans' text)."""
    groups: dict[int, tuple[Any, dict[Any, tuple[Any, list[str]]]]] = {}
    for resource, scope, text in items:
        by_scope = groups.get(id(resource))
        if by_scope is None:
            by_scope = groups[id(resource)] = (resource, {})
        key: Any = scope  # the SDK's InstrumentationScope: equal name, version, schema URL and attributes
        try:
            hash(key)
        except TypeError:
            key = id(scope)
        entry = by_scope[1].get(key)
        if entry is None:
            entry = by_scope[1][key] = (scope, [])
        entry[1].append(text)
    out: list[str] = []
    append = out.append
    resource_separator = '{"resourceSpans":['
    for resource, scopes in groups.values():
        append(resource_separator)
        resource_separator = ","
        append('{"resource":{"attributes":')
        _attributes_parts(resource.attributes, out)
        append("}")
        if resource.schema_url:
            append(',"schemaUrl":' + _quote(str(resource.schema_url)))
        scope_separator = ',"scopeSpans":['
        for scope, texts in scopes.values():
            append(scope_separator)
            scope_separator = ","
            append('{"scope":{')
            if scope is not None:
                append('"name":' + _quote(str(scope.name)))
                if scope.version:
                    append(',"version":' + _quote(str(scope.version)))
                scope_attributes = getattr(scope, "attributes", None)
                if scope_attributes:
                    append(',"attributes":')
                    _attributes_parts(scope_attributes, out)
            append('},"spans":[')
            span_separator = ""
            for text in texts:
                append(span_separator)
                span_separator = ","
                append(text)
            append("]")
            if scope is not None and scope.schema_url:
                append(',"schemaUrl":' + _quote(str(scope.schema_url)))
            append("}")
        append("]}")
    append("]}")
    return out


def decode_value(value: Mapping[str, Any], to_int: Callable[[Any], int] = int) -> Any:
    """Python value of one OTLP JSON ``AnyValue`` (the inverse of :func:`value_text`).

    Integers go through ``to_int``: :func:`agenttrace._format.exactjson.exact_int` for a document
    orjson parsed, so an integer it may have rounded raises ``InexactNumberError``. Integers
    written as strings (as OTLP JSON writes them) are exact whatever parsed them.
    """
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        number = value["intValue"]
        return int(number) if type(number) is str else to_int(number)
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        return [decode_value(v, to_int) for v in value["arrayValue"].get("values", ())]
    if "kvlistValue" in value:
        return decode_attributes(value["kvlistValue"].get("values", ()), to_int)
    if "bytesValue" in value:
        return base64.b64decode(value["bytesValue"])
    return None


_NO_VALUE: Mapping[str, Any] = {}


def decode_attributes(
    attributes: Iterable[Mapping[str, Any]] | None, to_int: Callable[[Any], int] = int
) -> dict[str, Any]:
    """``{key: value}`` of an OTLP JSON ``KeyValue`` list (integers through ``to_int``, see :func:`decode_value`)."""
    out: dict[str, Any] = {}
    # A plain loop with strings and integers first: a trace's attributes are mostly those, and
    # loading a large recording decodes hundreds of thousands of them.
    for kv in attributes or ():
        try:
            value = kv["value"]
        except KeyError:
            value = _NO_VALUE
        key = kv["key"]
        if "stringValue" in value:
            out[key] = value["stringValue"]
        elif "intValue" in value:
            number = value["intValue"]
            out[key] = int(number) if type(number) is str else to_int(number)
        else:
            out[key] = decode_value(value, to_int)
    return out


# --- bodies ------------------------------------------------------------------------------------
# A recorded body is held as text: UTF-8 text as it is, any other bytes as base64, with the
# encoding beside it (agenttrace.body.encoding, a list event's body_encoding).


def encode_body(data: bytes) -> tuple[str, str]:
    """``(text, encoding)``: UTF-8 text kept as text, anything else base64."""
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def decode_body(text: str, encoding: str, *, strict: bool = False) -> bytes:
    """The bytes :func:`encode_body` encoded.

    ``strict`` (input a user wrote, such as a list event): base64 must be well formed and the
    encoding one of the two, else ValueError.
    """
    if encoding == "base64":
        return base64.b64decode(text, validate=strict)
    if strict and encoding != "utf-8":
        raise ValueError(f"body_encoding {encoding!r} is not 'utf-8' or 'base64'")
    return text.encode("utf-8")
