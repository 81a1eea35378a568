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

from typing import TYPE_CHECKING

from agenttrace._capture.adapters import lazy_instrumentors

if TYPE_CHECKING:
    from agenttrace.instrumentors.socket.instrumentor import SocketInstrumentor

__all__ = ["SocketInstrumentor"]

__getattr__ = lazy_instrumentors(__name__, __all__)
