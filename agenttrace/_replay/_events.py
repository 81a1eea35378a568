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
    and/or ``error`` (``type``, ``message``, ``phase``).
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

from .._errors import ConfigurationError
from .._model import Body, Exchange, RecordedError, RequestData, ResponseData
from .._schema import READABLE_SCHEMA_VERSIONS, SCHEMA_VERSION

__all__ = [
    "EVENT_KINDS",
    "call_event",
    "check_event",
    "entropy_event",
    "event_exchange",
    "run_event",
]

EVENT_KINDS = ("run", "call", "entropy")


def _encode(data: bytes) -> tuple[str, str]:
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def _decode(text: str, encoding: str) -> bytes:
    if encoding == "base64":
        return base64.b64decode(text, validate=True)
    if encoding != "utf-8":
        raise ValueError(f"body_encoding {encoding!r} is not 'utf-8' or 'base64'")
    return text.encode("utf-8")


def _headers(pairs: Sequence[tuple[str, str]]) -> list[list[str]]:
    return [[k, v] for k, v in pairs]


def call_event(exchange: Exchange) -> dict[str, Any]:
    """The list-form dict of one recorded call."""
    req = exchange.request
    body, encoding = _encode(req.body)
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
        rbody, rencoding = _encode(resp.body.data)
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
    return event


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


def event_exchange(event: Mapping[str, Any], where: str) -> Exchange:
    """The :class:`Exchange` of a list-form call event; ConfigurationError says what is wrong."""
    try:
        req = event["request"]
        request = RequestData(
            method=str(req["method"]).upper(),
            url=str(req["url"]),
            headers=_pairs(req.get("headers")),
            body=_decode(str(req.get("body", "")), str(req.get("body_encoding", "utf-8"))),
        )
        response = None
        resp = event.get("response")
        if resp is not None:
            data = _decode(str(resp.get("body", "")), str(resp.get("body_encoding", "utf-8")))
            body = Body(
                data=data,
                size=int(resp.get("body_size", len(data))),
                sha256=str(resp.get("body_sha256") or hashlib.sha256(data).hexdigest()),
                truncated=bool(resp.get("body_truncated", False)),
            )
            response = ResponseData(
                status_code=int(resp["status_code"]),
                headers=_pairs(resp.get("headers")),
                body=body,
                reason=str(resp.get("reason", "")),
                http_version=str(resp.get("http_version", "HTTP/1.1")),
                chunk_sizes=tuple(int(n) for n in resp.get("chunk_sizes", ())),
                chunk_offsets_ns=tuple(int(n) for n in resp.get("chunk_offsets_ns", ())),
                stream_end=str(resp.get("stream_end", "complete")),
            )
        error = None
        err = event.get("error")
        if err is not None:
            error = RecordedError(
                type=str(err["type"]), message=str(err.get("message", "")), phase=str(err.get("phase", "request"))
            )
        if response is None and error is None:
            raise ValueError("a call needs a 'response' or an 'error'")
        return Exchange(
            library=str(event.get("library", "")),
            ordinal=int(event.get("ordinal", 0)),
            step_path=tuple(str(s) for s in event.get("step_path", ())),
            request=request,
            response=response,
            error=error,
            trace_id=str(event.get("trace_id", "")),
            span_id=str(event.get("span_id", "")),
            extra={str(k): str(v) for k, v in (event.get("extra") or {}).items()},
        )
    except (KeyError, TypeError, ValueError) as exc:
        detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ConfigurationError(
            f"{where}: malformed call event ({detail}); expected request.method, request.url and a "
            "response.status_code or an error, as agenttrace.load_events() produces"
        ) from None
