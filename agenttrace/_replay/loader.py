"""Read a recording into the list of events that ``replay_events`` takes, detecting its format.

Accepted, by content (never by file name):

* OTLP JSON Lines, one ``TracesData`` per line: the local trace store, a trace downloaded from
  the backend, an OTel Collector file exporter;
* one OTLP JSON document (``{"resourceSpans": [...]}``), possibly pretty-printed;
* a JSON array of list-form events (see :mod:`._events`), as ``load_events`` returns.

Everything that makes a file unusable is a :class:`ConfigurationError` naming the file, the
line and what was expected, raised while ``init()`` runs: never halfway through the agent.

``load_events`` returns the list-form events; ``load_recording`` (``init(replay_events_file=...)``)
builds each call's :class:`Exchange` straight from its span instead, equal to the one ``init``
builds from ``load_events``' event. JSON is parsed as :mod:`agenttrace._format.files` says (orjson,
the standard library where orjson refuses a line or may round an integer).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from agenttrace._capture.model import Exchange, RecordedError
from agenttrace._core.errors import ConfigurationError
from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.KIND
from agenttrace._format.events import (
    EVENT_KINDS,
    call_event,
    check_event,
    entropy_event,
    event_exchange,
    exchange_of,
    malformed_call,
    new_body,
    new_exchange,
    new_request,
    new_response,
    run_event,
)
from agenttrace._format.files import (
    SPANS_CUT,
    Documents,
    InexactNumberError,
    SplitError,
    collector_paused,
    exact_int,
    fast_loads,
    has_inexact,
)
from agenttrace._format.otlp_json import decode_value
from agenttrace._format.schema import READABLE_SCHEMA_VERSIONS, SCHEMA_VERSION

__all__ = ["check_events", "collector_paused", "load_events", "load_recording", "validate_events"]


def load_events(path: str | Path) -> list[dict[str, Any]]:
    """Read a trace file (OTLP JSON / JSON Lines, or a JSON event list) into replay events."""
    with collector_paused():
        return _load(Path(path), None)[0]


def load_recording(path: str | Path, source: str) -> tuple[list[dict[str, Any]], list[Exchange]]:
    """What ``init(replay_events_file=...)`` replays: the events and the exchange of each call.

    Equal to ``load_events`` followed by building each call event's exchange (labelled
    ``"<source>, event #<index>"`` as then), but a trace file's call spans become exchanges
    directly, without list-form call events in between: the events returned hold the runs and
    the entropy draws only (and, for a JSON event list, every event, calls too).
    """
    with collector_paused():
        events, exchanges = _load(Path(path), source)
        assert exchanges is not None
        return events, exchanges


def _load(file: Path, source: str | None) -> tuple[list[dict[str, Any]], list[Exchange] | None]:
    """``(events, None)`` for load_events; ``(events, exchanges)`` for load_recording (``source`` given)."""
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise ConfigurationError(f"replay file {file} does not exist; expected a trace file to replay") from None
    except IsADirectoryError:
        raise ConfigurationError(f"replay file {file} is a directory; expected a trace file to replay") from None
    except OSError as exc:
        raise ConfigurationError(f"replay file {file} cannot be read as UTF-8 text: {exc}") from None
    head = _first_character(file, data)
    if not head:
        raise ConfigurationError(f"replay file {file} is empty; expected OTLP JSON Lines or a JSON array of events")
    if head == "[":
        parsed = _event_array(file, data)
        if parsed and all(isinstance(d, Mapping) and "resourceSpans" in d for d in parsed):
            # An array of TracesData documents (what some tools write): same as JSON Lines.
            return _from_documents(file, ((1, d) for d in parsed), None, source)  # parsed exactly
        if source is None:
            return validate_events(parsed, str(file)), None
        events, exchanges = check_events(parsed, str(file))
        return events, exchanges
    if fast_loads() is not None:
        # Span by span (see Documents): the same result, or SplitError, or a ConfigurationError
        # that reading the file whole words as it always did.
        split = Documents(file, data, "replay file", "cannot be read as UTF-8 text", split_spans=True)
        try:
            return _from_documents(file, split, split, source)
        except (SplitError, ConfigurationError):
            pass
    documents = Documents(file, data, "replay file", "cannot be read as UTF-8 text")
    try:
        return _from_documents(file, documents, documents, source)
    except ConfigurationError:
        documents.check_text()  # bytes that are not UTF-8 are the first thing wrong with a file
        raise


# What str.lstrip() strips among ASCII characters; a file starting with any other character
# starts with it as text too (a non-ASCII first character is looked at as text).
_NOT_SPACE = re.compile(rb"[^ \t\n\r\x0b\x0c\x1c-\x1f]")


def _decoded(file: Path, data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"replay file {file} cannot be read as UTF-8 text: {exc}") from None
    # What Path.read_text (universal newlines) gave the JSON parser's line numbers.
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def _first_character(file: Path, data: bytes) -> str:
    """The file's first character that is not whitespace, or "" if there is none."""
    found = _NOT_SPACE.search(data)
    if found is None:
        return ""
    code = data[found.start()]
    if code < 0x80:
        return chr(code)
    return _decoded(file, data).lstrip()[:1]


