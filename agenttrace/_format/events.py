"""The flattened event form ``replay_events`` takes: one plain JSON-able dict per recorded item.

This is the documented, stable list form (docs/replay.md, "The event list"). Three kinds:

``{"kind": "run", ...}``
    One recorded ``@run``: ``trace_id``, ``span_id``, ``name``, ``start_ns``, ``parent_span_id``.
``{"kind": "call", ...}``
    One recorded I/O exchange: ``library``, ``ordinal``, ``step_path``, ``trace_id``,
    ``span_id``, ``request`` (``method``, ``url``, ``headers`` as ``[name, value]`` pairs,
    ``body`` + ``body_encoding``), and ``response`` (``status_code``, ``reason``,
    ``http_version``, ``headers``, ``body`` + ``body_encoding``, ``body_size``,
    ``body_sha256``, ``body_truncated``, ``chunk_sizes``, ``chunk_offsets_ns``, ``stream_end``)
    and/or ``error`` (``type``, ``message``, ``phase``); a WebSocket connection also has
    ``frames``, each ``direction``, ``opcode``, ``fin``, ``offset_ns`` and ``data`` + ``data_encoding``.
``{"kind": "entropy", ...}``
    One random draw: ``trace_id``, ``run_span_id``, ``index`` (its place among the run's
    draws), ``source`` (``urandom``, ``sysrandom``, ``random.seed``) and ``value`` (base64).

Every event carries ``schema_version``; a reader refuses versions it does not know rather than
guess. Bodies are UTF-8 text when they decode, else base64, exactly as the span events hold them.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from agenttrace._capture.model import Body, Exchange, RecordedError, RequestData, ResponseData, WebSocketFrame
from agenttrace._core.errors import ConfigurationError
from agenttrace._format.otlp_json import decode_body, encode_body
from agenttrace._format.schema import READABLE_SCHEMA_VERSIONS, SCHEMA_VERSION

__all__ = [
    "EVENT_KINDS",
    "call_event",
    "check_event",
    "entropy_event",
    "event_exchange",
    "exchange_of",
    "malformed_call",
    "run_event",
]

EVENT_KINDS = ("run", "call", "entropy")


def _headers(pairs: Sequence[tuple[str, str]]) -> list[list[str]]:
    return [[k, v] for k, v in pairs]


def call_event(exchange: Exchange) -> dict[str, Any]:
    """The list-form dict of one recorded call."""
    req = exchange.request
    body, encoding = encode_body(req.body)
    event: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": "call",
        "library": exchange.library,
        "ordinal": exchange.ordinal,
        "step_path": list(exchange.step_path),
        "trace_id": exchange.trace_id,
        "span_id": exchange.span_id,
        "request": {
            "method": req.method,
            "url": req.url,
            "headers": _headers(req.headers),
            "body": body,
            "body_encoding": encoding,
        },
    }
    resp = exchange.response
    if resp is not None:
        rbody, rencoding = encode_body(resp.body.data)
        event["response"] = {
            "status_code": resp.status_code,
            "reason": resp.reason,
            "http_version": resp.http_version,
            "headers": _headers(resp.headers),
            "body": rbody,
            "body_encoding": rencoding,
            "body_size": resp.body.size,
            "body_sha256": resp.body.sha256,
            "body_truncated": resp.body.truncated,
            "chunk_sizes": list(resp.chunk_sizes),
            "chunk_offsets_ns": list(resp.chunk_offsets_ns),
            "stream_end": resp.stream_end,
        }
    if exchange.error is not None:
        err = exchange.error
        event["error"] = {"type": err.type, "message": err.message, "phase": err.phase}
    if exchange.extra:
        event["extra"] = dict(exchange.extra)
    if exchange.frames:
        event["frames"] = [_frame_event(frame) for frame in exchange.frames]
    return event


def _frame_event(frame: WebSocketFrame) -> dict[str, Any]:
    data, encoding = encode_body(frame.data)
    return {
        "direction": frame.direction,
        "opcode": frame.opcode,
        "fin": frame.fin,
        "offset_ns": frame.offset_ns,
        "data": data,
        "data_encoding": encoding,
    }


def run_event(trace_id: str, span_id: str, name: str, start_ns: int, parent_span_id: str = "") -> dict[str, Any]:
    """The list-form dict of one recorded run."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "run",
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": parent_span_id,
        "name": name,
        "start_ns": start_ns,
    }


