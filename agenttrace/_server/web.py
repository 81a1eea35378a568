"""The routes people use: the web UI's pages (rendered by :mod:`.pages` and :mod:`.trace_view`), the
run page's parts and script, its delete button, and ``/healthz``."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agenttrace._format.usage import Prices
from agenttrace._server.context import MAX_OFFSET, state_of, trace_id_of
from agenttrace._server.listing import BadParameterError, listing_filter, query_of
from agenttrace._server.pages import PAGE_SIZE, render_index, render_not_found
from agenttrace._server.store import Store
from agenttrace._server.store.records import TraceSummary
from agenttrace._server.trace_view import (
    PART_BYTES,
    PART_SPANS,
    depths,
    render_diff,
    render_part,
    render_run_page,
    replay_of,
)

__all__ = [
    "SECURITY_HEADERS",
    "SecurityHeaders",
    "delete_form",
    "healthz",
    "index",
    "script",
    "trace_diff",
    "trace_page",
    "trace_part",
]

# On every answer: pages run only the server's own script file (no inline script, nothing from
# elsewhere), fetch only from the server, load nothing else (their only style is the inline
# sheet), no other site may frame them, and no answer is read as another type.
SECURITY_HEADERS = (
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
        b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
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
    """``GET /traces/{trace_id}``: the run page with the first part of its timeline."""
    state = state_of(request)
    trace_id = trace_id_of(request)
    summary = None if trace_id is None else await run_in_threadpool(state.store.trace, trace_id)
    if summary is None:
        return HTMLResponse(render_not_found(), status_code=404)
    return HTMLResponse(await run_in_threadpool(_run_page, state.store, summary, state.prices))


def _part(
    store: Store, summary: TraceSummary, after: tuple[int, str] | None, prices: Prices | None
) -> tuple[str, str | None]:
    """One part of the timeline as HTML, and the key of the part after it (None: the last)."""
    rows = store.span_lines(summary.trace_id, after, PART_SPANS, PART_BYTES)
    if not rows:
        return "", None
    html = render_part(summary, [line for _, _, line in rows], depths(store.span_outline(summary.trace_id)), prices)
    full = len(rows) >= PART_SPANS or sum(len(line) for _, _, line in rows) >= PART_BYTES
    start_ns, span_id, _ = rows[-1]
    return html, f"{start_ns}:{span_id}" if full else None


def _run_page(store: Store, summary: TraceSummary, prices: Prices | None) -> str:
    first, next_key = _part(store, summary, None, prices)
    runs = store.run_lines(summary.trace_id)
    recording = replay_of(runs, summary.trace_id)
    stored = recording is not None and store.trace(recording) is not None
    return render_run_page(
        summary, first, next_key, store.description, run_lines=runs, recording_stored=stored, prices=prices
    )


_AFTER = re.compile(r"(\d{1,20}):([0-9a-f]{16})")


async def trace_part(request: Request) -> Response:
    """``GET /traces/{trace_id}/part?after=START_NS:SPAN_ID``: the timeline's next part, for the run page's script."""
    state = state_of(request)
    trace_id = trace_id_of(request)
    found = _AFTER.fullmatch(request.query_params.get("after", ""))
    if trace_id is None or found is None:
        return JSONResponse(
            {"error": "after is START_NS:SPAN_ID (a span's start and its 16 hex digits)"}, status_code=400
        )
    summary = await run_in_threadpool(state.store.trace, trace_id)
    if summary is None:
        return JSONResponse({"error": f"no trace {trace_id}"}, status_code=404)
    after = (int(found.group(1)), found.group(2))
    html, next_key = await run_in_threadpool(_part, state.store, summary, after, state.prices)
    return JSONResponse({"html": html, "next": next_key})


async def trace_diff(request: Request) -> Response:
    """``GET /traces/{trace_id}/diff``: a replay compared with the recording it replayed, call by call."""
    state = state_of(request)
    store = state.store
    trace_id = trace_id_of(request)
    summary = None if trace_id is None else await run_in_threadpool(store.trace, trace_id)
    if trace_id is None or summary is None:
        return HTMLResponse(render_not_found(), status_code=404)
    recording_id = replay_of(await run_in_threadpool(store.run_lines, trace_id), trace_id)
    recording = None if recording_id is None else await run_in_threadpool(store.trace, recording_id)
    if recording is None:
        return HTMLResponse(render_not_found(), status_code=404)
    return HTMLResponse(await run_in_threadpool(_diff_page, store, recording, summary))


def _diff_page(store: Store, recording: TraceSummary, replay: TraceSummary) -> str:
    from agenttrace._server.trace_view import DIFF_MAX_SPANS

    if recording.spans + replay.spans > DIFF_MAX_SPANS:
        return render_diff(recording, replay, (), (), store.description)
    return render_diff(
        recording, replay, store.lines(recording.trace_id), store.lines(replay.trace_id), store.description
    )


_SCRIPT = (Path(__file__).parent / "static" / "trace.js").read_bytes()


async def script(request: Request) -> Response:
    """``GET /static/trace.js``: the run page's script (no key needed: it holds no data)."""
    return Response(_SCRIPT, media_type="text/javascript", headers={"Cache-Control": "max-age=3600"})


async def healthz(request: Request) -> Response:
    """``GET /healthz``: ``ok`` while the server runs, without a key."""
    return PlainTextResponse("ok")
