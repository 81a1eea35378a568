"""The socket patches: raw TCP connects and DNS lookups made outside an instrumented client.

Shared by ``agenttrace.instrumentors.socket.SocketInstrumentor`` and by ``@run`` (see
agenttrace._capture.activation), which installs it without importing ``opentelemetry.instrumentation``.
What is recorded is described in ``agenttrace.instrumentors.socket`` and docs/instrumentors.md.
"""

from __future__ import annotations

import socket as _socket
import threading
from collections.abc import Callable
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode

from agenttrace._capture import record
from agenttrace._core.runtime import runtime
from agenttrace._core.scope import current_scope
from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.EVENT_DNS

__all__ = ["SocketAdapter", "socket_adapter"]

_DNS_FUNCTIONS = ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr")


def _common(name: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {S.KIND: "call", S.SCHEMA: S.SCHEMA_VERSION, S.CALL_LIBRARY: "socket"}
    record.add_place(attributes, current_scope())
    return attributes


def _record(name: str, attributes: dict[str, Any], event: str, payload: dict[str, Any], call: Callable[[], Any]) -> Any:
    try:
        span = runtime.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
    except Exception as exc:  # noqa: BLE001 - never break the agent
        record.internal_error("socket", exc)
        return call()
    token = record.enter_call("agenttrace")
    try:
        result = call()
    except BaseException as exc:
        span.add_event(event, payload)
        span.add_event(
            S.EVENT_ERROR,
            {S.ERROR_TYPE: record.qualified_name(exc), S.ERROR_MESSAGE: str(exc), S.ERROR_PHASE: "request"},
        )
        span.set_attribute("error.type", record.qualified_name(exc))
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        span.end()
        raise
    finally:
        record.exit_call(token)
    try:
        if event == S.EVENT_DNS:
            payload[S.DNS_ANSWER] = _answer(result)
        span.add_event(event, payload)
    except Exception as exc:  # noqa: BLE001 - the result goes back untouched
        record.internal_error("socket", exc)
    span.end()
    return result


def _answer(result: Any) -> str:
    import json

    if isinstance(result, list):  # getaddrinfo
        return json.dumps([[int(f), int(t), int(p), c, list(a)] for f, t, p, c, a in result])
    return json.dumps(result, default=list)


class SocketAdapter:
    """Patches ``socket`` connects and lookups; one per process (:func:`socket_adapter`)."""

    def __init__(self) -> None:
        self._originals: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def install(self) -> None:
        """Patch the socket functions (idempotent)."""
        with self._lock:
            if self._originals is None:
                self._patch()

    def _patch(self) -> None:
        originals: dict[str, Any] = {name: getattr(_socket, name) for name in _DNS_FUNCTIONS}
        originals["connect"] = _socket.socket.connect
        originals["connect_ex"] = _socket.socket.connect_ex
        self._originals = originals

        def dns(name: str) -> Callable[..., Any]:
            original = originals[name]

            def lookup(*args: Any, **kw: Any) -> Any:
                if not record.capturing():
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
                if sock.family not in (_socket.AF_INET, _socket.AF_INET6) or not record.capturing():
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

    def uninstall(self) -> None:
        """Put the original functions back (idempotent)."""
        with self._lock:
            originals = self._originals
            if originals is None:
                return
            self._originals = None
            for name in _DNS_FUNCTIONS:
                setattr(_socket, name, originals[name])
            _socket.socket.connect = originals["connect"]  # type: ignore[method-assign]
            _socket.socket.connect_ex = originals["connect_ex"]  # type: ignore[method-assign]

    @property
    def installed(self) -> bool:
        """True while the patches are on."""
        return self._originals is not None


_adapter = SocketAdapter()


def socket_adapter() -> SocketAdapter:
    """The process's socket adapter."""
    return _adapter
