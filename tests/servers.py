"""A real loopback HTTP server for tests: stdlib, HTTP/1.1 keep-alive, 127.0.0.1, a free port.

Usage::

    from tests.servers import TestServer

    with TestServer() as server:
        httpx.get(server.url("/json?x=1"))

Routes (``GET`` or ``POST`` unless said otherwise):

``/json``                 echo: ``{"method", "path", "query", "headers", "body", "id"}``; ``id`` is random
``/gzip?size=N``          a JSON body of about N bytes, ``Content-Encoding: gzip``
``/compressed?encoding=E`` ``{"token": "tok-secret-1", "id": ...}`` encoded with E (gzip, br, zstd)
``/binary?size=N``        N bytes that are not UTF-8 (``application/octet-stream``)
``/sse?n=N&delay=S``      ``text/event-stream``, N events, one chunk each, S seconds apart (chunked)
``/chunks?n=N&size=B``    N raw chunks of B bytes each (chunked), for size/truncation tests
``/broken?n=N``           N SSE chunks, then the connection is cut mid-body
``/status/CODE``          an empty-ish response with that status code
``/slow?delay=S``         waits S seconds before answering (for timeouts)
``/redirect?to=PATH``     302 to PATH, with a ``Set-Cookie``
``/big?size=N``           N bytes of text with ``Content-Length``

``server.requests`` lists ``(method, path)`` of every request received, and
``server.connections`` counts accepted TCP connections (replay tests assert it stays 0).
"""

from __future__ import annotations

import gzip
import json
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from agenttrace._demo._loopback import LoopbackServer

__all__ = ["TestServer", "binary_payload"]


def binary_payload(size: int) -> bytes:
    """Deterministic bytes that are not valid UTF-8."""
    return bytes((0xFF, 0xFE, 0x00, 0x80)) * (size // 4) + b"\xff" * (size % 4)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stalls
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet: tests read the trace, not the server log."""

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        self._route(b"")

    def do_POST(self) -> None:
        self._route(self._body())

    def do_PUT(self) -> None:
        self._route(self._body())

    def do_DELETE(self) -> None:
        self._route(self._body())

    def _send(
        self, status: int, body: bytes, content_type: str = "application/json", extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _start_chunked(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.flush()

    def _route(self, body: bytes) -> None:
        self.server.requests.append((self.command, self.path))
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        path = parts.path
        if path == "/json":
            payload = {
                "method": self.command,
                "path": path,
                "query": query,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"),
                "id": uuid.uuid4().hex,
            }
            self._send(200, json.dumps(payload).encode())
        elif path == "/gzip":
            size = int(query.get("size", "2000"))
            text = json.dumps({"data": "x" * size, "id": uuid.uuid4().hex}).encode()
            self._send(200, gzip.compress(text), extra={"Content-Encoding": "gzip"})
        elif path == "/compressed":
            encoding = query.get("encoding", "gzip")
            text = json.dumps({"token": "tok-secret-1", "id": uuid.uuid4().hex}).encode()
            if encoding == "br":
                import brotli

                data = brotli.compress(text)
            elif encoding == "zstd":
                import zstandard

                data = zstandard.ZstdCompressor().compress(text)
            else:
                data = gzip.compress(text)
            self._send(200, data, extra={"Content-Encoding": encoding})
        elif path == "/binary":
            self._send(200, binary_payload(int(query.get("size", "1024"))), "application/octet-stream")
        elif path == "/big":
            self._send(200, b"a" * int(query.get("size", "1000")), "text/plain")
        elif path in ("/sse", "/broken"):
            n = int(query.get("n", "5"))
            delay = float(query.get("delay", "0"))
            self._start_chunked("text/event-stream")
            for i in range(n):
                if delay and i:
                    time.sleep(delay)
                self._chunk(f'data: {{"i": {i}, "id": "{uuid.uuid4().hex}"}}\n\n'.encode())
            if path == "/broken":
                # Announce a chunk, send half of it, and cut the connection.
                self.wfile.write(b"40\r\ndata: half")
                self.wfile.flush()
                self.close_connection = True
                return
            self._chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/chunks":
            n = int(query.get("n", "3"))
            size = int(query.get("size", "100"))
            self._start_chunked("text/plain")
            for i in range(n):
                self._chunk(bytes([97 + i % 26]) * size)
            self.wfile.write(b"0\r\n\r\n")
        elif path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            self._send(code, json.dumps({"status": code}).encode())
        elif path == "/slow":
            time.sleep(float(query.get("delay", "2")))
            self._send(200, b'{"slow": true}')
        elif path == "/redirect":
            self.send_response(302)
            self.send_header("Location", query.get("to", "/json"))
            self.send_header("Set-Cookie", "session=abc123; Path=/")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send(404, b'{"error": "no such route"}')


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    requests: list[tuple[str, str]]
    connections: int

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up early (timeouts, closed streams) are part of the tests: stay quiet."""

    def get_request(self) -> tuple[Any, Any]:
        conn = super().get_request()
        self.connections += 1
        return conn


class TestServer(LoopbackServer):
    """The loopback server; use as a context manager (``with TestServer() as s``) or start/stop."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        super().__init__(_Server(("127.0.0.1", 0), _Handler), "test-server")
        self._server.requests = []
        self._server.connections = 0

    def url(self, path: str) -> str:
        """Absolute URL of ``path`` on this server."""
        return self.base_url + path

    @property
    def requests(self) -> list[tuple[str, str]]:
        """``(method, path)`` of every request received so far."""
        return self._server.requests  # type: ignore[no-any-return]

    @property
    def connections(self) -> int:
        """Number of TCP connections accepted so far."""
        return int(self._server.connections)
