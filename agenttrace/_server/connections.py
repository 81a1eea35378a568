"""What uvicorn leaves open to a connection flood, closed: a deadline for a request's head, and a
bound on open connections that always lets a new one in.

uvicorn (0.55) closes a kept-alive connection idle for ``timeout_keep_alive`` seconds, but any byte
received restarts that wait, and nothing bounds the time a request's head takes to arrive (a
client trickling a header a byte at a time, or sending nothing after connecting, keeps its
connection for ever). ``limit_concurrency`` answers 503 to complete requests once that many
connections are open, so under a flood of incomplete ones ``/healthz`` would get 503 too; and
``backlog`` only sizes the kernel's queue of connections not yet accepted. Hence
:func:`guarded_protocol`, a subclass of the HTTP protocol uvicorn would use (h11's or
httptools'), which keeps two rules:

- **head deadline**: a request's head (request line and headers) must be complete within
  ``header_timeout`` seconds of its first byte, or of the connection opening; else the
  connection is closed. (A body that stalls is the ingest route's to answer 408; idle time
  between requests is uvicorn's ``timeout_keep_alive``.)
- **connection bound**: at most ``max_connections`` are open. One more arriving closes the
  longest-open connection that has no answer under way (an idle one, one still sending its
  request), so a flood cannot lock new clients, a load balancer's ``/healthz`` among them, out;
  the server says so once on stderr.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

from agenttrace._core.errors import warn_once

__all__ = ["guarded_protocol"]


def guarded_protocol(max_connections: int, header_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class, with the head deadline and the connection bound above."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    # Each open connection, oldest first: one server per process, so per class is per server.
    open_connections: OrderedDict[Any, None] = OrderedDict()

    class Guarded(AutoHTTPProtocol):  # type: ignore[valid-type,misc]  # a class chosen at import time
        _head_timer: asyncio.TimerHandle | None = None
        _seen: Any = None  # the request (uvicorn's cycle) last seen head-complete

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if len(open_connections) >= max_connections and not _evict_one(open_connections):
                transport.abort()  # every open connection is answering: this one waits its turn outside
                return
            open_connections[self] = None
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            open_connections.pop(self, None)
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._head_timer is None and not self._answering():
                self._arm()  # the first bytes of another request on a kept-alive connection
            super().data_received(data)
            cycle = getattr(self, "cycle", None)
            if cycle is not None and cycle is not self._seen:
                self._seen = cycle  # a head is complete: its body and answer are the route's
                self._disarm()

        def _answering(self) -> bool:
            """Whether a request of this connection has its head in and its answer not yet sent."""
            cycle = getattr(self, "cycle", None)
            return cycle is not None and not cycle.response_complete

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = asyncio.get_running_loop().call_later(header_timeout, self._head_expired)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_expired(self) -> None:
            self._head_timer = None
            if not self._answering():
                self.transport.close()

    def _evict_one(connections: OrderedDict[Any, None]) -> bool:
        for connection in connections:
            cycle = getattr(connection, "cycle", None)
            if cycle is None or not cycle.response_started or cycle.response_complete:
                warn_once(
                    "server-connection-bound",
                    f"server: {max_connections} connections are open (--max-connections); the longest-open ones "
                    "with no answer under way are closed to let new ones in",
                )
                del connections[connection]
                connection._disarm()
                connection.transport.abort()
                return True
        return False

    return Guarded
