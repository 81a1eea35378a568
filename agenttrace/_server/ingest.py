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

import re
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.KIND
from agenttrace._format.exactjson import exact_loads
from agenttrace._format.files import record_of_span as record
from agenttrace._format.otlp_json import decode_attributes, decode_value
from agenttrace._server.protobuf import Budget, TooManyValuesError, json_line, message_object, traces_data
from agenttrace._server.store.records import SpanRow

__all__ = [
    "MAX_SPANS_PER_REQUEST",
    "MAX_VALUES_PER_REQUEST",
    "BadRequestError",
    "decode_request",
    "decompress",
    "release_memory",
]

# Spans in one request: OpenTelemetry's exporters send 512 at most by default. The bound keeps the
# memory of decoding one request near its size on the wire (a span costs ~1 KB once decoded).
MAX_SPANS_PER_REQUEST = 10_000
# Attributes, events, links and the values of lists and maps in one protobuf request. A small
# attribute costs about a hundred times its size on the wire once converted, so this bounds what
# a request of small attributes costs; a batch of 512 AgentTrace spans holds about 10,000.
MAX_VALUES_PER_REQUEST = 200_000
MAX_GZIP_MEMBERS = 1_000

_HEX_TRACE = re.compile(r"[0-9a-f]{32}")
_HEX_SPAN = re.compile(r"[0-9a-f]{16}")


class BadRequestError(ValueError):
    """A request the server cannot store; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def decompress(body: bytes | bytearray, encoding: str, limit: int) -> bytes | bytearray:
    """``body`` undone from its Content-Encoding (gzip, deflate or none), at most ``limit`` bytes.

    Inflated up to the limit and no further, so a small gzip bomb cannot take the server's memory;
    every member of a multi-member gzip body is read (as ``gzip.decompress`` reads them).
    """
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate", "x-gzip"):
        raise BadRequestError(f"Content-Encoding {encoding!r} is not supported; expected gzip, deflate or none", 415)
    gzipped = encoding in ("gzip", "x-gzip")
    out = bytearray()
    data = body
    members = 0
    try:
        while True:
            members += 1
            if members > MAX_GZIP_MEMBERS:  # each member copies the rest of the body: bounded
                raise BadRequestError(f"the {encoding} request body has more than {MAX_GZIP_MEMBERS} members")
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if gzipped else zlib.MAX_WBITS)
            out += inflater.decompress(data, limit + 1 - len(out))
            if len(out) > limit or inflater.unconsumed_tail:
                raise BadRequestError(
                    f"the request body decompresses to more than {limit} bytes (the server's limit)", 413
                )
            if not inflater.eof:
                raise BadRequestError(f"the {encoding} request body is truncated")
            data = inflater.unused_data
            if not data:
                return bytes(out)
            if not gzipped:
                raise BadRequestError(f"the {encoding} request body has {len(data)} bytes after its end")
    except zlib.error as exc:
        raise BadRequestError(f"the request body is not valid {encoding} ({exc})") from None


def decode_request(body: bytes | bytearray, content_type: str) -> list[SpanRow]:
    """The spans of an OTLP ``ExportTraceServiceRequest`` in ``content_type``'s encoding."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media in ("application/x-protobuf", "application/protobuf"):
        return _protobuf_rows(body)
    if media == "application/json":
        try:
            document = exact_loads(bytes(body))
            _drop_nulls(document)
        except ValueError as exc:
            raise BadRequestError(f"the request body is not valid JSON ({exc})") from None
        return list(_rows(document))
    raise BadRequestError(
        f"Content-Type {content_type or '(none)'!r} is not supported; "
        "expected application/x-protobuf or application/json (OTLP/HTTP)",
        415,
    )


def _drop_nulls(document: Any) -> None:
    """Remove the null members of every object: protobuf's JSON mapping reads null as the default."""
    stack = [document]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            for key in [k for k, v in item.items() if v is None]:
                del item[key]
            stack.extend(item.values())
        elif type(item) is list:
            stack.extend(item)