def _event_array(file: Path, data: bytes) -> Any:
    """The JSON array of a list-form file: orjson when it reads it exactly, else the standard library."""
    fast = fast_loads()
    if fast is not None:
        try:
            parsed = fast(data)
        except ValueError:
            pass
        else:
            if not has_inexact(parsed):
                return parsed
    text = _decoded(file, data)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"replay file {file}, line {exc.lineno}: not valid JSON ({exc.msg}; truncated?); "
            "expected a JSON array of replay events"
        ) from None


def _exchange_from_span() -> Any:
    try:
        from agenttrace._capture.record import exchange_from_span
    except ImportError as exc:  # the capture side is not installed: say so instead of guessing
        raise ConfigurationError(f"this agenttrace install cannot decode recorded calls ({exc})") from None
    return exchange_from_span


class _Recording:
    """The run and call spans and entropy draws read so far, and what reading them shares."""

    def __init__(self, exchanges: bool) -> None:
        self.exchanges = exchanges  # calls as exchanges (load_recording), else as events
        self.runs: list[tuple[int, dict[str, Any]]] = []  # (start, event)
        self.entropy: list[dict[str, Any]] = []
        self.calls: list[tuple[str, int, Any]] = []  # (trace id, ordinal, event or exchange)
        self.headers: dict[str, tuple[tuple[str, str], ...]] = {}  # header lists seen, parsed
        self.decode: Any = None  # the long way, imported when first needed

    def mark(self) -> tuple[int, int, int]:
        return len(self.runs), len(self.entropy), len(self.calls)

    def undo(self, mark: tuple[int, int, int]) -> None:
        del self.runs[mark[0] :], self.entropy[mark[1] :], self.calls[mark[2] :]

    def add_call(
        self, where: str, span: Mapping[str, Any], attributes: Mapping[str, Any], to_int: Callable[[Any], int]
    ) -> None:
        """Add the call's exchange (when exchanges are built) or its list-form event."""
        if self.exchanges:
            exchange = _fast_call_exchange(span, attributes, self.headers, to_int)
            if exchange is not None:
                self.calls.append((exchange.trace_id, exchange.ordinal, exchange))
                return
        # Else the event load_events would return (its exchange is built from it, as init() does).
        event = _fast_call_event(span, attributes, self.headers, to_int)
        if event is not None:
            self.calls.append((event["trace_id"], event["ordinal"], event))
            return
        # Anything the fast path does not handle (base64 bodies, malformed spans) goes the long
        # way, which also says precisely what is wrong.
        if to_int is exact_int and has_inexact(span):
            raise InexactNumberError("a number orjson may have rounded")
        if self.decode is None:
            self.decode = _exchange_from_span()
        exchange = self.decode(span)
        served_from = exchange.extra.get("served_from")
        if served_from is not None:
            raise ConfigurationError(
                f"{where}: span {span.get('name', '')!r} is a call served by a replay (from recorded "
                f"call span {served_from}); a replay's trace does not repeat the bodies it served, "
                "so it cannot be replayed: replay the recording it was served from"
            )
        # An exchange is always built from the event, as init() builds it from load_events().
        self.calls.append((exchange.trace_id, exchange.ordinal, call_event(exchange)))


