"""The machine routes: OTLP/HTTP ingest (``POST /v1/traces``) and the JSON API with its download
(``/api/traces...``), and the answers they give when a request or the database fails.

The store is called on Starlette's thread pool: its drivers block.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from agenttrace._core.errors import warn_once
from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.BODY
from agenttrace._format.exactjson import exact_loads
from agenttrace._format.otlp_json import decode_attributes, decode_body
from agenttrace._server.context import MAX_OFFSET, state_of, trace_id_of
from agenttrace._server.ingest import BadRequestError, decode_request, decompress, release_memory
from agenttrace._server.listing import BadParameterError, listing_filter
from agenttrace._server.store import Store
from agenttrace._server.store.records import SpanRow

__all__ = [
    "api_body",
    "api_span",
    "api_trace",
    "api_traces",
    "delete_trace",
    "download",
    "ingest",
    "otlp_error",
    "store_failed",
]

READ_PART_SPANS = 500  # spans read from the store at a time by the routes that give a whole trace

MIN_BODY_RATE = 64 * 1024  # bytes/s an upload must average once it has taken request_timeout
LARGE_REQUEST_BYTES = 8 * 2**20  # after a larger request, the memory its decoding freed is handed back


async def ingest(request: Request) -> Response:
    """``POST /v1/traces``: store an ``ExportTraceServiceRequest``'s spans, all or none."""
    state = state_of(request)
    store, limit = state.store, state.max_request_bytes
    content_type = request.headers.get("content-type", "")
    declared = request.headers.get("content-length")
    too_big = f"the request body is over the server's limit of {limit} bytes"
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return otlp_error(request, too_big, 413, close=True)
    # At most INGEST_CONCURRENCY requests are read, inflated, decoded and stored at a time (the
    # body is read inside, so waiting requests hold no memory): a request costs a few times its
    # size while it is handled, and the rest wait their turn.
    # A request waits for its turn at most twice request_timeout (the time two stalled uploads
    # hold the slots), then 503 (the exporter retries later): a flood of uploads that never send
    # their bodies does not pile up waiting.
    turn = False
    with anyio.move_on_after(2 * state.request_timeout):
        await state.ingesting.acquire()
        turn = True
    if not turn:
        busy = f"the server is busy: no turn to ingest within {2 * state.request_timeout:g} s"
        return otlp_error(request, busy, 503, close=True)
    try:
        body = bytearray()
        chunks = request.stream().__aiter__()
        started = time.monotonic()
        while True:
            # A body that stops arriving gives its turn up after request_timeout: two stalled
            # uploads must not hold the ingest slots forever; nor may one trickling a byte at a time.
            with anyio.move_on_after(state.request_timeout) as waited:
                try:
                    chunk = await anext(chunks, None)
                except ClientDisconnect:
                    return Response(status_code=400)  # no one reads it; nothing to log
            if waited.cancelled_caught:
                return otlp_error(request, f"the request body stalled for {state.request_timeout:g} s", 408, close=True)
            if chunk is None:
                break
            body += chunk
            if len(body) > limit:
                return otlp_error(request, too_big, 413, close=True)
            elapsed = time.monotonic() - started
            if elapsed > state.request_timeout and len(body) < elapsed * MIN_BODY_RATE:
                return otlp_error(
                    request,
                    f"the request body arrives slower than {MIN_BODY_RATE // 1024} KiB/s "
                    f"after {state.request_timeout:g} s",
                    408,
                    close=True,
                )
        large = len(body) > LARGE_REQUEST_BYTES
        try:
            rows = await run_in_threadpool(_decoded, body, request, limit)
        except BadRequestError as exc:
            if large:
                await run_in_threadpool(release_memory)
            return otlp_error(request, str(exc), exc.status)
        del body
        try:
            await run_in_threadpool(_stored, store, rows, large)
        except store.refused as exc:
            # The database refuses the data itself (a value out of its range): retrying cannot help.
            return otlp_error(request, f"the database refused the spans ({type(exc).__name__}: {exc})", 400)
        except store.errors as exc:
            # 503: AgentTrace's exporter (and OpenTelemetry's) retries with backoff, then spools.
            return _unavailable(request, exc)
    finally:
        state.ingesting.release()
    if content_type.split(";", 1)[0].strip().lower() == "application/json":
        return JSONResponse({})
    # An empty ExportTraceServiceResponse: zero bytes in protobuf.
    return Response(b"", media_type="application/x-protobuf")


