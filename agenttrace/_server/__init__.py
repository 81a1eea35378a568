"""The self-hosted AgentTrace backend: OTLP/HTTP ingest, a store, a JSON API, a web UI, downloads.

``agenttrace server`` runs it (see :mod:`agenttrace._cli.server` and docs/server.md). The web
stack is Starlette on uvicorn, from the ``server`` extra, imported only here.

=========================================  ====================================================
``POST /v1/traces``                        OTLP/HTTP trace export (protobuf or JSON, gzip or not)
``GET /api/traces?limit=&offset=``         the traces, most recent first, as JSON
``GET /api/traces/{trace_id}``             one trace's summary and its spans (OTLP JSON)
``GET /api/traces/{trace_id}/download``    the trace as an OTLP JSON Lines file, replayable
``GET /``, ``GET /traces/{trace_id}``      the web UI
``GET /healthz``                           ``ok`` while the server runs
=========================================  ====================================================

With API keys configured, every route but ``/healthz`` needs one: ``Authorization: Bearer KEY``
(what AgentTrace's exporter sends), or HTTP Basic with the key as the password (what a browser
asks for).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agenttrace._core.errors import ConfigurationError
from agenttrace._core.warn import warn_once
from agenttrace._server.ingest import BadRequestError, decode_request, decompress
from agenttrace._server.store import Store

if TYPE_CHECKING:
    from starlette.responses import Response

__all__ = ["SERVER_HINT", "create_app", "web_stack"]

SERVER_HINT = "pip install 'agenttrace[server]'"
INGEST_CONCURRENCY = 2  # OTLP requests decoded and stored at once
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_MAX_OFFSET = 2**62  # rows skipped by a listing: beyond any store, within every database's integers


def web_stack() -> None:
    """Raise ConfigurationError with the install line if a package of the ``server`` extra is missing."""
    try:
        import jinja2  # noqa: F401 - the pages
        import starlette  # noqa: F401 - the application
        import uvicorn  # noqa: F401 - the HTTP server
    except ImportError as exc:
        raise ConfigurationError(
            f"the AgentTrace server needs its web stack ({exc.name} is not installed): {SERVER_HINT}"
        ) from None


def create_app(store: Store, api_keys: Sequence[str] = (), max_request_bytes: int = 64 * 2**20) -> Any:
    """The server's ASGI application over ``store``; ``api_keys`` empty means no authentication."""
    web_stack()
    import anyio
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    from agenttrace._format.files import exact_loads, spans_of_lines
    from agenttrace._server.pages import PAGE_SIZE, render_index, render_trace

    keys = [key.encode() for key in api_keys]

    def allowed(request: Request) -> bool:
        if not keys:
            return True
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        given = b""
        if scheme.lower() == "bearer":
            given = value.strip().encode()
        elif scheme.lower() == "basic":
            try:
                given = base64.b64decode(value.strip(), validate=True).partition(b":")[2]
            except (binascii.Error, ValueError):
                given = b""
        # Compared in constant time, against every key (no early exit on the first match).
        found = False
        for key in keys:
            found |= hmac.compare_digest(given, key)
        return found

    def refused(request: Request) -> Response:
        if request.url.path.startswith(("/v1/", "/api/")):
            return JSONResponse(
                {"error": "missing or unknown API key; send Authorization: Bearer <key>"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="agenttrace"'},
            )
        return PlainTextResponse(
            "AgentTrace: sign in with any user name and one of the server's API keys as the password.",
            status_code=401,
            headers={"WWW-Authenticate": 'Basic realm="agenttrace", charset="UTF-8"'},
        )

    def trace_id_of(request: Request) -> str | None:
        text = str(request.path_params["trace_id"]).lower()
        return text if _TRACE_ID.fullmatch(text) else None

    def api_trace_id(request: Request) -> str | Response:
        """The API route's trace id, or the answer to give: 400 for a bad id."""
        trace_id = trace_id_of(request)
        if trace_id is None:
            return JSONResponse({"error": "a trace id is 32 hex digits"}, status_code=400)
        return trace_id

    def not_found(what: str) -> JSONResponse:
        return JSONResponse({"error": what}, status_code=404)

    async def ingest(request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        declared = request.headers.get("content-length")
        too_big = f"the request body is over the server's limit of {max_request_bytes} bytes"
        if declared is not None and declared.isdigit() and int(declared) > max_request_bytes:
            return _otlp_error(request, too_big, 413)
        # At most INGEST_CONCURRENCY requests are read, inflated, decoded and stored at a time (the
        # body is read inside, so waiting requests hold no memory): a request costs a few times its
        # size while it is handled, and the rest wait their turn.
        async with ingesting:
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_request_bytes:
                    return _otlp_error(request, too_big, 413)
            try:
                rows = await run_in_threadpool(_decoded, body, request, max_request_bytes)
            except BadRequestError as exc:
                return _otlp_error(request, str(exc), exc.status)
            del body
            try:
                await run_in_threadpool(store.add, rows)
            except store.refused as exc:
                # The database refuses the data itself (a value out of its range): retrying cannot help.
                return _otlp_error(request, f"the database refused the spans ({type(exc).__name__}: {exc})", 400)
            except store.errors as exc:
                # 503: AgentTrace's exporter (and OpenTelemetry's) retries with backoff, then spools.
                return _unavailable(request, exc)
        if content_type.split(";", 1)[0].strip().lower() == "application/json":
            return JSONResponse({})
        # An empty ExportTraceServiceResponse: zero bytes in protobuf.
        return Response(b"", media_type="application/x-protobuf")

    async def api_traces(request: Request) -> Response:
        try:
            limit = int(request.query_params.get("limit", "100"))
            offset = int(request.query_params.get("offset", "0"))
        except ValueError:
            return JSONResponse({"error": "limit and offset must be integers"}, status_code=400)
        if not (1 <= limit <= 1000) or not 0 <= offset <= _MAX_OFFSET:
            return JSONResponse({"error": f"limit must be 1 to 1000 and offset 0 to {_MAX_OFFSET}"}, status_code=400)
        traces = await run_in_threadpool(store.traces, limit, offset)
        return JSONResponse({"traces": [t.as_json() for t in traces]})

    async def api_trace(request: Request) -> Response:
        trace_id = api_trace_id(request)
        if not isinstance(trace_id, str):
            return trace_id
        summary = await run_in_threadpool(store.trace, trace_id)
        if summary is None:
            return not_found(f"no trace {trace_id}")
        lines = await run_in_threadpool(store.lines, trace_id)
        spans = [span for line in lines for span in _spans_of(exact_loads(line))]
        return JSONResponse({**summary.as_json(), "otlp_spans": spans})

    async def download(request: Request) -> Response:
        trace_id = api_trace_id(request)
        if not isinstance(trace_id, str):
            return trace_id
        lines = await run_in_threadpool(store.lines, trace_id)
        if not lines:
            return not_found(f"no trace {trace_id}")
        return Response(
            "".join(line + "\n" for line in lines),
            media_type="application/x-ndjson",
            headers={"Content-Disposition": f'attachment; filename="trace-{trace_id}.jsonl"'},
        )

    async def index(request: Request) -> Response:
        try:
            page = min(max(int(request.query_params.get("page", "1")), 1), _MAX_OFFSET // PAGE_SIZE)
        except ValueError:
            page = 1
        found = await run_in_threadpool(store.traces, PAGE_SIZE + 1, (page - 1) * PAGE_SIZE)
        base_url = str(request.base_url).rstrip("/")
        html = render_index(found[:PAGE_SIZE], page, len(found) > PAGE_SIZE, store.description, base_url)
        return HTMLResponse(html)

    async def trace_page(request: Request) -> Response:
        trace_id = trace_id_of(request)
        summary = None if trace_id is None else await run_in_threadpool(store.trace, trace_id)
        if trace_id is None or summary is None:
            return HTMLResponse("<!doctype html><title>Not found</title><p>No such trace.</p>", status_code=404)
        lines = await run_in_threadpool(store.lines, trace_id)
        spans = await run_in_threadpool(spans_of_lines, lines, f"trace {trace_id}")
        return HTMLResponse(await run_in_threadpool(render_trace, summary, spans, store.description))

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    def guarded(endpoint: Any) -> Any:
        """``endpoint`` behind the key check (the answer is 401 without a key the server knows)."""

        async def checked(request: Request) -> Response:
            if not allowed(request):
                return refused(request)
            response: Response = await endpoint(request)
            return response

        return checked

    routes = [
        Route("/v1/traces", guarded(ingest), methods=["POST"]),
        Route("/api/traces", guarded(api_traces), methods=["GET"]),
        Route("/api/traces/{trace_id}", guarded(api_trace), methods=["GET"]),
        Route("/api/traces/{trace_id}/download", guarded(download), methods=["GET"]),
        Route("/", guarded(index), methods=["GET"]),
        Route("/traces/{trace_id}", guarded(trace_page), methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]

    async def store_failed(request: Request, exc: Exception) -> Response:
        return _unavailable(request, exc)

    ingesting = anyio.Semaphore(INGEST_CONCURRENCY)
    # A read that fails in the database (a dropped connection, a pool that stayed busy) is a 503 too.
    handlers: dict[Any, Any] = dict.fromkeys(store.errors, store_failed)
    return Starlette(routes=routes, exception_handlers=handlers)


def _decoded(body: bytearray, request: Any, limit: int) -> list[Any]:
    raw = decompress(bytes(body), request.headers.get("content-encoding", ""), limit)
    return decode_request(raw, request.headers.get("content-type", ""))


def _unavailable(request: Any, exc: BaseException) -> Response:
    warn_once(f"server-store-{type(exc).__name__}", f"server: the database failed: {type(exc).__name__}: {exc}")
    message = f"the database is unavailable ({type(exc).__name__}); retry later"
    if request.url.path == "/v1/traces":
        return _otlp_error(request, message, 503)
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=503, headers={"Retry-After": "5"})


def _otlp_error(request: Any, message: str, status: int) -> Response:
    """An OTLP/HTTP error answer: a ``google.rpc.Status`` in the request's encoding."""
    code = 14 if status == 503 else 3  # UNAVAILABLE: try again; INVALID_ARGUMENT: never
    from starlette.responses import JSONResponse, Response

    if request.headers.get("content-type", "").split(";", 1)[0].strip().lower() == "application/json":
        return JSONResponse({"code": code, "message": message}, status_code=status)
    try:  # googleapis-common-protos, which OpenTelemetry's OTLP exporters depend on
        from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]
    except ImportError:
        return Response(message.encode(), status_code=status, media_type="text/plain")
    return Response(
        Status(code=code, message=message).SerializeToString(), status_code=status, media_type="application/x-protobuf"
    )


def _spans_of(document: Any) -> list[Any]:
    return [
        span
        for resource_spans in document.get("resourceSpans", ())
        for scope_spans in resource_spans.get("scopeSpans", ())
        for span in scope_spans.get("spans", ())
    ]
