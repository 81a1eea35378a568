"""What every route reaches through its request: the server's state (the store, the keys, the
limits), kept on the application, and the trace id of the request's path."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import anyio
    from starlette.requests import Request

    from agenttrace._format.usage import Prices
    from agenttrace._server.store import Store

__all__ = ["MAX_OFFSET", "ServerState", "state_of", "trace_id_of"]

MAX_OFFSET = 2**62  # rows skipped by a listing: beyond any store, within every database's integers
_TRACE_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class ServerState:
    """The application's state, as ``request.app.state.agenttrace``."""

    store: Store
    keys: tuple[bytes, ...]  # the API keys clients may send; none: no authentication
    max_request_bytes: int  # largest OTLP request body, after decompression
    ingesting: anyio.Semaphore  # OTLP requests read, decoded and stored at once
    request_timeout: float = 30.0  # seconds a request body may stall before it is answered 408
    prices: Prices | None = None  # the price table of the pages' costs (None: the bundled one)


def state_of(request: Request) -> ServerState:
    """The state of the application ``request`` came to."""
    state: ServerState = request.app.state.agenttrace
    return state


def trace_id_of(request: Request) -> str | None:
    """The ``{trace_id}`` of the request's path in lower case, or None if it is not 32 hex digits."""
    text = str(request.path_params["trace_id"]).lower()
    return text if _TRACE_ID.fullmatch(text) else None
