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

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from agenttrace._socket_adapter import socket_adapter

__all__ = ["SocketInstrumentor"]


class SocketInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """OTel instrumentor recording raw socket connects and DNS lookups outside instrumented clients."""

    def instrumentation_dependencies(self) -> Collection[str]:
        """None: ``socket`` is in the standard library."""
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        socket_adapter().install()

    def _uninstrument(self, **kwargs: Any) -> None:
        socket_adapter().uninstall()