def _protobuf_rows(body: bytes | bytearray) -> list[SpanRow]:
    """The rows of a protobuf request: each span kept as protobuf (a ``TracesData`` of its resource,
    scope and itself, see :func:`~agenttrace._server.protobuf.traces_data`), read only for its
    columns and for what the JSON path would refuse; its OTLP JSON line is made when it is read
    (:func:`~agenttrace._server.protobuf.stored_line`), byte for byte the line that ``MessageToDict``
    with OTLP JSON's hex ids and integer enums would give."""
    from google.protobuf.message import DecodeError  # type: ignore[import-untyped]  # protobuf ships no type stubs
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    try:
        request = ExportTraceServiceRequest.FromString(body)
    except DecodeError as exc:
        raise BadRequestError(f"the request body is not a protobuf ExportTraceServiceRequest ({exc})") from None
    _check_count(sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans))
    # The values a request holds are counted as the conversion to JSON would count them (it is done
    # when the spans are read, and costs about a hundred times a small value's wire size).
    budget = Budget(MAX_VALUES_PER_REQUEST)
    rows: list[SpanRow] = []
    try:
        for r, resource_spans in enumerate(request.resource_spans):
            resource: bytes | None = None
            if resource_spans.HasField("resource"):
                _count(resource_spans.resource.attributes, budget, False)
                resource = resource_spans.resource.SerializeToString()
            for s, scope_spans in enumerate(resource_spans.scope_spans):
                scope: bytes | None = None
                if scope_spans.HasField("scope"):
                    _count(scope_spans.scope.attributes, budget, False)
                    scope = scope_spans.scope.SerializeToString()
                where = f"resourceSpans[{r}].scopeSpans[{s}].spans"
                stored = traces_data(resource, scope)
                rows.extend(
                    _protobuf_row(f"{where}[{i}]", stored, span, budget) for i, span in enumerate(scope_spans.spans)
                )
    except TooManyValuesError:
        raise BadRequestError(
            f"the request holds more than {MAX_VALUES_PER_REQUEST} attributes, events, links and values in lists "
            "and maps, the server's limit per request; send fewer spans per request",
            413,
        ) from None
    return rows


# The span attributes a row's columns read (_row's, _llm_columns').
_COLUMN_KEYS = frozenset(
    (
        S.KIND,
        S.RUN_NAME,
        S.RUN_MODE,
        S.GEN_AI_OPERATION,
        S.GEN_AI_RESPONSE_MODEL,
        S.GEN_AI_REQUEST_MODEL,
        S.GEN_AI_INPUT_TOKENS,
        S.GEN_AI_OUTPUT_TOKENS,
        S.GEN_AI_CACHE_READ_TOKENS,
        S.GEN_AI_CACHE_CREATION_TOKENS,
    )
)


class _KeylessError(Exception):
    """An attribute without a key, where the readers of the download need one."""


def _protobuf_row(where: str, stored: Callable[[bytes], bytes], span: Any, budget: Budget) -> SpanRow:
    """A protobuf span's row (``stored`` makes what the row keeps of it from its bytes); refuses what
    :func:`_row` refuses of the span's JSON form, in the same order and words."""
    trace_id, span_id, parent = span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex()
    if len(trace_id) != 32 or trace_id == "0" * 32:
        raise BadRequestError(f"{where}.traceId {trace_id!r}: expected 32 hex digits, not all zero")
    if len(span_id) != 16 or span_id == "0" * 16:
        raise BadRequestError(f"{where}.spanId {span_id!r}: expected 16 hex digits, not all zero")
    if parent and len(parent) != 16:
        raise BadRequestError(f"{where}.parentSpanId {parent!r}: expected 16 hex digits")
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    if not (start < 2**63 and end < 2**63):
        raise BadRequestError(f"{where}: start or end time out of range (expected nanoseconds since 1970 in 64 bits)")
    picked: dict[str, Any] = {}
    try:
        _count(span.attributes, budget, True, picked)
    except _KeylessError:
        raise BadRequestError(f"{where}.attributes: malformed (KeyError: 'key')") from None
    status_code = span.status.code
    if status_code not in (0, 1, 2):
        raise BadRequestError(f"{where}.status.code {status_code!r}: expected 0, 1 or 2")
    events = span.events
    budget.spend(len(events))
    try:
        for event in events:
            _count(event.attributes, budget, True)
    except _KeylessError:
        raise BadRequestError(f"{where}: malformed span (KeyError: 'key')") from None
    links = span.links
    if links:
        budget.spend(len(links))
        for link in links:
            _count(link.attributes, budget, False)
    attributes = {key: _python(value) for key, value in picked.items()}
    kind = attributes.get(S.KIND, "")
    name = span.name
    return SpanRow(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name=_column(name),
        kind=_column(kind) if isinstance(kind, str) else "",
        start_ns=start,
        end_ns=end,
        status_code=status_code,
        run_name=_column(attributes.get(S.RUN_NAME, name)) if kind == "run" else "",
        run_mode=_column(attributes.get(S.RUN_MODE, "")) if kind == "run" else "",
        line="",
        proto=stored(span.SerializeToString()),
        **_llm_columns(attributes),
    )