async def api_traces(request: Request) -> Response:
    """``GET /api/traces?limit=&offset=&before=&name=&status=...``: a page of the listing, and the
    ``next`` cursor (``before=``) of the page after it (null on the last page)."""
    try:
        limit = int(request.query_params.get("limit", "100"))
        offset = int(request.query_params.get("offset", "0"))
    except ValueError:
        return JSONResponse({"error": "limit and offset must be integers"}, status_code=400)
    if not (1 <= limit <= 1000) or not 0 <= offset <= MAX_OFFSET:
        return JSONResponse({"error": f"limit must be 1 to 1000 and offset 0 to {MAX_OFFSET}"}, status_code=400)
    try:
        where = listing_filter(request.query_params)
    except BadParameterError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    traces = await run_in_threadpool(state_of(request).store.traces, limit + 1, offset, where)
    more = len(traces) > limit
    traces = traces[:limit]
    return JSONResponse({"traces": [t.as_json() for t in traces], "next": traces[-1].cursor if more else None})


async def delete_trace(request: Request) -> Response:
    """``DELETE /api/traces/{trace_id}``: delete the trace's spans; 204, or 404 if none is stored."""
    trace_id = _api_trace_id(request)
    if not isinstance(trace_id, str):
        return trace_id
    deleted = await run_in_threadpool(state_of(request).store.delete, [trace_id])
    return Response(status_code=204) if deleted else _not_found(f"no trace {trace_id}")


async def api_trace(request: Request) -> Response:
    """``GET /api/traces/{trace_id}``: the trace's summary and its spans in OTLP JSON (streamed, a part at a time)."""
    trace_id = _api_trace_id(request)
    if not isinstance(trace_id, str):
        return trace_id
    store = state_of(request).store
    summary = await run_in_threadpool(store.trace, trace_id)
    if summary is None:
        return _not_found(f"no trace {trace_id}")
    head = json.dumps({**summary.as_json(), "otlp_spans": []}, ensure_ascii=False)[:-2]  # up to "["

    def spans() -> Iterator[str]:
        first = True
        for line in _stored_lines(store, trace_id):
            for span in _spans_of(exact_loads(line)):
                yield ("" if first else ",") + json.dumps(span, ensure_ascii=False, separators=(",", ":"))
                first = False

    return StreamingResponse(_joined(head, spans(), "]}"), media_type="application/json")


async def download(request: Request) -> Response:
    """``GET /api/traces/{trace_id}/download``: the trace as an OTLP JSON Lines file (streamed, a part at a time)."""
    trace_id = _api_trace_id(request)
    if not isinstance(trace_id, str):
        return trace_id
    store = state_of(request).store
    if await run_in_threadpool(store.trace, trace_id) is None:
        return _not_found(f"no trace {trace_id}")
    return StreamingResponse(
        (line + "\n" for line in _stored_lines(store, trace_id)),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="trace-{trace_id}.jsonl"'},
    )


def _stored_lines(store: Store, trace_id: str) -> Iterator[str]:
    """The trace's lines in start order, read READ_PART_SPANS at a time (Starlette pulls a sync
    iterator on its thread pool, so each read runs there)."""
    after: tuple[int, str] | None = None
    while True:
        rows = store.span_lines(trace_id, after, READ_PART_SPANS)
        for _, _, line in rows:
            yield line
        if not rows:
            return
        start_ns, span_id, _ = rows[-1]
        after = (start_ns, span_id)


def _joined(head: str, middle: Iterator[str], tail: str) -> Iterator[str]:
    yield head
    yield from middle
    yield tail


async def api_span(request: Request) -> Response:
    """``GET /api/traces/{trace_id}/spans/{span_id}``: one span in OTLP JSON."""
    found = await _one_span(request)
    if isinstance(found, Response):
        return found
    return JSONResponse(found)