def _from_documents(
    file: Path,
    documents: Iterable[tuple[int, Any]],
    reader: Documents | None,
    source: str | None,
) -> tuple[list[dict[str, Any]], list[Exchange] | None]:
    """Read the documents' spans; ``reader`` (if documents come from one) re-reads lines and cut spans."""
    recording = _Recording(source is not None)
    first_seen: dict[str, int] = {}
    for number, document in documents:
        where = f"replay file {file}, line {number}"
        mark = recording.mark()
        cut = functools.partial(reader.cut_spans, number) if reader is not None else None
        try:
            seen = _read_document(where, document, recording, exact_int, cut)
        except InexactNumberError:
            # orjson may have rounded an integer beyond 64 bits: read the line as json reads it.
            recording.undo(mark)
            again = reader.exact(number) if reader is not None else None
            if again is None:
                seen = _read_document(where, document, recording, int, cut)
            else:
                seen = _read_document(where, again, recording, int, None)
        for trace_id, start in seen.items():
            first_seen[trace_id] = min(first_seen.get(trace_id, start), start)
    calls, runs, entropy = recording.calls, recording.runs, recording.entropy
    if not calls:
        raise ConfigurationError(
            f"replay file {file} holds no recorded calls (no span with {S.KIND}='call'); "
            "expected a trace recorded by agenttrace in which the agent made at least one call"
        )
    # Calls in causal order: trace by trace (as the runs started), then by ordinal within it.
    calls.sort(key=lambda item: (first_seen.get(item[0], 0), item[0], item[1]))
    runs.sort(key=lambda item: item[0])
    head = [event for _, event in runs]
    if source is None:
        return head + [event for _, _, event in calls] + entropy, None
    exchanges = [
        item if type(item) is Exchange else event_exchange(item, f"{source}, event #{len(head) + index}")
        for index, (_, _, item) in enumerate(calls)
    ]
    return head + entropy, exchanges


def _read_document(
    where: str,
    document: Any,
    recording: _Recording,
    to_int: Callable[[Any], int],
    cut: Callable[[], Iterator[Any]] | None,
) -> dict[str, int]:
    """Read one TracesData document's run and call spans; return when each trace was first seen.

    A document read span by span holds SPANS_CUT in place of the spans ``cut()`` yields.
    """
    if not isinstance(document, Mapping) or "resourceSpans" not in document:
        found = sorted(document)[:5] if isinstance(document, Mapping) else type(document).__name__
        raise ConfigurationError(
            f"{where}: expected an OTLP JSON TracesData object with 'resourceSpans', found {found}"
        )
    try:
        spans = [
            span
            for resource_spans in document["resourceSpans"]
            for scope_spans in resource_spans.get("scopeSpans", ())
            for span in scope_spans.get("spans", ())
        ]
    except (AttributeError, TypeError) as exc:
        raise ConfigurationError(
            f"{where}: malformed OTLP JSON ({exc}); expected resourceSpans[].scopeSpans[].spans[]"
        ) from None
    first_seen: dict[str, int] = {}
    exact = to_int is exact_int
    for span in _expanded(spans, cut):
        try:
            attributes = _attributes(span.get("attributes"), to_int)
            kind = attributes.get(_KIND)
            if kind not in ("run", "call"):
                continue  # the user's own spans, steps, other instrumentations: not ours to replay
            version = attributes.get(_SCHEMA, SCHEMA_VERSION)
            if version not in READABLE_SCHEMA_VERSIONS:
                readable = ", ".join(str(v) for v in sorted(READABLE_SCHEMA_VERSIONS))
                raise ConfigurationError(
                    f"{where}: span {span.get('name', '')!r} has {S.SCHEMA} {version!r}; this release "
                    f"reads version {readable}; upgrade agenttrace to replay it"
                )
            get = span.get
            # Span fields read as text (str()): a number there (not OTLP, but read) must be the one json reads.
            if exact and (
                type(get("traceId")) is float
                or type(get("spanId")) is float
                or type(get("parentSpanId")) is float
                or type(get("name")) is float
            ):
                raise InexactNumberError("an identifier or name written as a number orjson may have rounded")
            trace_id = str(span["traceId"]).lower()
            start = get("startTimeUnixNano", 0)
            start = int(start) if type(start) is str else to_int(start)
            earliest = first_seen.get(trace_id)
            if earliest is None or start < earliest:
                first_seen[trace_id] = start
            if kind == "run":
                run = _run_and_entropy(span, attributes, trace_id, recording.entropy, to_int)
                recording.runs.append((start, run))
                continue
            recording.add_call(where, span, attributes, to_int)
        except (ConfigurationError, InexactNumberError):
            raise
        except Exception as exc:  # noqa: BLE001 - any decoding failure is a bad file, said precisely
            raise ConfigurationError(
                f"{where}: span {span.get('name', '') if isinstance(span, Mapping) else ''!r} cannot be "
                f"decoded ({type(exc).__name__}: {exc}); expected an AgentTrace call span with "
                "agenttrace.request and agenttrace.response/error events"
            ) from None
    return first_seen


