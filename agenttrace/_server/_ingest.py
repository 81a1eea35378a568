"""OTLP/HTTP trace requests into the rows the store keeps: one row per span.

Both encodings OTLP/HTTP defines are read: protobuf (``application/x-protobuf``, what
AgentTrace's backend exporter and OpenTelemetry's OTLP exporters send) and JSON
(``application/json``), each optionally gzip- or deflate-compressed. Every span is kept as one
OTLP JSON ``TracesData`` line holding its resource, its scope and the span itself, exactly the
line the local trace store would write, so a trace downloaded from the server is a file that
``agenttrace show``, ``load_events`` and ``agenttrace replay`` read as they read a local one.

Anything that makes a request unusable raises :class:`BadRequestError`, whose message names the
resource, scope and span index and what was expected; the request is then refused whole
(nothing of it stored), with status 400.
"""

from __future__ import annotations

import base64
import gzip
import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from .. import _schema as S  # noqa: N812 - the schema's names read as S.KIND
from .._otlp_json import decode_attributes

__all__ = ["BadRequestError", "SpanRow", "decode_request", "decompress"]

_HEX_TRACE = re.compile(r"[0-9a-f]{32}")
_HEX_SPAN = re.compile(r"[0-9a-f]{16}")


class BadRequestError(ValueError):
    """A request the server cannot store; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class SpanRow:
    """One span as stored: the columns the listing and the run page query, and its OTLP JSON line."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str  # agenttrace.kind: "run", "step", "call", or "" for spans that are not AgentTrace's
    start_ns: int
    end_ns: int
    status_code: int  # OTLP status code: 0 unset, 1 ok, 2 error
    run_name: str  # agenttrace.run.name on run spans, else ""
    run_mode: str  # agenttrace.run.mode on run spans ("record", "replay"), else ""
    line: str  # {"resourceSpans":[{"resource":..., "scopeSpans":[{"scope":..., "spans":[span]}]}]}


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """``body`` undone from its Content-Encoding (gzip, deflate or none), at most ``limit`` bytes."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate", "x-gzip"):
        raise BadRequestError(f"Content-Encoding {encoding!r} is not supported; expected gzip, deflate or none", 415)
    try:
        # Inflated up to the limit and no further: a small gzip bomb must not take the server's memory.
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding in ("gzip", "x-gzip") else zlib.MAX_WBITS)
        out = inflater.decompress(body, limit + 1)
        if len(out) > limit:
            raise BadRequestError(f"the request body decompresses to more than {limit} bytes (the server's limit)", 413)
        if not inflater.eof:
            raise BadRequestError(f"the {encoding} request body is truncated")
        return out
    except (zlib.error, gzip.BadGzipFile, EOFError) as exc:
        raise BadRequestError(f"the request body is not valid {encoding} ({exc})") from None


def decode_request(body: bytes, content_type: str) -> list[SpanRow]:
    """The spans of an OTLP ``ExportTraceServiceRequest`` in ``content_type``'s encoding."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media in ("application/x-protobuf", "application/protobuf"):
        document = _protobuf_document(body)
    elif media == "application/json":
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequestError(f"the request body is not valid JSON ({exc})") from None
    else:
        raise BadRequestError(
            f"Content-Type {content_type or '(none)'!r} is not supported; "
            "expected application/x-protobuf or application/json (OTLP/HTTP)",
            415,
        )
    return list(_rows(document))


def _protobuf_document(body: bytes) -> dict[str, Any]:
    """The OTLP JSON form of a protobuf request: ``MessageToDict`` with OTLP JSON's ids and enums."""
    from google.protobuf import json_format  # type: ignore[import-untyped]  # protobuf ships no type stubs
    from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    try:
        request = ExportTraceServiceRequest.FromString(body)
    except DecodeError as exc:
        raise BadRequestError(f"the request body is not a protobuf ExportTraceServiceRequest ({exc})") from None
    # OTLP JSON differs from protobuf's JSON mapping in two ways: ids are hex, not base64, and
    # enums are integers, not names (OTLP specification, "JSON Protobuf Encoding").
    document: dict[str, Any] = json_format.MessageToDict(request, use_integers_for_enums=True)
    for resource_spans in document.get("resourceSpans", ()):
        for scope_spans in resource_spans.get("scopeSpans", ()):
            for span in scope_spans.get("spans", ()):
                _hex_ids(span)
                for link in span.get("links", ()):
                    _hex_ids(link)
    return document


