"""The routes people use: the web UI's two pages (rendered by :mod:`.pages`), its delete button, and
``/healthz``."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agenttrace._format.files import spans_of_lines
from agenttrace._server.context import MAX_OFFSET, state_of, trace_id_of
from agenttrace._server.listing import BadParameterError, listing_filter, query_of
from agenttrace._server.pages import PAGE_SIZE, render_index, render_not_found, render_trace

__all__ = ["SECURITY_HEADERS", "SecurityHeaders", "delete_form", "healthz", "index", "trace_page"]

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
    """``GET /?name=&status=&...&before=``: the traces that match the filters (:mod:`.listing`),
    PAGE_SIZE a page, most recent first; ``page=`` (by offset) is still read."""
    try:
        page = min(max(int(request.query_params.get("page", "1")), 1), MAX_OFFSET // PAGE_SIZE)
    except ValueError:
        page = 1
    state = state_of(request)
    base_url = str(request.base_url).rstrip("/")
    params = request.query_params
    try:
        where = listing_filter(params)
    except BadParameterError as exc:
        html = render_index(
            [], page, "", state.store.description, base_url, prices=state.prices, params=params, error=str(exc)
        )
        return HTMLResponse(html, status_code=400)
    offset = 0 if where.before is not None else (page - 1) * PAGE_SIZE
    found = await run_in_threadpool(state.store.traces, PAGE_SIZE + 1, offset, where)
    shown = found[:PAGE_SIZE]
    after = query_of(params, before=shown[-1].cursor) if len(found) > PAGE_SIZE else ""
    html = render_index(shown, page, after, state.store.description, base_url, prices=state.prices, params=params)
    return HTMLResponse(html)


async def delete_form(request: Request) -> Response:
    """``POST /traces/{trace_id}/delete``: the pages' delete button; then back to the listing.

    Refused (403) unless the browser says the form is one of this server's pages: a page of
    another site could otherwise post it with the credentials the browser keeps for this one.
    """
    if not _same_origin(request):
        return PlainTextResponse(
            "AgentTrace: a trace is deleted from the server's own pages only (this request came from another "
            "site, or said neither Origin nor Sec-Fetch-Site); use DELETE /api/traces/{trace_id} with a key",
            status_code=403,
        )
    trace_id = trace_id_of(request)
    deleted = 0 if trace_id is None else await run_in_threadpool(state_of(request).store.delete, [trace_id])
    if not deleted:
        return HTMLResponse(render_not_found(), status_code=404)
    return RedirectResponse("/", status_code=303)


def _same_origin(request: Request) -> bool:
    """Whether the browser says ``request`` comes from a page of this server (its Host, any scheme,
    so that a TLS proxy in front changes nothing)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site == "same-origin"
    origin = request.headers.get("origin")
    if origin is None or "://" not in origin:
        return False  # no browser posts a form without one of the two; "null" is an opaque origin
    return origin.split("://", 1)[1].lower() == request.headers.get("host", "").lower()


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