def _expanded(spans: list[Any], cut: Callable[[], Iterator[Any]] | None) -> Iterator[Any]:
    for span in spans:
        if span is SPANS_CUT and cut is not None:
            yield from cut()
        else:
            yield span


def _run_and_entropy(
    span: Mapping[str, Any],
    attributes: Mapping[str, Any],
    trace_id: str,
    entropy: list[dict[str, Any]],
    to_int: Callable[[Any], int] = int,
) -> dict[str, Any]:
    span_id = str(span["spanId"]).lower()
    for event in span.get("events", ()):
        if event.get("name") != S.EVENT_ENTROPY:
            continue
        values = _attributes(event.get("attributes"), to_int)
        sources = list(values.get(S.ENTROPY_SOURCES) or ())
        draws = list(values.get(S.ENTROPY_VALUES) or ())
        if len(sources) != len(draws):
            raise ValueError(f"{S.ENTROPY_SOURCES} and {S.ENTROPY_VALUES} differ in length")
        for index, (source, value) in enumerate(zip(sources, draws)):
            entropy.append(entropy_event(trace_id, span_id, index, str(source), base64.b64decode(value)))
    name = str(attributes.get(S.RUN_NAME, span.get("name", "")))
    start = to_int(span.get("startTimeUnixNano", 0))
    return run_event(trace_id, span_id, name, start, str(span.get("parentSpanId", "")))


def validate_events(events: Any, where: str) -> list[dict[str, Any]]:
    """Check a list of list-form events (from a file or ``init(replay_events=...)``); return it as dicts."""
    return check_events(events, where)[0]


def check_events(events: Any, where: str, *, keep_calls: bool = True) -> tuple[list[dict[str, Any]], list[Exchange]]:
    """:func:`validate_events`, also returning the :class:`Exchange` of each call event, in order.

    Checking a call event means building its exchange; the replay session takes these instead
    of building each one a second time (and needs no copy of the call events: ``keep_calls=False``
    leaves them out of the events returned).
    """
    if not isinstance(events, Sequence) or isinstance(events, (str, bytes)):
        raise ConfigurationError(f"{where}: expected a JSON array (list) of replay events, got {type(events).__name__}")
    out: list[dict[str, Any]] = []
    exchanges: list[Exchange] = []
    for index, event in enumerate(events):
        # check_event's test, inlined for the events load_events returns; anything else it words.
        if type(event) is dict and event.get("schema_version") in READABLE_SCHEMA_VERSIONS:
            kind = event.get("kind")
            if kind not in EVENT_KINDS:
                kind = check_event(event, f"{where}, event #{index}")
        else:
            kind = check_event(event, f"{where}, event #{index}")
        if kind == "call":
            try:
                exchanges.append(exchange_of(event))
            except (KeyError, TypeError, ValueError) as exc:
                raise malformed_call(f"{where}, event #{index}", exc) from None
            if not keep_calls:
                continue
        out.append(dict(event))
    if not exchanges:
        raise ConfigurationError(
            f"{where} holds no recorded calls (no event with kind='call'); "
            "expected events from a trace in which the agent made at least one call"
        )
    return out, exchanges


# --- the fast path from a call span to its event or exchange -------------------------------------
#
# ``call_event(exchange_from_span(span))`` decodes every body into bytes and every header list
# into tuples, only for ``call_event`` to encode them back into the same text and lists. For the
# spans AgentTrace writes (UTF-8 bodies, well-formed attributes) the event can be built from the
# span's strings directly, and so can the exchange ``event_exchange`` would build from that event;
# tests/replay/test_loader.py checks that the ways give equal events and exchanges. Any other
# span (a base64 body, a missing or malformed field) returns None and takes the long way.