def entropy_event(trace_id: str, run_span_id: str, index: int, source: str, value: bytes) -> dict[str, Any]:
    """The list-form dict of one recorded random draw."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "entropy",
        "trace_id": trace_id,
        "run_span_id": run_span_id,
        "index": index,
        "source": source,
        "value": base64.b64encode(value).decode("ascii"),
    }


def check_event(event: Any, where: str) -> str:
    """Validate the envelope of one list-form event; return its kind or raise ConfigurationError."""
    if not isinstance(event, Mapping):
        raise ConfigurationError(f"{where}: expected an event object (dict), got {type(event).__name__}")
    version = event.get("schema_version")
    if version not in READABLE_SCHEMA_VERSIONS:
        readable = ", ".join(str(v) for v in sorted(READABLE_SCHEMA_VERSIONS))
        raise ConfigurationError(
            f"{where}: schema_version {version!r} is not one this release reads (expected {readable}); "
            "upgrade agenttrace or re-export the trace"
        )
    kind = event.get("kind")
    if kind not in EVENT_KINDS:
        raise ConfigurationError(f"{where}: kind {kind!r} is not one of {', '.join(EVENT_KINDS)}")
    return str(kind)


def _pairs(value: Any) -> tuple[tuple[str, str], ...]:
    return tuple([(str(k), str(v)) for k, v in (value or ())])


def _text_body(text: Any, encoding: Any) -> bytes:
    if type(text) is str and type(encoding) is str and encoding == "utf-8":
        return text.encode("utf-8")
    return decode_body(str(text), str(encoding), strict=True)


def malformed_call(where: str, exc: Exception) -> ConfigurationError:
    """The ConfigurationError for a call event :func:`event_exchange` cannot build."""
    detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
    return ConfigurationError(
        f"{where}: malformed call event ({detail}); expected request.method, request.url and a "
        "response.status_code or an error, as agenttrace.load_events() produces"
    )


def event_exchange(event: Mapping[str, Any], where: str) -> Exchange:
    """The :class:`Exchange` of a list-form call event; ConfigurationError says what is wrong."""
    try:
        return exchange_of(event)
    except (KeyError, TypeError, ValueError) as exc:
        raise malformed_call(where, exc) from None


def exchange_of(event: Mapping[str, Any]) -> Exchange:
    """:func:`event_exchange` raising KeyError, TypeError or ValueError (see :func:`malformed_call`)."""
    req = event["request"]
    method = str(req["method"]).upper()
    url = str(req["url"])
    get = req.get
    headers = _pairs(get("headers"))
    request = RequestData(method, url, headers, _text_body(get("body", ""), get("body_encoding", "utf-8")))
    response = None
    resp = event.get("response")
    if resp is not None:
        get = resp.get
        data = _text_body(get("body", ""), get("body_encoding", "utf-8"))
        body = Body(
            data,
            int(get("body_size", len(data))),
            str(get("body_sha256") or hashlib.sha256(data).hexdigest()),
            bool(get("body_truncated", False)),
        )
        response = ResponseData(
            int(resp["status_code"]),
            _pairs(get("headers")),
            body,
            str(get("reason", "")),
            str(get("http_version", "HTTP/1.1")),
            tuple(map(int, get("chunk_sizes", ()))),
            tuple(map(int, get("chunk_offsets_ns", ()))),
            str(get("stream_end", "complete")),
        )
    error = None
    err = event.get("error")
    if err is not None:
        error = RecordedError(str(err["type"]), str(err.get("message", "")), str(err.get("phase", "request")))
    if response is None and error is None:
        raise ValueError("a call needs a 'response' or an 'error'")
    get = event.get
    extra = get("extra")
    return Exchange(
        str(get("library", "")),
        int(get("ordinal", 0)),
        tuple(map(str, get("step_path", ()))),
        request,
        response,
        error,
        str(get("trace_id", "")),
        str(get("span_id", "")),
        {str(k): str(v) for k, v in extra.items()} if extra else {},
        tuple(
            WebSocketFrame(
                str(f["direction"]),
                str(f["opcode"]),
                _text_body(f.get("data", ""), f.get("data_encoding", "utf-8")),
                bool(f.get("fin", True)),
                int(f.get("offset_ns", 0)),
            )
            for f in get("frames", ())
        ),
    )