def _count(attributes: Any, budget: Budget, keyed: bool, picked: dict[str, Any] | None = None) -> None:
    """Spend ``budget`` on a ``KeyValue`` list and the values of its lists and maps, as the conversion to
    JSON spends it; ``keyed``: an attribute without a key (at any depth) raises :class:`_KeylessError`;
    ``picked`` gets the values of the keys of :data:`_COLUMN_KEYS` (the last of a key given twice)."""
    budget.spend(len(attributes))
    for kv in attributes:  # most of a request's values: no call per attribute but for lists and maps
        key = kv.key
        if keyed and not key:
            raise _KeylessError
        value = kv.value
        member = value.WhichOneof("value")
        if member == "array_value":
            _count_values(value.array_value.values, budget, keyed)
        elif member == "kvlist_value":
            _count(value.kvlist_value.values, budget, keyed)
        if picked is not None and key in _COLUMN_KEYS:
            picked[key] = value


def _count_values(values: Any, budget: Budget, keyed: bool) -> None:
    """:func:`_count` for the values of a list."""
    budget.spend(len(values))
    for value in values:
        member = value.WhichOneof("value")
        if member == "array_value":
            _count_values(value.array_value.values, budget, keyed)
        elif member == "kvlist_value":
            _count(value.kvlist_value.values, budget, keyed)


def _python(value: Any) -> Any:
    """The Python value of an ``AnyValue``, as :func:`decode_attributes` reads its JSON form."""
    member = value.WhichOneof("value")
    if member == "string_value":
        return value.string_value
    if member == "int_value":
        return value.int_value
    return decode_value(message_object(value, Budget(MAX_VALUES_PER_REQUEST)))


def _check_count(spans: int) -> None:
    if spans > MAX_SPANS_PER_REQUEST:
        raise BadRequestError(
            f"the request holds {spans} spans, more than the server's limit of {MAX_SPANS_PER_REQUEST} per request",
            413,
        )


def _rows(document: Any) -> Iterable[SpanRow]:
    if not isinstance(document, Mapping):
        raise BadRequestError(f"expected an ExportTraceServiceRequest object, got {type(document).__name__}")
    resource_list = document.get("resourceSpans", [])
    if not isinstance(resource_list, list):
        raise BadRequestError("resourceSpans: expected a list")
    checked: list[tuple[str, Any, Any, list[Any]]] = []
    for r, resource_spans in enumerate(resource_list):
        if not isinstance(resource_spans, Mapping):
            raise BadRequestError(f"resourceSpans[{r}]: expected an object")
        resource = resource_spans.get("resource", {})
        if not isinstance(resource, Mapping):
            raise BadRequestError(f"resourceSpans[{r}].resource: expected an object")
        scope_list = resource_spans.get("scopeSpans", [])
        if not isinstance(scope_list, list):
            raise BadRequestError(f"resourceSpans[{r}].scopeSpans: expected a list")
        for s, scope_spans in enumerate(scope_list):
            if not isinstance(scope_spans, Mapping) or not isinstance(scope_spans.get("spans", []), list):
                raise BadRequestError(f"resourceSpans[{r}].scopeSpans[{s}]: expected an object with a list of spans")
            scope = scope_spans.get("scope", {})
            if not isinstance(scope, Mapping):
                raise BadRequestError(f"resourceSpans[{r}].scopeSpans[{s}].scope: expected an object")
            checked.append((f"resourceSpans[{r}].scopeSpans[{s}]", resource, scope, scope_spans.get("spans", [])))
    _check_count(sum(len(spans) for *_, spans in checked))
    for where, resource, scope, spans in checked:
        for i, span in enumerate(spans):
            yield _row(f"{where}.spans[{i}]", resource, scope, span)