def _attributes(items: Any, to_int: Callable[[Any], int] = exact_int) -> dict[str, Any]:
    """``decode_attributes(items)``, its three commonest cases (strings, integers, arrays of those)
    inlined in its order; integers as strings (as OTLP JSON writes them) are exact whatever parsed them.

    A plain loop over well-formed items (each a dict with a "value"): anything else, and any
    failure, is decoded again by :func:`_attributes_exactly`, which gives the result or raises
    the exception ``decode_attributes`` would.
    """
    out: dict[str, Any] = {}
    try:
        for kv in items:
            value = kv["value"]
            if "stringValue" in value:
                out[kv["key"]] = value["stringValue"]
            elif "intValue" in value:
                number = value["intValue"]
                out[kv["key"]] = int(number) if type(number) is str else to_int(number)
            else:
                out[kv["key"]] = _value(value, to_int)
    except Exception:  # noqa: BLE001 - the exact way decides, and raises what it raised
        return _attributes_exactly(items, to_int)
    return out


def _attributes_exactly(items: Any, to_int: Callable[[Any], int]) -> dict[str, Any]:
    """:func:`_attributes` of any items, each read in ``decode_attributes``' order (its value,
    then its key, then the value decoded), so a malformed one fails as it does there.

    A plain loop, not a comprehension: an assignment expression in a comprehension makes its
    variable a cell of the enclosing function, which ran twice as slowly.
    """
    out: dict[str, Any] = {}
    for kv in items or ():
        value = kv.get("value", _NO_VALUE)
        key = kv["key"]
        if "stringValue" in value:
            out[key] = value["stringValue"]
        elif "intValue" in value:
            number = value["intValue"]
            out[key] = int(number) if type(number) is str else to_int(number)
        else:
            out[key] = _value(value, to_int)
    return out


_NO_VALUE: Mapping[str, Any] = {}


def _value(value: Any, to_int: Callable[[Any], int]) -> Any:
    """decode_value of what is not a string or an integer; integers checked with ``to_int``."""
    if "arrayValue" in value and "boolValue" not in value and "doubleValue" not in value:
        out: list[Any] = []
        for item in value["arrayValue"].get("values", ()):
            if "stringValue" in item:
                out.append(item["stringValue"])
            elif "intValue" in item:
                number = item["intValue"]
                out.append(int(number) if type(number) is str else to_int(number))
            else:
                out.append(_value(item, to_int))
        return out
    if to_int is exact_int and has_inexact(value):
        raise InexactNumberError("a number orjson may have rounded")
    return decode_value(value)


def _fast_text(attrs: Mapping[str, Any]) -> str | None:
    """The text of a UTF-8 body, as ``exchange_from_span`` reads it; None for any other body."""
    if attrs.get(_BODY_ENCODING, "utf-8") == "base64":
        return None
    text = attrs.get(_BODY, "") or ""
    if type(text) is not str:
        return None
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: let the long way report it
            return None
    return text


def _fast_data(attrs: Mapping[str, Any]) -> bytes | None:
    """:func:`_fast_text`'s body as bytes, encoded once; a lone surrogate raises UnicodeEncodeError."""
    if attrs.get(_BODY_ENCODING, "utf-8") == "base64":
        return None
    text = attrs.get(_BODY, "") or ""
    return text.encode("utf-8") if type(text) is str else None


def _header_pairs(text: Any) -> tuple[tuple[str, str], ...]:
    """``headers_from_json``: orjson when every name and value it reads is a string, else ``json``."""
    fast = fast_loads()
    if fast is not None and type(text) is str:
        try:
            raw = fast(text)
        except ValueError:
            raw = None
        if type(raw) is list:
            pairs = tuple([tuple(pair) for pair in raw if type(pair) is list])
            if len(pairs) == len(raw) and all(
                len(pair) == 2 and type(pair[0]) is str and type(pair[1]) is str for pair in pairs
            ):
                return pairs
    return tuple([(str(k), str(v)) for k, v in json.loads(text)])


