"""The self-hosted AgentTrace backend: OTLP/HTTP ingest, a store, a JSON API, a web UI, downloads.

``agenttrace server`` runs it (see :mod:`agenttrace._cli.server` and docs/server.md). The web
stack is Starlette on uvicorn, from the ``server`` extra, imported only here.

=========================================  ====================================================
``POST /v1/traces``                        OTLP/HTTP trace export (protobuf or JSON, gzip or not)
``GET /api/traces?limit=&before=&...``     the traces, most recent first, as JSON (filters: :mod:`.listing`)
``GET /api/traces/{trace_id}``             one trace's summary and its spans (OTLP JSON)
``DELETE /api/traces/{trace_id}``          delete a trace
``POST /traces/{trace_id}/delete``         the pages' delete button (same-origin requests only)
``GET /api/traces/{trace_id}/download``    the trace as an OTLP JSON Lines file, replayable
``GET /api/traces/{id}/spans/{span_id}``   one span (OTLP JSON); ``.../events/{n}/body`` one payload
``GET /``, ``GET /traces/{trace_id}``      the web UI (``/traces/{id}/part``, ``/diff``: the run page's)
``GET /healthz``                           ``ok`` while the server runs
=========================================  ====================================================

With API keys configured, every route but ``/healthz`` needs one: ``Authorization: Bearer KEY``
(what AgentTrace's exporter sends), or HTTP Basic with the key as the password (what a browser
asks for).

=================  ===========================================================================
:mod:`.api`        the ingest route and the JSON API; :mod:`.ingest` decodes OTLP requests
                   (their protobuf form through :mod:`.protobuf`); :mod:`.connections` bounds
                   the open connections and the time a request's head may take
:mod:`.web`        the pages' routes and ``/healthz``; :mod:`.pages` renders ``templates/``
:mod:`.listing`    the listing's search parameters, shared by the API and the pages
:mod:`.retention`  the background deletion of traces older than ``--retention``
:mod:`.auth`       the key check every guarded route goes through
:mod:`.context`    the state the routes reach through ``request.app.state``
:mod:`.store`      the store's interface and :func:`~.store.open_store`, which opens a
                   :mod:`.store.sqlite` or :mod:`.store.postgres` store; their SQL is
                   :mod:`.store.sql`, the rows they take and give :mod:`.store.records`
=================  ===========================================================================

The server reads traces through :mod:`agenttrace._format` alone (and takes ``ConfigurationError``
and ``warn_once`` from :mod:`agenttrace._core`): nothing of the SDK that records them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agenttrace._core.errors import ConfigurationError

if TYPE_CHECKING:
    from agenttrace._format.usage import Prices
    from agenttrace._server.store import Store

__all__ = ["SERVER_HINT", "create_app", "web_stack"]

SERVER_HINT = "pip install 'agenttrace[server]'"
INGEST_CONCURRENCY = 2  # OTLP requests decoded and stored at once


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


def create_app(
    store: Store,
    api_keys: Sequence[str] = (),
    max_request_bytes: int = 64 * 2**20,
    request_timeout: float = 30.0,
    prices: Prices | None = None,
) -> Any:
    """The server's ASGI application over ``store``; ``api_keys`` empty means no authentication.

    ``prices`` prices the LLM calls the pages show (default: the bundled table and AGENTTRACE_PRICES_FILE).
    """
    web_stack()  # the modules below import the web stack
    import anyio
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.routing import Route

    from agenttrace._server import api, web
    from agenttrace._server.auth import guarded
    from agenttrace._server.context import ServerState

    routes = [
        Route("/v1/traces", guarded(api.ingest), methods=["POST"]),
        Route("/api/traces", guarded(api.api_traces), methods=["GET"]),
        Route("/api/traces/{trace_id}", guarded(api.api_trace), methods=["GET"]),
        Route("/api/traces/{trace_id}", guarded(api.delete_trace), methods=["DELETE"]),
        Route("/api/traces/{trace_id}/download", guarded(api.download), methods=["GET"]),
        Route("/", guarded(web.index), methods=["GET"]),
        Route("/traces/{trace_id}", guarded(web.trace_page), methods=["GET"]),
        Route("/traces/{trace_id}/part", guarded(web.trace_part), methods=["GET"]),
        Route("/traces/{trace_id}/diff", guarded(web.trace_diff), methods=["GET"]),
        # The run page's "load the whole body": under /traces/, where a browser sends the page's Basic credentials.
        Route("/traces/{trace_id}/spans/{span_id}/events/{index}/body", guarded(api.api_body), methods=["GET"]),
        Route("/api/traces/{trace_id}/spans/{span_id}", guarded(api.api_span), methods=["GET"]),
        Route("/api/traces/{trace_id}/spans/{span_id}/events/{index}/body", guarded(api.api_body), methods=["GET"]),
        Route("/static/trace.js", web.script, methods=["GET"]),
        Route("/traces/{trace_id}/delete", guarded(web.delete_form), methods=["POST"]),
        Route("/healthz", web.healthz, methods=["GET"]),
    ]
    # A read that fails in the database (a dropped connection, a pool that stayed busy) is a 503 too.
    handlers: dict[Any, Any] = dict.fromkeys(store.errors, api.store_failed)
    app = Starlette(routes=routes, exception_handlers=handlers, middleware=[Middleware(web.SecurityHeaders)])
    app.state.agenttrace = ServerState(
        store=store,
        keys=tuple(key.encode() for key in api_keys),
        max_request_bytes=max_request_bytes,
        ingesting=anyio.Semaphore(INGEST_CONCURRENCY),
        request_timeout=request_timeout,
        prices=prices,
    )
    return app
