"""The API-key check: :func:`guarded` puts a route behind it.

A client sends a key as ``Authorization: Bearer KEY`` (what AgentTrace's exporter sends) or as the
password of HTTP Basic (what a browser asks for); a server without keys lets every request in.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable, Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from agenttrace._server.context import state_of

__all__ = ["Endpoint", "guarded"]

Endpoint = Callable[[Request], Awaitable[Response]]


def guarded(endpoint: Endpoint) -> Endpoint:
    """``endpoint`` behind the key check (the answer is 401 without a key the server knows)."""

    async def checked(request: Request) -> Response:
        if not _allowed(request, state_of(request).keys):
            return _refused(request)
        return await endpoint(request)

    return checked


def _allowed(request: Request, keys: Sequence[bytes]) -> bool:
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


def _refused(request: Request) -> Response:
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
