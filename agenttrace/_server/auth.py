"""The API-key check: :func:`guarded` puts a route behind it.

A client sends a key as ``Authorization: Bearer KEY`` (what AgentTrace's exporter sends) or as the
password of HTTP Basic (what a browser asks for); a server without keys lets every request in.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from agenttrace._server.context import state_of

__all__ = ["Endpoint", "guarded"]

Endpoint = Callable[[Request], Awaitable[Response]]


def guarded(endpoint: Endpoint) -> Endpoint:
    """``endpoint`` behind the key check (the answer is 401 without a key the server knows)."""

    async def checked(request: Request) -> Response:
        keys = state_of(request).keys
        if not keys and not _loopback_host(request.headers.get("host", "")):
            # Without keys the server listens on loopback only; a page of another site could still
            # reach it through a name that resolves to 127.0.0.1 (DNS rebinding): only the loopback
            # names a browser on this machine uses are served.
            return PlainTextResponse("AgentTrace: unknown Host; use http://127.0.0.1 or http://localhost", 421)
        if not _allowed(request, keys):
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


def _loopback_host(header: str) -> bool:
    """True when a Host header names this machine's loopback (with any port)."""
    host = header.strip().lower()
    if host.startswith("["):  # [::1]:port
        host = host[1 : host.find("]")] if "]" in host else ""
    else:
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refused(request: Request) -> Response:
    if request.url.path == "/v1/traces":
        from agenttrace._server.api import otlp_error

        # In the request's own encoding (protobuf, or JSON), as OTLP clients expect.
        answer = otlp_error(request, "missing or unknown API key; send Authorization: Bearer <key>", 401)
        answer.headers["WWW-Authenticate"] = 'Bearer realm="agenttrace"'
        return answer
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