def _fast_headers(text: Any, seen: dict[str, tuple[tuple[str, str], ...]]) -> tuple[tuple[str, str], ...]:
    if not text:
        return ()
    pairs = seen.get(text)  # the same header lists repeat call after call: parse each once
    if pairs is None:
        pairs = _header_pairs(text)
        if len(seen) < 4096:
            seen[text] = pairs
    return pairs  # shared: never modified


def _call_span(span: Mapping[str, Any], to_int: Callable[[Any], int]) -> dict[Any, dict[str, Any]]:
    return {e.get("name"): _attributes(e.get("attributes"), to_int) for e in span.get("events", ())}


# The names the fast paths read, as globals (one lookup each instead of two).
_KIND, _SCHEMA = S.KIND, S.SCHEMA
_EVENT_REQUEST, _EVENT_RESPONSE, _EVENT_ERROR = S.EVENT_REQUEST, S.EVENT_RESPONSE, S.EVENT_ERROR
_BODY, _BODY_ENCODING, _BODY_SIZE = S.BODY, S.BODY_ENCODING, S.BODY_SIZE
_BODY_SHA256, _BODY_TRUNCATED, _BODY_FILTERED = S.BODY_SHA256, S.BODY_TRUNCATED, S.BODY_FILTERED
_HTTP_METHOD, _HTTP_URL, _HTTP_HEADERS = S.HTTP_METHOD, S.HTTP_URL, S.HTTP_HEADERS
_HTTP_STATUS, _HTTP_REASON, _HTTP_VERSION = S.HTTP_STATUS, S.HTTP_REASON, S.HTTP_VERSION
_CHUNK_SIZES, _CHUNK_OFFSETS, _STREAM_END = S.STREAM_CHUNK_SIZES, S.STREAM_CHUNK_OFFSETS, S.STREAM_END
_SERVED_SPAN_ID = S.SERVED_SPAN_ID
_CALL_LIBRARY, _CALL_ORDINAL, _CALL_STEP_PATH = S.CALL_LIBRARY, S.CALL_ORDINAL, S.CALL_STEP_PATH


def _fast_call_event(
    span: Mapping[str, Any],
    attrs: Mapping[str, Any],
    seen: dict[str, tuple[tuple[str, str], ...]],
    to_int: Callable[[Any], int] = exact_int,
) -> dict[str, Any] | None:
    """The list-form event of an AgentTrace call span, equal to the long way's; None if unsure."""
    try:
        events = _call_span(span, to_int)
        req = events.get(_EVENT_REQUEST)
        if req is None:
            return None
        req_text = _fast_text(req)
        if req_text is None:
            return None
        get = req.get
        int(get(_BODY_SIZE, 0))  # the long way reads it (and refuses what is not a number)
        pairs = _fast_headers(get(_HTTP_HEADERS), seen)
        event: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "kind": "call",
            "library": str(attrs.get(_CALL_LIBRARY, "")),
            "ordinal": int(attrs.get(_CALL_ORDINAL, -1)),
            "step_path": [str(s) for s in attrs.get(_CALL_STEP_PATH) or ()],
            "trace_id": str(span.get("traceId", "")),
            "span_id": str(span.get("spanId", "")),
            "request": {
                "method": str(get(_HTTP_METHOD, attrs.get("http.request.method", ""))),
                "url": str(get(_HTTP_URL, attrs.get("url.full", ""))),
                "headers": [[k, v] for k, v in pairs],
                "body": req_text,
                "body_encoding": "utf-8",
            },
        }
        resp = events.get(_EVENT_RESPONSE)
        if resp is not None:
            text = _fast_text(resp)
            if text is None or _SERVED_SPAN_ID in resp:
                return None
            get = resp.get
            data = text.encode("utf-8")
            pairs = _fast_headers(get(_HTTP_HEADERS), seen)
            event["response"] = {
                "status_code": int(get(_HTTP_STATUS, 0)),
                "reason": str(get(_HTTP_REASON, "")),
                "http_version": str(get(_HTTP_VERSION, "HTTP/1.1")),
                "headers": [[k, v] for k, v in pairs],
                "body": text,
                "body_encoding": "utf-8",
                "body_size": int(get(_BODY_SIZE, len(data))),
                "body_sha256": str(get(_BODY_SHA256, "")) or hashlib.sha256(data).hexdigest(),
                "body_truncated": bool(get(_BODY_TRUNCATED, False)),
                "chunk_sizes": [int(x) for x in get(_CHUNK_SIZES, ()) or ()],
                "chunk_offsets_ns": [int(x) for x in get(_CHUNK_OFFSETS, ()) or ()],
                "stream_end": str(get(_STREAM_END, "complete")),
            }
        err = events.get(_EVENT_ERROR)
        if err is not None:
            get = err.get
            event["error"] = {
                "type": str(get(S.ERROR_TYPE, "")),
                "message": str(get(S.ERROR_MESSAGE, "")),
                "phase": str(get(S.ERROR_PHASE, "request")),
            }
        extra: dict[str, str] = {}
        if req.get(_BODY_FILTERED):
            extra["request_body_filtered"] = "true"
        if resp is not None and resp.get(_BODY_FILTERED):
            extra["response_body_filtered"] = "true"
        if extra:
            event["extra"] = extra
        return event
    except InexactNumberError:
        raise
    except Exception:  # noqa: BLE001 - the long way decides, and names what is wrong
        return None