async def api_body(request: Request) -> Response:
    """``GET /api/traces/{trace_id}/spans/{span_id}/events/{index}/body``: one payload's body as recorded
    (text as UTF-8 text, a binary body as bytes to download); what the run page loads on demand."""
    found = await _one_span(request)
    if isinstance(found, Response):
        return found
    events = found.get("events") or []
    index = str(request.path_params["index"])
    if not index.isdigit() or int(index) >= len(events):
        return _not_found(f"span {found.get('spanId')} has {len(events)} events; no event {index}")
    attributes = decode_attributes(events[int(index)].get("attributes"))
    if S.BODY not in attributes:
        return _not_found(f"event {index} of span {found.get('spanId')} holds no body")
    encoding = str(attributes.get(S.BODY_ENCODING, "utf-8"))
    try:
        body = decode_body(str(attributes[S.BODY]), encoding)
    except ValueError:
        return JSONResponse({"error": f"event {index}'s body is not valid {encoding}"}, status_code=422)
    if encoding == "base64":
        name = f"body-{found.get('spanId')}-{index}.bin"
        return Response(
            body,
            media_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return Response(body, media_type="text/plain; charset=utf-8")


async def _one_span(request: Request) -> dict[str, Any] | Response:
    trace_id = _api_trace_id(request)
    if not isinstance(trace_id, str):
        return trace_id
    span_id = str(request.path_params["span_id"]).lower()
    if not _SPAN_ID.fullmatch(span_id):
        return JSONResponse({"error": "a span id is 16 hex digits"}, status_code=400)
    line = await run_in_threadpool(state_of(request).store.span_line, trace_id, span_id)
    spans = [] if line is None else _spans_of(exact_loads(line))
    if not spans:
        return _not_found(f"no span {span_id} in trace {trace_id}")
    span: dict[str, Any] = spans[0]
    return span


_SPAN_ID = re.compile(r"[0-9a-f]{16}")


async def store_failed(request: Request, exc: Exception) -> Response:
    """The answer of any route to a read that failed in the database (a dropped connection, a pool
    that stayed busy): 503."""
    return _unavailable(request, exc)


def _api_trace_id(request: Request) -> str | Response:
    """The API route's trace id, or the answer to give: 400 for a bad id."""
    trace_id = trace_id_of(request)
    if trace_id is None:
        return JSONResponse({"error": "a trace id is 32 hex digits"}, status_code=400)
    return trace_id


def _not_found(what: str) -> Response:
    return JSONResponse({"error": what}, status_code=404)


def _decoded(body: bytearray, request: Request, limit: int) -> list[SpanRow]:
    raw: bytes | bytearray | None = None
    try:
        raw = decompress(body, request.headers.get("content-encoding", ""), limit)
        return decode_request(raw, request.headers.get("content-type", ""))
    except BadRequestError as exc:
        message, status = str(exc), exc.status
    # Raised anew, out of the except block and without the request: the thread pool's worker keeps
    # the last exception it passed on until its next call, and with it every frame of its
    # traceback, the decoded request (hundreds of MiB) among their variables.
    del body, raw
    raise BadRequestError(message, status)


def _stored(store: Any, rows: list[SpanRow], large: bool) -> None:
    """``rows`` added to ``store``, then, after a large request, the memory its decoding freed given back."""
    try:
        store.add(rows)
    finally:
        rows.clear()
        if large:
            release_memory()


def _unavailable(request: Request, exc: BaseException) -> Response:
    warn_once(f"server-store-{type(exc).__name__}", f"server: the database failed: {type(exc).__name__}: {exc}")
    message = f"the database is unavailable ({type(exc).__name__}); retry later"
    if request.url.path == "/v1/traces":
        return otlp_error(request, message, 503)
    return JSONResponse({"error": message}, status_code=503, headers={"Retry-After": "5"})


def otlp_error(request: Request, message: str, status: int, close: bool = False) -> Response:
    """An OTLP/HTTP error answer: a ``google.rpc.Status`` in the request's encoding; ``close``: the request's
    body was not read to its end, so the connection is closed after the answer (``Connection: close``)
    instead of being kept for a next request that the rest of the body would precede."""
    # UNAVAILABLE: try again; UNAUTHENTICATED; DEADLINE_EXCEEDED; INVALID_ARGUMENT: never
    code = {503: 14, 401: 16, 408: 4}.get(status, 3)
    headers = {"Connection": "close"} if close else None
    if request.headers.get("content-type", "").split(";", 1)[0].strip().lower() == "application/json":
        return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)
    try:  # googleapis-common-protos, which OpenTelemetry's OTLP exporters depend on
        from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]
    except ImportError:
        return Response(message.encode(), status_code=status, media_type="text/plain", headers=headers)
    return Response(
        Status(code=code, message=message).SerializeToString(),
        status_code=status,
        media_type="application/x-protobuf",
        headers=headers,
    )


def _spans_of(document: Any) -> list[Any]:
    return [
        span
        for resource_spans in document.get("resourceSpans", ())
        for scope_spans in resource_spans.get("scopeSpans", ())
        for span in scope_spans.get("spans", ())
    ]
