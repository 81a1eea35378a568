"""A stdlib HTTP server on 127.0.0.1 served from a daemon thread: the demo's and the tests' base."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["LoopbackServer"]

S = TypeVar("S", bound="LoopbackServer")


class LoopbackServer:
    """Owns ``self._server`` and the thread serving it; a context manager (start on enter)."""

    def __init__(self, server: ThreadingHTTPServer, name: str) -> None:
        self._server: Any = server  # subclasses hang counters on their server class
        self._thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self: S) -> S:
        """Serve in a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self: S) -> S:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
