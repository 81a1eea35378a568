"""Record raw TCP connects and DNS lookups made outside an instrumented client, as their own spans.

Usage::

    from agenttrace.instrumentors.socket import SocketInstrumentor

    SocketInstrumentor().instrument()

What an instrumented client (httpx, httpx2, urllib3) does inside its own call is part of that
call and is not recorded again; loopback AF_UNIX sockets and socket creation are never
recorded (asyncio needs them). Each recorded connect is a CLIENT span named ``connect`` with an
``agenttrace.connect`` event; each lookup a span named ``dns`` with an ``agenttrace.dns`` event
holding the answer. Patches ``socket.socket.connect``/``connect_ex``, ``socket.getaddrinfo``,
``gethostbyname``, ``gethostbyname_ex``, ``gethostbyaddr``. Code holding references bound
before instrumentation is not seen (replay's audit hook covers that case).
"""

from __future__ import annotations

import socket as _socket
from collections.abc import Callable, Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.trace import SpanKind, Status, StatusCode

from agenttrace import _capture
from agenttrace import _schema as S  # noqa: N812 - the schema's names read as S.EVENT_DNS
from agenttrace._runtime import runtime
from agenttrace._scope import current_scope

__all__ = ["SocketInstrumentor"]

_DNS_FUNCTIONS = ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr")


def _common(name: str) -> dict[str, Any]:
    scope = current_scope()
    attributes: dict[str, Any] = {S.KIND: "call", S.SCHEMA: S.SCHEMA_VERSION, S.CALL_LIBRARY: "socket"}
    if scope is not None:
        if scope.run is not None:
            attributes[S.CALL_ORDINAL] = scope.run.next_ordinal()
        if scope.step_path:
            attributes[S.STEP_NAME_ON_CALL] = scope.step_path[-1]
            attributes[S.CALL_STEP_PATH] = list(scope.step_path)
    return attributes


def _record(name: str, attributes: dict[str, Any], event: str, payload: dict[str, Any], call: Callable[[], Any]) -> Any:
    try:
        span = runtime.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
    except Exception as exc:  # noqa: BLE001 - never break the agent
        _capture.internal_error("socket", exc)
        return call()
    token = _capture.enter_call()
    try:
        result = call()
    except BaseException as exc:
        span.add_event(event, payload)
        span.add_event(
            S.EVENT_ERROR,
            {S.ERROR_TYPE: _capture.qualified_name(exc), S.ERROR_MESSAGE: str(exc), S.ERROR_PHASE: "request"},
        )
        span.set_attribute("error.type", _capture.qualified_name(exc))
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        span.end()
        raise
    finally:
        _capture.exit_call(token)
    try:
        if event == S.EVENT_DNS:
            payload[S.DNS_ANSWER] = _answer(result)
        span.add_event(event, payload)
    except Exception as exc:  # noqa: BLE001 - the result goes back untouched
        _capture.internal_error("socket", exc)
    span.end()
    return result


def _answer(result: Any) -> str:
    import json

    if isinstance(result, list):  # getaddrinfo
        return json.dumps([[int(f), int(t), int(p), c, list(a)] for f, t, p, c, a in result])
    return json.dumps(result, default=list)


class SocketInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """OTel instrumentor recording raw socket connects and DNS lookups outside instrumented clients."""

    _originals: dict[str, Any] | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        """None: ``socket`` is in the standard library."""
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        if self._originals is not None:
            return
        originals: dict[str, Any] = {name: getattr(_socket, name) for name in _DNS_FUNCTIONS}
        originals["connect"] = _socket.socket.connect
        originals["connect_ex"] = _socket.socket.connect_ex
        self._originals = originals

        def dns(name: str) -> Callable[..., Any]:
            original = originals[name]

            def lookup(*args: Any, **kw: Any) -> Any:
                if not _capture.capturing():
                    return original(*args, **kw)
                host = args[0] if args else kw.get("host", "")
                attributes = _common("dns")
                attributes["server.address"] = str(host)
                payload = {S.DNS_FUNCTION: name, S.DNS_HOST: str(host)}
                if name == "getaddrinfo" and len(args) > 1:
                    payload[S.DNS_PORT] = str(args[1])
                return _record("dns", attributes, S.EVENT_DNS, payload, lambda: original(*args, **kw))

            lookup.__wrapped__ = original  # type: ignore[attr-defined]
            return lookup

        def connect_wrapper(name: str) -> Callable[..., Any]:
            original = originals[name]

            def connect(sock: _socket.socket, address: Any) -> Any:
                if sock.family not in (_socket.AF_INET, _socket.AF_INET6) or not _capture.capturing():
                    return original(sock, address)
                attributes = _common("connect")
                host, port = (address[0], address[1]) if isinstance(address, tuple) else (str(address), 0)
                attributes["server.address"] = str(host)
                attributes["server.port"] = int(port)
                payload = {S.CONNECT_HOST: str(host), S.CONNECT_PORT: int(port)}
                return _record("connect", attributes, S.EVENT_CONNECT, payload, lambda: original(sock, address))

            connect.__wrapped__ = original  # type: ignore[attr-defined]
            return connect

        for name in _DNS_FUNCTIONS:
            setattr(_socket, name, dns(name))
        _socket.socket.connect = connect_wrapper("connect")  # type: ignore[method-assign]
        _socket.socket.connect_ex = connect_wrapper("connect_ex")  # type: ignore[method-assign]

    def _uninstrument(self, **kwargs: Any) -> None:
        originals = self._originals
        if originals is None:
            return
        for name in _DNS_FUNCTIONS:
            setattr(_socket, name, originals[name])
        _socket.socket.connect = originals["connect"]  # type: ignore[method-assign]
        _socket.socket.connect_ex = originals["connect_ex"]  # type: ignore[method-assign]
        self._originals = None