def _hex_ids(item: dict[str, Any]) -> None:
    for key in ("traceId", "spanId", "parentSpanId"):
        value = item.get(key)
        if value:
            item[key] = base64.b64decode(value).hex()


def _rows(document: Any) -> Iterable[SpanRow]:
    if not isinstance(document, Mapping):
        raise BadRequestError(f"expected an ExportTraceServiceRequest object, got {type(document).__name__}")
    resource_list = document.get("resourceSpans", [])
    if not isinstance(resource_list, list):
        raise BadRequestError("resourceSpans: expected a list")
    for r, resource_spans in enumerate(resource_list):
        if not isinstance(resource_spans, Mapping):
            raise BadRequestError(f"resourceSpans[{r}]: expected an object")
        resource = resource_spans.get("resource", {})
        scope_list = resource_spans.get("scopeSpans", [])
        if not isinstance(scope_list, list):
            raise BadRequestError(f"resourceSpans[{r}].scopeSpans: expected a list")
        for s, scope_spans in enumerate(scope_list):
            if not isinstance(scope_spans, Mapping) or not isinstance(scope_spans.get("spans", []), list):
                raise BadRequestError(f"resourceSpans[{r}].scopeSpans[{s}]: expected an object with a list of spans")
            scope = scope_spans.get("scope", {})
            for i, span in enumerate(scope_spans.get("spans", [])):
                where = f"resourceSpans[{r}].scopeSpans[{s}].spans[{i}]"
                yield _row(where, resource, scope, span)


def _row(where: str, resource: Any, scope: Any, span: Any) -> SpanRow:
    if not isinstance(span, Mapping):
        raise BadRequestError(f"{where}: expected a span object, got {type(span).__name__}")
    trace_id = str(span.get("traceId", "")).lower()
    span_id = str(span.get("spanId", "")).lower()
    parent = str(span.get("parentSpanId", "") or "").lower()
    if not _HEX_TRACE.fullmatch(trace_id) or trace_id == "0" * 32:
        raise BadRequestError(f"{where}.traceId {span.get('traceId')!r}: expected 32 hex digits, not all zero")
    if not _HEX_SPAN.fullmatch(span_id) or span_id == "0" * 16:
        raise BadRequestError(f"{where}.spanId {span.get('spanId')!r}: expected 16 hex digits, not all zero")
    if parent and not _HEX_SPAN.fullmatch(parent):
        raise BadRequestError(f"{where}.parentSpanId {span.get('parentSpanId')!r}: expected 16 hex digits")
    try:
        start = int(span.get("startTimeUnixNano", 0))
        end = int(span.get("endTimeUnixNano", 0))
    except (TypeError, ValueError):
        raise BadRequestError(f"{where}: startTimeUnixNano and endTimeUnixNano must be integers") from None
    if not (0 <= start < 2**63 and 0 <= end < 2**63):
        raise BadRequestError(f"{where}: start or end time out of range (expected nanoseconds since 1970 in 64 bits)")
    try:
        attributes = decode_attributes(span.get("attributes"))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadRequestError(f"{where}.attributes: malformed ({type(exc).__name__}: {exc})") from None
    status = span.get("status") or {}
    try:
        status_code = int(status.get("code", 0)) if isinstance(status, Mapping) else 0
    except (TypeError, ValueError):
        raise BadRequestError(f"{where}.status.code {status.get('code')!r}: expected 0, 1 or 2") from None
    kind = attributes.get(S.KIND, "")
    normalized = dict(span)
    normalized["traceId"], normalized["spanId"] = trace_id, span_id
    if parent:
        normalized["parentSpanId"] = parent
    line = orjson.dumps(
        {"resourceSpans": [{"resource": resource, "scopeSpans": [{"scope": scope, "spans": [normalized]}]}]}
    ).decode()
    return SpanRow(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name=str(span.get("name", "")),
        kind=kind if isinstance(kind, str) else "",
        start_ns=start,
        end_ns=end,
        status_code=status_code,
        run_name=str(attributes.get(S.RUN_NAME, span.get("name", ""))) if kind == "run" else "",
        run_mode=str(attributes.get(S.RUN_MODE, "")) if kind == "run" else "",
        line=line,
    )
