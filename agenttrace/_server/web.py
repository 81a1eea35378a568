"""The routes people use: the web UI's two pages (rendered by :mod:`.pages`) and ``/healthz``."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agenttrace._format.files import spans_of_lines
from agenttrace._server.context import MAX_OFFSET, state_of, trace_id_of
from agenttrace._server.pages import PAGE_SIZE, render_index, render_not_found, render_trace

__all__ = ["SECURITY_HEADERS", "SecurityHeaders", "healthz", "index", "trace_page"]

# On every answer: pages run no script and load nothing from elsewhere (their only style is the
# inline sheet), no other site may frame them, and no answer is read as another type.
SECURITY_HEADERS = (
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
)


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every HTTP answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


async def index(request: Request) -> Response:
    """``GET /?page=``: the traces, PAGE_SIZE a page, most recent first."""
    try:
        page = min(max(int(request.query_params.get("page", "1")), 1), MAX_OFFSET // PAGE_SIZE)
    except ValueError:
        page = 1
    store = state_of(request).store
    found = await run_in_threadpool(store.traces, PAGE_SIZE + 1, (page - 1) * PAGE_SIZE)
    base_url = str(request.base_url).rstrip("/")
    prices = state_of(request).prices
    html = render_index(found[:PAGE_SIZE], page, len(found) > PAGE_SIZE, store.description, base_url, prices=prices)
    return HTMLResponse(html)


async def trace_page(request: Request) -> Response:
    """``GET /traces/{trace_id}``: one trace as a tree of runs, steps and calls."""
    store = state_of(request).store
    trace_id = trace_id_of(request)
    summary = None if trace_id is None else await run_in_threadpool(store.trace, trace_id)
    if trace_id is None or summary is None:
        return HTMLResponse(render_not_found(), status_code=404)
    lines = await run_in_threadpool(store.lines, trace_id)
    spans = await run_in_threadpool(spans_of_lines, lines, f"trace {trace_id}")
    prices = state_of(request).prices
    return HTMLResponse(await run_in_threadpool(render_trace, summary, spans, store.description, prices))


async def healthz(request: Request) -> Response:
    """``GET /healthz``: ``ok`` while the server runs, without a key."""
    return PlainTextResponse("ok")
