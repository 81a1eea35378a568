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

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agenttrace.instrumentors.socket.instrumentor import SocketInstrumentor

__all__ = ["SocketInstrumentor"]


def __getattr__(name: str) -> Any:
    # The instrumentor derives from BaseInstrumentor, whose import (opentelemetry.instrumentation)
    # costs tens of milliseconds; ``@run`` imports only the adapter beside it, so the class is
    # loaded on first use (PEP 562).
    if name in __all__:
        from agenttrace.instrumentors.socket import instrumentor

        return getattr(instrumentor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
