"""Loopback HTTP/1.1 server for the benchmark harness, run in its own process.

Started by the harness as ``python tests/perf/server.py [--trace-delay S]``; it prints
``PORT <n>`` on stdout once listening on 127.0.0.1. It lives in its own process so it never
competes with the client for the GIL, and it answers from bytes prepared at start-up so the
server's share of each round trip stays small and constant (about 30 µs) whatever the client.

Routes (keep-alive, Content-Length or chunked request bodies):

- ``POST /json?i=<k>``: a 2 KB JSON body (its ``id`` is ``k``), whatever the request body.
- ``GET /sse?n=<chunks>&gap_ms=<ms>``: ``text/event-stream``, one chunked-encoding chunk per
  event; the first event is sent at once, the next ones ``gap_ms`` apart.
- ``GET /big?i=<k>``: a 1 MiB JSON body.
- ``POST <anything>/v1/traces``: OTLP/HTTP receiver that answers 200 after ``--trace-delay``
  seconds (the slow backend of the export scenario).
- ``GET /stats``: JSON counts of the requests served per route, so the harness can prove that
  a replay made no real call.

Self-contained on purpose (standard library only, no import of the harness): the harness
runs it by path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import string
import sys
from collections import Counter
from typing import Any

__all__ = ["big_body", "json_body", "main"]

_HEADER_END = b"\r\n\r\n"
_MAX_HEADER = 64 * 1024


def _filler(size: int, seed: int) -> str:
    # Random printable text, so a compressor or an interning shortcut cannot shrink the
    # payload below its nominal size.
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + " "
    return "".join(rng.choice(alphabet) for _ in range(size))


def json_body(size: int, seed: int) -> bytes:
    """A JSON document of exactly ``size`` bytes whose ``id`` is 0 (the server patches it)."""
    skeleton = {"id": "000000", "object": "chat.completion", "model": "bench-1", "content": ""}
    empty = len(json.dumps(skeleton, separators=(",", ":")))
    skeleton["content"] = _filler(size - empty, seed)
    data = json.dumps(skeleton, separators=(",", ":")).encode()
    assert len(data) == size
    return data


def big_body() -> bytes:
    """A 1 MiB JSON document."""
    return json_body(1 << 20, 7)


_ID_SLOT = b'"id":"000000"'


def _with_id(body: bytes, ident: int) -> bytes:
    # Same length for every id (six digits), so Content-Length is stable.
    return body.replace(_ID_SLOT, b'"id":"%06d"' % (ident % 1_000_000), 1)


class _Server:
    def __init__(self, trace_delay: float) -> None:
        self.trace_delay = trace_delay
        self.small = json_body(2048, 2)
        self.big = big_body()
        self.counts: Counter[str] = Counter()

    def response(self, status: int, body: bytes, content_type: str, close: bool) -> bytes:
        reason = {200: "OK", 404: "Not Found"}.get(status, "OK")
        head = (
            f"HTTP/1.1 {status} {reason}\r\n"
            f"content-type: {content_type}\r\n"
            f"content-length: {len(body)}\r\n"
            f"connection: {'close' if close else 'keep-alive'}\r\n\r\n"
        )
        return head.encode("latin-1") + body


def _query(target: str) -> tuple[str, dict[str, str]]:
    path, _, query = target.partition("?")
    params: dict[str, str] = {}
    for part in query.split("&"):
        if part:
            key, _, value = part.partition("=")
            params[key] = value
    return path, params


class _Connection(asyncio.Protocol):
    """One keep-alive connection; requests are handled one after another, as a client sends them."""

    def __init__(self, server: _Server) -> None:
        self.server = server
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy = False  # a slow route (SSE, slow backend) is answering on this connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._drain()

    def _drain(self) -> None:
        while self.transport is not None and not self.transport.is_closing():
            parsed = self._next_request()
            if parsed is None:
                return
            method, target, headers, body = parsed
            if self._dispatch(method, target, headers, body):
                return  # an async route took over; it resumes draining when done

    def _next_request(self) -> tuple[str, str, dict[str, str], bytes] | None:
        end = self.buffer.find(_HEADER_END)
        if end < 0:
            if len(self.buffer) > _MAX_HEADER and self.transport is not None:
                self.transport.close()
            return None
        head = bytes(self.buffer[:end]).decode("latin-1")
        lines = head.split("\r\n")
        method, target, _ = [*lines[0].split(" ", 2), "", ""][:3]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        start = end + 4
        if headers.get("transfer-encoding", "").lower() == "chunked":
            decoded = self._dechunk(start)
            if decoded is None:
                return None
            body, consumed = decoded
        else:
            length = int(headers.get("content-length", "0") or 0)
            if len(self.buffer) - start < length:
                return None
            body, consumed = bytes(self.buffer[start : start + length]), start + length
        del self.buffer[:consumed]
        return method, target, headers, body

    def _dechunk(self, start: int) -> tuple[bytes, int] | None:
        pos, parts = start, list[bytes]()
        while True:
            eol = self.buffer.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(bytes(self.buffer[pos:eol]).split(b";")[0], 16)
            if len(self.buffer) < eol + 2 + size + 2:
                return None
            if size == 0:
                trailer = self.buffer.find(b"\r\n", eol + 2)
                return (b"".join(parts), trailer + 2) if trailer >= 0 else None
            parts.append(bytes(self.buffer[eol + 2 : eol + 2 + size]))
            pos = eol + 2 + size + 2

    def _dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes) -> bool:
        """Answer one request; True when an async route owns the connection until it is done."""
        assert self.transport is not None
        server = self.server
        path, params = _query(target)
        close = headers.get("connection", "").lower() == "close"
        if path == "/json":
            server.counts["json"] += 1
            out = _with_id(server.small, int(params.get("i", "0") or 0))
            self.transport.write(server.response(200, out, "application/json", close))
        elif path == "/big":
            server.counts["big"] += 1
            self.transport.write(server.response(200, server.big, "application/json", close))
        elif path == "/stats":
            data = json.dumps(dict(server.counts)).encode()
            self.transport.write(server.response(200, data, "application/json", close))
        elif path == "/sse":
            server.counts["sse"] += 1
            self._start(self._sse(int(params.get("n", "20")), float(params.get("gap_ms", "20")) / 1000, close))
            return True
        elif path.endswith("/v1/traces"):
            server.counts["traces"] += 1
            server.counts["traces_bytes"] += len(body)
            self._start(self._slow_ok(close))
            return True
        else:
            self.transport.write(server.response(404, b"{}", "application/json", close))
        if close:
            self.transport.close()
        return False

    def _start(self, work: Any) -> None:
        self.busy = True
        task = asyncio.get_running_loop().create_task(work)
        task.add_done_callback(self._resume)

    def _resume(self, _task: asyncio.Task[None]) -> None:
        self.busy = False
        self._drain()

    async def _sse(self, chunks: int, gap: float, close: bool) -> None:
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\nconnection: " + (b"close" if close else b"keep-alive") + b"\r\n\r\n"
        )
        for index in range(chunks):
            if index:
                await asyncio.sleep(gap)
            event = json.dumps({"index": index, "delta": {"content": f"token {index} "}}).encode()
            payload = b"data: " + event + b"\n\n"
            self.transport.write(b"%x\r\n%s\r\n" % (len(payload), payload))
        self.transport.write(b"0\r\n\r\n")
        if close:
            self.transport.close()

    async def _slow_ok(self, close: bool) -> None:
        await asyncio.sleep(self.server.trace_delay)
        if self.transport is not None and not self.transport.is_closing():
            # An empty ExportTraceServiceResponse is a valid (empty) protobuf message.
            self.transport.write(self.server.response(200, b"", "application/x-protobuf", close))
            if close:
                self.transport.close()


async def _serve(port: int, trace_delay: float) -> None:
    state = _Server(trace_delay)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(state), "127.0.0.1", port, backlog=512)
    bound = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"PORT {bound}\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    """Serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--trace-delay", type=float, default=0.0, help="seconds before /v1/traces answers")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args.port, args.trace_delay))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
