"""Serving a recorded WebSocket connection: which received frames are due, and the check of each sent one.

A received frame is delivered once the agent has sent as many data frames as had been sent when
it arrived in the recording (a frame recorded after the agent's k-th frame waits for the k-th
frame in replay; those recorded before any, at once). Frames recorded after the agent's close
frame are delivered when the agent closes. Each data frame the agent sends is compared with the
recorded frame at its place (JSON text frames as data, with the same field-level diff as HTTP
bodies); a difference is the session's decision: governance makes it the run's violation, relaxed
warns, and in both the recorded frames go on being served (a connection cannot go live midway).
"""

from __future__ import annotations

from collections import deque

from agenttrace._capture.filter import Filter
from agenttrace._capture.model import Exchange, WebSocketFrame
from agenttrace._capture.websocket import recorded_payload
from agenttrace._core.errors import ReplayMismatchError
from agenttrace._replay.matcher import body_differences

__all__ = ["FrameScript", "check_frames_servable"]


def check_frames_servable(exchange: Exchange) -> None:
    """Refuse a connection whose recorded frames were cut at the size limit."""
    if exchange.extra.get("frames_truncated"):
        raise ReplayMismatchError(
            f"the recorded frames of {exchange.request.method} {exchange.request.url} were cut at max_body_bytes "
            f"({len(exchange.frames)} frames kept); they cannot be served as if whole. Record again with a "
            "larger AGENTTRACE_MAX_BODY_BYTES."
        )


class FrameScript:
    """The recorded frames of one connection, served in order as the agent sends its own."""

    def __init__(self, exchange: Exchange, rules: Filter, library: str, label: str) -> None:
        self.library = library
        self.label = label  # "GET ws://host/path", for messages
        self._rules = rules
        self._sent = [f for f in exchange.frames if f.direction == "sent" and f.opcode != "close"]
        due: list[tuple[int, bool, WebSocketFrame]] = []
        sent, closed = 0, False
        for frame in exchange.frames:
            if frame.direction == "sent":
                if frame.opcode == "close":
                    closed = True
                else:
                    sent += 1
            else:
                due.append((sent, closed, frame))
        self._due = deque(due)
        self.sent = 0  # data frames the agent has sent
        self.closing = False  # the agent sent its close frame

    def due(self) -> list[WebSocketFrame]:
        """The received frames to deliver now, in recorded order."""
        out: list[WebSocketFrame] = []
        while self._due:
            after, after_close, _ = self._due[0]
            if not self.closing and (after_close or after > self.sent):
                break
            out.append(self._due.popleft()[2])
        return out

    def close_sent(self) -> list[WebSocketFrame]:
        """The agent sent its close frame: every received frame left is due."""
        self.closing = True
        return self.due()

    def sent_frame(self, opcode: str, data: bytes, fin: bool) -> ReplayMismatchError | None:
        """The agent sent a data frame: None if it is the recorded one, else what governance raises
        (relaxed: None after a warning)."""
        index = self.sent
        self.sent += 1
        why = self._difference(index, opcode, data, fin)
        if not why:
            return None
        from agenttrace._replay.session import _serving

        session = _serving[0]
        if session is None:
            return None
        return session.frame_diverged(self.library, self.label, why)

    def _difference(self, index: int, opcode: str, data: bytes, fin: bool) -> str:
        number = index + 1
        if index >= len(self._sent):
            return (
                f"sent frame #{number} ({opcode}, {len(data)} bytes) is not in the recording, which holds "
                f"{len(self._sent)} sent frame(s)"
            )
        recorded = self._sent[index]
        if recorded.opcode != opcode:
            return (
                f"sent frame #{number} differs from the recording:\n"
                f"  opcode: recorded {recorded.opcode}, called {opcode}"
            )
        payload, _ = recorded_payload(opcode, data, self._rules)
        lines: list[str] = []
        if payload != recorded.data:
            lines = body_differences(recorded.data, payload)
        if recorded.fin != fin:
            lines.append(f"fin: recorded {recorded.fin}, called {fin}")
        if not lines:
            return ""
        return f"sent frame #{number} differs from the recording:\n" + "\n".join(f"  {line}" for line in lines)
