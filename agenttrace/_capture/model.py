"""The recorded exchange as Python data: what instrumentors capture and replay serves back.

Instrumentors turn a library's request/response into these; :mod:`agenttrace._capture.record` turns
them into span events, and :mod:`agenttrace._format.exchange` reads them back for replay. Keeping
one neutral model means httpx, httpx2 and urllib3 share capture, redaction, matching and
reconstruction.

Treat them as values: nothing changes one after it is made (``dataclasses.replace`` makes a
changed copy). They are not ``frozen``: a frozen dataclass sets each field through
``object.__setattr__``, which makes loading a large recording (four of these per call) about a
tenth slower; ``slots`` keeps them small.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Body", "Exchange", "RecordedError", "RequestData", "ResponseData", "WebSocketFrame"]


@dataclass(slots=True)
class Body:
    """Bytes of a body as recorded: possibly cut at the size limit (then ``truncated``)."""

    data: bytes
    size: int  # full size, even when data was cut
    sha256: str  # hex digest of the full body
    truncated: bool = False


@dataclass(slots=True)
class RequestData:
    """One outgoing request, as the transport saw it."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(slots=True)
class ResponseData:
    """One response: head, raw (still content-encoded) body, and stream chunk boundaries."""

    status_code: int
    headers: tuple[tuple[str, str], ...]
    body: Body
    reason: str = ""
    http_version: str = "HTTP/1.1"
    chunk_sizes: tuple[int, ...] = ()
    chunk_offsets_ns: tuple[int, ...] = ()
    stream_end: str = "complete"  # "complete" | "closed_early" | "error" | "not_read"


@dataclass(slots=True)
class RecordedError:
    """An exception raised by the transport (connect, timeout, TLS, read)."""

    type: str  # qualified class name, e.g. "httpx.ConnectTimeout"
    message: str
    phase: str = "request"  # "request" | "stream"


@dataclass(slots=True)
class WebSocketFrame:
    """One data or close frame of a WebSocket connection, as sent or received (payload after decompression)."""

    direction: str  # "sent" | "received"
    opcode: str  # "text" | "binary" | "continuation" | "close"
    data: bytes
    fin: bool = True
    offset_ns: int = 0  # after the opening handshake's end


@dataclass(slots=True)
class Exchange:
    """One recorded call: where it happened, what was sent, what came back."""

    library: str
    ordinal: int
    step_path: tuple[str, ...]
    request: RequestData
    response: ResponseData | None = None
    error: RecordedError | None = None
    trace_id: str = ""
    span_id: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    frames: tuple[WebSocketFrame, ...] = ()  # a WebSocket connection's frames, in order
