"""OTLP protobuf messages as OTLP JSON objects, field by field.

What ``json_format.MessageToDict(message, use_integers_for_enums=True)`` gives, with the ids of
spans and links in hex as OTLP JSON writes them, at a fraction of its cost: protobuf's converter
is pure Python and checks every field for cases OTLP never has (maps, wrappers, ``Any``); this
one looks each field's conversion up once per field descriptor. Same keys, same order (field
number, as ``ListFields`` gives them), same values: 64-bit integers as strings, other bytes in
base64, non-finite doubles as ``"NaN"``/``"Infinity"``/``"-Infinity"``, enums as integers.
``tests/server/test_protobuf.py`` compares the two on every OTLP field.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["Budget", "TooManyValuesError", "json_line", "message_object", "stored_line", "stored_text", "traces_data"]

Convert = Callable[..., Any]  # one value; a message's converter also takes the budget

_IDS = frozenset(("trace_id", "span_id", "parent_span_id"))  # bytes written in hex (spans, links)
_ID_MESSAGES = frozenset(("opentelemetry.proto.trace.v1.Span", "opentelemetry.proto.trace.v1.Span.Link"))

# descriptor -> (JSON name, converter of one value, repeated, a message: its converter takes the budget)
_fields: dict[Any, tuple[str, Convert, bool, bool]] = {}


class TooManyValuesError(ValueError):
    """A request holds more attributes, events, links and values than its :class:`Budget` allows."""


class Budget:
    """How many more repeated messages (attributes, events, links, the values of lists and maps) a
    conversion may make; past it, :class:`TooManyValuesError`: a request's cost is bounded by its count
    of values as well as by its size, since a small attribute costs a hundred times its wire size once
    converted."""

    __slots__ = ("left",)

    def __init__(self, limit: int) -> None:
        self.left = limit

    def spend(self, count: int) -> None:
        self.left -= count
        if self.left < 0:
            raise TooManyValuesError


def message_object(message: Any, budget: Budget) -> dict[str, Any]:
    """The OTLP JSON object of one protobuf message (its set fields only, as protobuf's JSON mapping)."""
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        try:
            name, convert, repeated, nested = _fields[field]
        except KeyError:
            name, convert, repeated, nested = _fields.setdefault(field, _plan(field))
        if not nested:
            out[name] = [convert(item) for item in value] if repeated else convert(value)
        elif repeated:
            budget.spend(len(value))
            out[name] = [convert(item, budget) for item in value]
        else:
            out[name] = convert(value, budget)
    return out


def _plan(field: Any) -> tuple[str, Convert, bool, bool]:
    from google.protobuf.descriptor import FieldDescriptor  # type: ignore[import-untyped]  # no type stubs

    kind = field.cpp_type
    convert: Convert
    if kind == FieldDescriptor.CPPTYPE_MESSAGE:
        convert = _key_value if _is_key_value(field.message_type) else message_object
    elif kind == FieldDescriptor.CPPTYPE_STRING and field.type == FieldDescriptor.TYPE_BYTES:
        hexadecimal = field.name in _IDS and field.containing_type.full_name in _ID_MESSAGES
        convert = bytes.hex if hexadecimal else _base64
    elif kind in (FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64):
        convert = str
    elif kind in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
        convert = _double if kind == FieldDescriptor.CPPTYPE_DOUBLE else _float
    elif kind == FieldDescriptor.CPPTYPE_BOOL:
        convert = bool
    else:  # strings, 32-bit integers, enums (as integers, as OTLP JSON writes them)
        convert = _same
    return field.json_name, convert, field.is_repeated, kind == FieldDescriptor.CPPTYPE_MESSAGE


_KEY_VALUE = "opentelemetry.proto.common.v1.KeyValue"


_KEY_VALUE_FIELDS = [(1, "key"), (2, "value"), (3, "key_strindex")]


def _is_key_value(message_type: Any) -> bool:
    """Whether ``message_type`` is the ``KeyValue`` :func:`_key_value` knows (a newer one goes the general way)."""
    return bool(
        message_type.full_name == _KEY_VALUE
        and sorted((f.number, f.name) for f in message_type.fields) == _KEY_VALUE_FIELDS
    )


def _key_value(item: Any, budget: Budget) -> dict[str, Any]:
    """A ``KeyValue`` (an attribute): most of a request's messages, so its fields are read directly
    (``ListFields`` and a look-up per field cost twice as much)."""
    out: dict[str, Any] = {}
    key = item.key
    if key:
        out["key"] = key
    value = item.value
    member = value.WhichOneof("value")
    if member == "string_value":
        out["value"] = {"stringValue": value.string_value}
    elif member == "int_value":
        out["value"] = {"intValue": str(value.int_value)}
    elif member is not None or item.HasField("value"):
        out["value"] = message_object(value, budget)
    strindex = item.key_strindex
    if strindex:
        out["keyStrindex"] = strindex
    return out


def _same(value: Any) -> Any:
    return value


def _base64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _double(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _float(value: float) -> float | str:
    from google.protobuf.internal import type_checkers  # type: ignore[import-untyped]

    return type_checkers.ToShortestFloat(value) if math.isfinite(value) else _double(value)


# --- one span as stored: a TracesData of its resource, its scope and itself -------------------------
# A span that came as protobuf is stored as protobuf (the server's ingest then costs a copy of its
# bytes, not a conversion), and turned into its OTLP JSON line when it is read.


def traces_data(resource: bytes | None, scope: bytes | None) -> Callable[[bytes], bytes]:
    """A maker of the wire form of a ``TracesData`` holding one span under ``resource`` and ``scope`` (the
    serialized ``Resource`` and ``InstrumentationScope``; None: absent): it takes the serialized ``Span``."""
    resource_field = b"" if resource is None else _field(1, resource)
    scope_field = b"" if scope is None else _field(1, scope)

    def of(span: bytes) -> bytes:
        return _field(1, resource_field + _field(2, scope_field + _field(2, span)))

    return of


def _field(number: int, data: bytes) -> bytes:
    """A length-delimited field (wire type 2) of a message: its tag, its length (a varint), its bytes."""
    size = len(data)
    tag = (number << 3) | 2
    if size < 0x4000:  # a span's payloads: two bytes of length, mostly
        head = bytes((tag, size)) if size < 0x80 else bytes((tag, (size & 0x7F) | 0x80, size >> 7))
        return head + data
    varint = bytearray((tag,))
    while size > 0x7F:
        varint.append((size & 0x7F) | 0x80)
        size >>= 7
    varint.append(size)
    return bytes(varint) + data


# A stored span was counted at ingest (the request's budget); this only bounds a damaged row.
_READ_BUDGET = 10**7


def stored_text(line: str, proto: Any) -> str:
    """A stored span's OTLP JSON line: ``line``, or the one made from ``proto`` when the span came as protobuf."""
    return str(line) if proto is None else stored_line(bytes(proto))


def stored_line(data: bytes) -> str:
    """The OTLP JSON line of a span stored as :func:`traces_data` made it: what :func:`json_line` gives for its
    resource, scope and span converted by :func:`message_object`."""
    from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

    resource_spans = TracesData.FromString(data).resource_spans[0]
    scope_spans = resource_spans.scope_spans[0]
    budget = Budget(_READ_BUDGET)
    resource = message_object(resource_spans.resource, budget) if resource_spans.HasField("resource") else {}
    scope = message_object(scope_spans.scope, budget) if scope_spans.HasField("scope") else {}
    return json_line(resource, scope, message_object(scope_spans.spans[0], budget))


def json_line(resource: Any, scope: Any, span: Any) -> str:
    """The stored line of one span: an OTLP JSON ``TracesData`` of its resource, its scope and itself."""
    document = {"resourceSpans": [{"resource": resource, "scopeSpans": [{"scope": scope, "spans": [span]}]}]}
    try:
        return orjson.dumps(document).decode()
    except TypeError:  # an integer beyond 64 bits (OTLP JSON allows any): the standard library writes it exactly
        return json.dumps(document, ensure_ascii=False, separators=(",", ":"))
