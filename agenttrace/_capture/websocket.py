"""A WebSocket connection's frames, recorded as one event of its call span.

The connection is one call (:func:`agenttrace._capture.record.begin`): its request and response
events hold the opening handshake. Every data frame (text, binary, continuation) and close frame
sent or received afterwards is kept here, in order, with its time after the handshake, and written
as one ``agenttrace.websocket`` event when the call ends (the connection closed, or its run ended):
parallel arrays of directions, opcodes, FIN bits, sizes and offsets, and the payloads one after
the other in ``agenttrace.body``. One event whatever the number of frames, so OpenTelemetry's
events-per-span limit never drops a frame. Ping and pong frames are not kept (keepalive timing
differs from run to run).

Text payloads pass the same redaction as HTTP bodies (secret JSON fields, then the call's
filter), and so do the frames a replay compares: :func:`recorded_payload`.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from agenttrace._capture import payload as _payload
from agenttrace._capture import record
from agenttrace._capture.filter import Filter
from agenttrace._capture.record import Call
from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.EVENT_WEBSOCKET

__all__ = ["OPCODES", "FrameLog", "recorded_payload"]

# RFC 6455 opcodes of the frames kept, by number.
OPCODES = {0: "continuation", 1: "text", 2: "binary", 8: "close"}


def recorded_payload(opcode: str, data: bytes, rules: Filter) -> tuple[bytes, bool]:
    """A frame's payload as recorded, and whether it changed: a text frame's secret JSON fields
    redacted and ``rules`` applied (binary and close frames are kept as they are)."""
    if opcode != "text" or not data:
        return data, False
    chunks, changed = _payload.redact_chunks([data], (), rules)
    return (b"".join(chunks), True) if changed else (data, False)


class FrameLog:
    """The frames of one connection being recorded (thread-safe: a sync client receives in a thread)."""

    __slots__ = ("_frames", "_lock", "_start_ns", "call")

    def __init__(self, call: Call) -> None:
        self.call = call
        self._lock = threading.Lock()
        self._frames: list[tuple[str, str, bool, bytes, int]] = []
        self._start_ns = time.monotonic_ns()
        call.closing = self._write

    def opened(self) -> None:
        """The opening handshake is over: frame offsets count from now."""
        self._start_ns = time.monotonic_ns()

    def add(self, direction: str, opcode: int, data: Any, fin: bool) -> None:
        """One frame ``sent`` or ``received``; control frames other than close are ignored."""
        name = OPCODES.get(int(opcode))
        if name is None:
            return
        frame = (direction, name, bool(fin), bytes(data), time.monotonic_ns() - self._start_ns)
        with self._lock:
            self._frames.append(frame)

    def _write(self) -> None:
        with self._lock:
            frames, self._frames = self._frames, []
        call = self.call
        recorded = [recorded_payload(opcode, data, call.rules) for _, opcode, _, data, _ in frames]
        payloads = [data for data, _ in recorded]
        attributes: dict[str, Any] = {
            S.WS_DIRECTIONS: tuple(f[0] for f in frames),
            S.WS_OPCODES: tuple(f[1] for f in frames),
            S.WS_FINS: tuple(f[2] for f in frames),
            S.WS_SIZES: tuple(len(p) for p in payloads),
            S.WS_OFFSETS: tuple(f[4] for f in frames),
        }
        if any(changed for _, changed in recorded):
            attributes[_payload.BODY_FILTERED] = True
        pending = record.body_attributes(attributes, b"".join(payloads), call.max_bytes)
        record.add_event(call.span, S.EVENT_WEBSOCKET, attributes, pending)