def _fast_call_exchange(
    span: Mapping[str, Any],
    attrs: Mapping[str, Any],
    seen: dict[str, tuple[tuple[str, str], ...]],
    to_int: Callable[[Any], int] = exact_int,
) -> Exchange | None:
    """``event_exchange(_fast_call_event(...))``, without the event; None if unsure (or no response nor error).

    Every check of ``_fast_call_event`` is made (in another order: any of them failing gives None);
    a body that is not UTF-8 text fails when encoded.
    """
    try:
        events = _call_span(span, to_int)
        req = events.get(_EVENT_REQUEST)
        if req is None:
            return None
        sent = _fast_data(req)
        if sent is None:
            return None
        get = req.get
        int(get(_BODY_SIZE, 0))  # the long way reads it (and refuses what is not a number)
        request = new_request(
            str(get(_HTTP_METHOD, attrs.get("http.request.method", ""))).upper(),
            str(get(_HTTP_URL, attrs.get("url.full", ""))),
            _fast_headers(get(_HTTP_HEADERS), seen),
            sent,
        )
        response = None
        resp = events.get(_EVENT_RESPONSE)
        if resp is not None:
            data = _fast_data(resp)
            if data is None or _SERVED_SPAN_ID in resp:
                return None
            get = resp.get
            pairs = _fast_headers(get(_HTTP_HEADERS), seen)
            sizes = get(_CHUNK_SIZES, ()) or ()
            offsets = get(_CHUNK_OFFSETS, ()) or ()
            response = new_response(
                int(get(_HTTP_STATUS, 0)),
                pairs,
                new_body(
                    data,
                    int(get(_BODY_SIZE, len(data))),
                    str(get(_BODY_SHA256, "")) or hashlib.sha256(data).hexdigest(),
                    bool(get(_BODY_TRUNCATED, False)),
                ),
                str(get(_HTTP_REASON, "")),
                str(get(_HTTP_VERSION, "HTTP/1.1")),
                tuple(map(int, sizes)) if sizes else (),
                tuple(map(int, offsets)) if offsets else (),
                str(get(_STREAM_END, "complete")),
            )
        error = None
        err = events.get(_EVENT_ERROR)
        if err is not None:
            get = err.get
            error = RecordedError(
                str(get(S.ERROR_TYPE, "")),
                str(get(S.ERROR_MESSAGE, "")),
                str(get(S.ERROR_PHASE, "request")),
            )
        elif response is None:
            return None  # the event's exchange says what is wrong, naming the event
        extra: dict[str, str] = {}
        if req.get(_BODY_FILTERED):
            extra["request_body_filtered"] = "true"
        if resp is not None and resp.get(_BODY_FILTERED):
            extra["response_body_filtered"] = "true"
        step_path = attrs.get(_CALL_STEP_PATH)
        return new_exchange(
            str(attrs.get(_CALL_LIBRARY, "")),
            int(attrs.get(_CALL_ORDINAL, -1)),
            tuple(map(str, step_path)) if step_path else (),
            request,
            response,
            error,
            str(span.get("traceId", "")),
            str(span.get("spanId", "")),
            extra,
        )
    except InexactNumberError:
        raise
    except Exception:  # noqa: BLE001 - the long way decides, and names what is wrong
        return None