def _row(where: str, resource: Any, scope: Any, span: Any) -> SpanRow:
    """An OTLP JSON span's row."""
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
    status = span.get("status", {})
    if not isinstance(status, Mapping):
        raise BadRequestError(f"{where}.status: expected an object")
    status_code = status.get("code", 0)
    if status_code not in (0, 1, 2) or isinstance(status_code, bool):
        raise BadRequestError(f"{where}.status.code {status_code!r}: expected 0, 1 or 2")
    kind = attributes.get(S.KIND, "")
    normalized = dict(span)
    normalized["traceId"], normalized["spanId"] = trace_id, span_id
    if parent:
        normalized["parentSpanId"] = parent
    try:
        # What every reader of the download does with the span (agenttrace show, the trace page,
        # the replay loader's first pass): a span it cannot read is refused here, not stored.
        record(normalized, str(scope.get("name", "")))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadRequestError(f"{where}: malformed span ({type(exc).__name__}: {exc})") from None
    line = json_line(resource, scope, normalized)
    return SpanRow(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name=_column(span.get("name", "")),
        kind=_column(kind) if isinstance(kind, str) else "",
        start_ns=start,
        end_ns=end,
        status_code=status_code,
        run_name=_column(attributes.get(S.RUN_NAME, span.get("name", ""))) if kind == "run" else "",
        run_mode=_column(attributes.get(S.RUN_MODE, "")) if kind == "run" else "",
        line=line,
        **_llm_columns(attributes),
    )


def _llm_columns(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """An LLM call span's columns: model and token counts (other instrumentations' GenAI spans are not counted:
    AgentTrace's call span below them already is)."""
    if S.GEN_AI_OPERATION not in attributes or attributes.get(S.KIND) != "call":
        return {}
    model = attributes.get(S.GEN_AI_RESPONSE_MODEL) or attributes.get(S.GEN_AI_REQUEST_MODEL)

    def tokens(key: str) -> int:
        value = attributes.get(key)
        return value if type(value) is int and 0 <= value < 2**62 else 0

    return {
        "model": _column(model) if isinstance(model, str) and model else "?",
        "input_tokens": tokens(S.GEN_AI_INPUT_TOKENS),
        "output_tokens": tokens(S.GEN_AI_OUTPUT_TOKENS),
        "cache_read_tokens": tokens(S.GEN_AI_CACHE_READ_TOKENS),
        "cache_creation_tokens": tokens(S.GEN_AI_CACHE_CREATION_TOKENS),
    }


def _column(value: Any) -> str:
    """A text column's value: PostgreSQL's text holds no NUL (the span's line keeps it, escaped)."""
    return str(value).replace("\x00", "\ufffd")


def release_memory() -> None:
    """Hand the memory the C allocator holds free back to the system (glibc's ``malloc_trim``).

    A large request's decoding frees hundreds of thousands of small blocks at once; glibc keeps
    them for reuse, so without this the server stays hundreds of MiB larger after one large
    request. Elsewhere than glibc, nothing is done.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


_trim: list[Any] = []


def _malloc_trim() -> Any:
    if not _trim:
        try:
            import ctypes

            _trim.append(ctypes.CDLL("libc.so.6").malloc_trim)
        except (OSError, AttributeError):
            _trim.append(None)
    return _trim[0]
