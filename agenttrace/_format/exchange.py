"""The one decoder from a recorded call span (OTLP JSON) to the :class:`Exchange` it recorded.

Replay, ``agenttrace show``, ``agenttrace diff`` and the server read call spans through
:func:`exchange_from_span`; the flattened list form (``load_events``) is this exchange encoded
again by :func:`agenttrace._format.events.call_event`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from agenttrace._capture.model import Body, Exchange, RecordedError, RequestData, ResponseData, WebSocketFrame
from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as _EVENT_REQUEST
from agenttrace._format.exactjson import fast_loads
from agenttrace._format.otlp_json import decode_attributes, decode_body

__all__ = ["BodyMismatchError", "HeaderCache", "exchange_from_span", "header_pairs", "websocket_frames"]

HeaderCache = dict[str, tuple[tuple[str, str], ...]]


class BodyMismatchError(ValueError):
    """A recorded body does not match its recorded size or SHA-256 (the file was changed after it was written)."""


_HEADER_CACHE_LIMIT = 4096

# The schema's names as module globals: a large recording's load reads each of them once per call.
_BODY = S.BODY
_BODY_ENCODING = S.BODY_ENCODING
_BODY_FILTERED = S.BODY_FILTERED
_BODY_SHA256 = S.BODY_SHA256
_BODY_SIZE = S.BODY_SIZE
_BODY_TRUNCATED = S.BODY_TRUNCATED
_CALL_LIBRARY = S.CALL_LIBRARY
_CALL_ORDINAL = S.CALL_ORDINAL
_CALL_STEP_PATH = S.CALL_STEP_PATH
_ERROR_MESSAGE = S.ERROR_MESSAGE
_ERROR_PHASE = S.ERROR_PHASE
_ERROR_TYPE = S.ERROR_TYPE
_EVENT_ERROR = S.EVENT_ERROR
_EVENT_REQUEST = S.EVENT_REQUEST
_EVENT_RESPONSE = S.EVENT_RESPONSE
_HTTP_HEADERS = S.HTTP_HEADERS
_HTTP_METHOD = S.HTTP_METHOD
_HTTP_REASON = S.HTTP_REASON
_HTTP_STATUS = S.HTTP_STATUS
_HTTP_URL = S.HTTP_URL
_HTTP_VERSION = S.HTTP_VERSION
_KIND = S.KIND
_SERVED_SPAN_ID = S.SERVED_SPAN_ID
_SERVED_TRACE_ID = S.SERVED_TRACE_ID
_STREAM_CHUNK_OFFSETS = S.STREAM_CHUNK_OFFSETS
_STREAM_CHUNK_SIZES = S.STREAM_CHUNK_SIZES
_STREAM_END = S.STREAM_END
_PAYLOAD_EVENTS = frozenset({S.EVENT_REQUEST, S.EVENT_RESPONSE, S.EVENT_ERROR, S.EVENT_WEBSOCKET})


def exchange_from_span(
    span: Mapping[str, Any],
    attributes: Mapping[str, Any] | None = None,
    *,
    to_int: Callable[[Any], int] = int,
    headers: HeaderCache | None = None,
    verify: bool = False,
) -> Exchange:
    """Rebuild the :class:`Exchange` a call span recorded; ValueError (or KeyError, TypeError) says what is wrong.

    ``attributes`` are the span's attributes when the caller has decoded them already; ``to_int``
    turns JSON numbers into integers (see :func:`~agenttrace._format.otlp_json.decode_value`);
    ``headers`` caches parsed header lists across the spans of one recording, where the same
    lists repeat call after call. A call a replay served, whose body lives in the recording it
    was served from, has ``extra["served_from"]`` set to ``"<trace id>/<span id>"``. ``verify``
    checks each body against its recorded size and SHA-256 (:class:`BodyMismatchError` otherwise).
    """
    attrs = decode_attributes(span.get("attributes"), to_int) if attributes is None else attributes
    if attrs.get(_KIND) != "call":
        raise ValueError(f"span {span.get('spanId', '?')} is not an AgentTrace call span ({_KIND} != 'call')")
    events: dict[Any, dict[str, Any]] = {}
    for event in span.get("events", ()):
        name = event.get("name")
        if name in _PAYLOAD_EVENTS:  # not the entropy draws: their reader decodes them
            events[name] = decode_attributes(event.get("attributes"), to_int)
    req = events.get(_EVENT_REQUEST)
    if req is None:
        raise ValueError(f"call span {span.get('spanId', '?')} has no {_EVENT_REQUEST} event")
    cache: HeaderCache = {} if headers is None else headers
    get = req.get
    int(get(_BODY_SIZE, 0))  # a request's size is not kept, but must be a number
    request = RequestData(
        str(get(_HTTP_METHOD, attrs.get("http.request.method", ""))).upper(),
        str(get(_HTTP_URL, attrs.get("url.full", ""))),
        _headers(get(_HTTP_HEADERS), cache),
        _body_bytes(req, _EVENT_REQUEST if verify else None),
    )
    response: ResponseData | None = None
    resp = events.get(_EVENT_RESPONSE)
    if resp is not None:
        get = resp.get
        data = _body_bytes(resp, _EVENT_RESPONSE if verify else None)
        sizes = get(_STREAM_CHUNK_SIZES) or ()
        offsets = get(_STREAM_CHUNK_OFFSETS) or ()
        response = ResponseData(
            int(get(_HTTP_STATUS, 0)),
            _headers(get(_HTTP_HEADERS), cache),
            Body(
                data,
                int(get(_BODY_SIZE, len(data))),
                str(get(_BODY_SHA256, "")) or hashlib.sha256(data).hexdigest(),
                bool(get(_BODY_TRUNCATED, False)),
            ),
            str(get(_HTTP_REASON, "")),
            str(get(_HTTP_VERSION, "HTTP/1.1")),
            tuple(map(int, sizes)),
            tuple(map(int, offsets)),
            str(get(_STREAM_END, "complete")),
        )
    error: RecordedError | None = None
    err = events.get(_EVENT_ERROR)
    if err is not None:
        get = err.get
        error = RecordedError(
            str(get(_ERROR_TYPE, "")), str(get(_ERROR_MESSAGE, "")), str(get(_ERROR_PHASE, "request"))
        )
    extra: dict[str, str] = {}
    if req.get(_BODY_FILTERED):
        extra["request_body_filtered"] = "true"
    if resp is not None:
        if resp.get(_BODY_FILTERED):
            extra["response_body_filtered"] = "true"
        if resp.get(_SERVED_SPAN_ID) is not None:
            extra["served_from"] = f"{resp.get(_SERVED_TRACE_ID, '')}/{resp.get(_SERVED_SPAN_ID)}"
    frames: tuple[WebSocketFrame, ...] = ()
    ws = events.get(S.EVENT_WEBSOCKET)
    if ws is not None:
        frames = websocket_frames(ws, S.EVENT_WEBSOCKET if verify else None)
        if ws.get(_BODY_TRUNCATED):
            extra["frames_truncated"] = "true"
        if ws.get(_BODY_FILTERED):
            extra["frames_filtered"] = "true"
    step_path = attrs.get(_CALL_STEP_PATH)
    return Exchange(
        str(attrs.get(_CALL_LIBRARY, "")),
        int(attrs.get(_CALL_ORDINAL, -1)),
        tuple(map(str, step_path)) if step_path else (),
        request,
        response,
        error,
        str(span.get("traceId", "")),
        str(span.get("spanId", "")),
        extra,
        frames,
    )


def websocket_frames(attrs: Mapping[str, Any], verified_as: str | None = None) -> tuple[WebSocketFrame, ...]:
    """The frames of an ``agenttrace.websocket`` event (those whose payload the body holds, if it was cut)."""
    data = _body_bytes(attrs, verified_as)
    directions = attrs.get(S.WS_DIRECTIONS) or ()
    opcodes = attrs.get(S.WS_OPCODES) or ()
    fins = attrs.get(S.WS_FINS) or ()
    sizes = attrs.get(S.WS_SIZES) or ()
    offsets = attrs.get(S.WS_OFFSETS) or ()
    if not len(directions) == len(opcodes) == len(sizes):
        raise ValueError(
            f"its {S.EVENT_WEBSOCKET} event has {len(directions)} {S.WS_DIRECTIONS}, {len(opcodes)} "
            f"{S.WS_OPCODES} and {len(sizes)} {S.WS_SIZES}; expected one of each per frame"
        )
    frames: list[WebSocketFrame] = []
    at = 0
    for index, size in enumerate(map(int, sizes)):
        if at + size > len(data):
            break  # cut at max_body_bytes: the frames beyond are not kept
        frames.append(
            WebSocketFrame(
                str(directions[index]),
                str(opcodes[index]),
                data[at : at + size],
                bool(fins[index]) if index < len(fins) else True,
                int(offsets[index]) if index < len(offsets) else 0,
            )
        )
        at += size
    return tuple(frames)


def _body_bytes(attrs: Mapping[str, Any], verified_as: str | None = None) -> bytes:
    """The event's body; with ``verified_as`` (the event's name), checked against its recorded size and digest."""
    data = decode_body(attrs.get(_BODY, "") or "", attrs.get(_BODY_ENCODING, "utf-8"))
    if verified_as is not None and _BODY_SHA256 in attrs and not attrs.get(_BODY_TRUNCATED):
        # A cut body's digest is of bytes not kept: it is never served in governance anyway.
        recorded, actual = str(attrs[_BODY_SHA256]), hashlib.sha256(data).hexdigest()
        if recorded != actual:
            raise BodyMismatchError(
                f"the {_BODY} of its {verified_as} event does not match its {_BODY_SHA256} "
                f"(recorded {recorded or '(empty)'}, the body's is {actual})"
            )
        size = attrs.get(_BODY_SIZE)
        if size is not None and int(size) != len(data):
            raise BodyMismatchError(
                f"the {_BODY} of its {verified_as} event holds {len(data)} bytes but its {_BODY_SIZE} says {size}"
            )
    return data


def _headers(text: Any, cache: HeaderCache) -> tuple[tuple[str, str], ...]:
    if not text:
        return ()
    pairs = cache.get(text)
    if pairs is None:
        pairs = header_pairs(text)
        if len(cache) < _HEADER_CACHE_LIMIT:
            cache[text] = pairs
    return pairs  # shared between exchanges: tuples, never modified


def header_pairs(text: Any) -> tuple[tuple[str, str], ...]:
    """The ``(name, value)`` pairs of a recorded header list (a JSON array of ``[name, value]``)."""
    fast = fast_loads()
    if fast is not None and type(text) is str:
        # orjson parses a header list several times faster; its answer is used when every name
        # and value is a string, which is what json.loads would give for the same text.
        try:
            raw = fast(text)
        except ValueError:
            raw = None
        if type(raw) is list and all(
            type(pair) is list and len(pair) == 2 and type(pair[0]) is str and type(pair[1]) is str for pair in raw
        ):
            return tuple([(pair[0], pair[1]) for pair in raw])
    return tuple([(str(k), str(v)) for k, v in json.loads(text)])
