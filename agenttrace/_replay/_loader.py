"""Read a recording into the list of events that ``replay_events`` takes, detecting its format.

Accepted, by content (never by file name):

* OTLP JSON Lines, one ``TracesData`` per line: the local trace store, a trace downloaded from
  the backend, an OTel Collector file exporter;
* one OTLP JSON document (``{"resourceSpans": [...]}``), possibly pretty-printed;
* a JSON array of list-form events (see :mod:`._events`), as ``load_events`` returns.

Everything that makes a file unusable is a :class:`ConfigurationError` naming the file, the
line and what was expected, raised while ``init()`` runs: never halfway through the agent.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import _schema as S  # noqa: N812 - the schema's names read as S.KIND
from .._errors import ConfigurationError
from .._model import Exchange
from .._otlp_json import decode_attributes, decode_value
from .._schema import SCHEMA_VERSION
from .._traceio import iter_documents
from ._events import call_event, check_event, entropy_event, event_exchange, run_event

__all__ = ["check_events", "collector_paused", "load_events", "validate_events"]


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Suspend the cyclic garbage collector while a recording is turned into objects.

    Loading builds hundreds of thousands of small dicts, lists and tuples, none of them garbage;
    with the collector on, CPython runs a collection every 700 of them and the full ones re-walk
    everything loaded so far (more than half of the load time on a 10,000-call trace). On the
    way out the objects are moved to the permanent generation (``gc.freeze()``): the recording
    lives as long as the replay, and without it the next collections would walk all of it
    again (a quarter of a second at 10,000 calls). The previous state is restored, so a program
    that disabled the collector keeps it disabled.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def load_events(path: str | Path) -> list[dict[str, Any]]:
    """Read a trace file (OTLP JSON / JSON Lines, or a JSON event list) into replay events."""
    with collector_paused():
        return _load_events(path)


def _load_events(path: str | Path) -> list[dict[str, Any]]:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(f"replay file {file} does not exist; expected a trace file to replay") from None
    except IsADirectoryError:
        raise ConfigurationError(f"replay file {file} is a directory; expected a trace file to replay") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"replay file {file} cannot be read as UTF-8 text: {exc}") from None
    stripped = text.lstrip()
    if not stripped:
        raise ConfigurationError(f"replay file {file} is empty; expected OTLP JSON Lines or a JSON array of events")
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(
                f"replay file {file}, line {exc.lineno}: not valid JSON ({exc.msg}; truncated?); "
                "expected a JSON array of replay events"
            ) from None
        if data and all(isinstance(d, Mapping) and "resourceSpans" in d for d in data):
            # An array of TracesData documents (what some tools write): same as JSON Lines.
            return _from_documents(file, ((1, d) for d in data))
        return validate_events(data, str(file))
    return _from_documents(file, _documents(file, text))


def _documents(file: Path, text: str) -> Iterator[tuple[int, Any]]:
    return iter_documents(file, text, "replay file")


def _exchange_from_span() -> Any:
    try:
        from .._capture import exchange_from_span
    except ImportError as exc:  # the capture side is not installed: say so instead of guessing
        raise ConfigurationError(f"this agenttrace install cannot decode recorded calls ({exc})") from None
    return exchange_from_span


def _from_documents(file: Path, documents: Iterator[tuple[int, Any]]) -> list[dict[str, Any]]:
    runs: list[tuple[int, dict[str, Any]]] = []
    calls: list[dict[str, Any]] = []
    entropy: list[dict[str, Any]] = []
    first_seen: dict[str, int] = {}
    seen_headers: dict[str, list[tuple[str, str]]] = {}
    decode = None
    for number, document in documents:
        where = f"replay file {file}, line {number}"
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
        for span in spans:
            try:
                attributes = decode_attributes(span.get("attributes"))
                kind = attributes.get(S.KIND)
                if kind not in ("run", "call"):
                    continue  # the user's own spans, steps, other instrumentations: not ours to replay
                version = attributes.get(S.SCHEMA, S.SCHEMA_VERSION)
                if version not in S.READABLE_SCHEMA_VERSIONS:
                    readable = ", ".join(str(v) for v in sorted(S.READABLE_SCHEMA_VERSIONS))
                    raise ConfigurationError(
                        f"{where}: span {span.get('name', '')!r} has {S.SCHEMA} {version!r}; this release "
                        f"reads version {readable}; upgrade agenttrace to replay it"
                    )
                trace_id = str(span["traceId"]).lower()
                start = int(span.get("startTimeUnixNano", 0))
                first_seen[trace_id] = min(first_seen.get(trace_id, start), start)
                if kind == "run":
                    runs.append((start, _run_and_entropy(span, attributes, trace_id, entropy)))
                    continue
                event = _fast_call_event(span, attributes, seen_headers)
                if event is None:
                    # Anything the fast path does not handle (base64 bodies, malformed spans)
                    # goes the long way, which also says precisely what is wrong.
                    if decode is None:
                        decode = _exchange_from_span()
                    exchange = decode(span)
                    served_from = exchange.extra.get("served_from")
                    if served_from is not None:
                        raise ConfigurationError(
                            f"{where}: span {span.get('name', '')!r} is a call served by a replay (from recorded "
                            f"call span {served_from}); a replay's trace does not repeat the bodies it served, "
                            "so it cannot be replayed: replay the recording it was served from"
                        )
                    event = call_event(exchange)
                calls.append(event)
            except ConfigurationError:
                raise
            except Exception as exc:  # noqa: BLE001 - any decoding failure is a bad file, said precisely
                raise ConfigurationError(
                    f"{where}: span {span.get('name', '') if isinstance(span, Mapping) else ''!r} cannot be "
                    f"decoded ({type(exc).__name__}: {exc}); expected an AgentTrace call span with "
                    "agenttrace.request and agenttrace.response/error events"
                ) from None
    if not calls:
        raise ConfigurationError(
            f"replay file {file} holds no recorded calls (no span with {S.KIND}='call'); "
            "expected a trace recorded by agenttrace in which the agent made at least one call"
        )
    # Calls in causal order: trace by trace (as the runs started), then by ordinal within it.
    calls.sort(key=lambda e: (first_seen.get(e["trace_id"], 0), e["trace_id"], e["ordinal"]))
    runs.sort(key=lambda item: item[0])
    return [event for _, event in runs] + calls + entropy


def _run_and_entropy(
    span: Mapping[str, Any], attributes: Mapping[str, Any], trace_id: str, entropy: list[dict[str, Any]]
) -> dict[str, Any]:
    span_id = str(span["spanId"]).lower()
    for event in span.get("events", ()):
        if event.get("name") != S.EVENT_ENTROPY:
            continue
        values = decode_attributes(event.get("attributes"))
        sources = list(values.get(S.ENTROPY_SOURCES) or ())
        draws = list(values.get(S.ENTROPY_VALUES) or ())
        if len(sources) != len(draws):
            raise ValueError(f"{S.ENTROPY_SOURCES} and {S.ENTROPY_VALUES} differ in length")
        for index, (source, value) in enumerate(zip(sources, draws)):
            entropy.append(entropy_event(trace_id, span_id, index, str(source), base64.b64decode(value)))
    name = str(attributes.get(S.RUN_NAME, span.get("name", "")))
    return run_event(trace_id, span_id, name, int(span.get("startTimeUnixNano", 0)), str(span.get("parentSpanId", "")))


def validate_events(events: Any, where: str) -> list[dict[str, Any]]:
    """Check a list of list-form events (from a file or ``init(replay_events=...)``); return it as dicts."""
    return check_events(events, where)[0]


def check_events(events: Any, where: str) -> tuple[list[dict[str, Any]], list[Exchange]]:
    """:func:`validate_events`, also returning the :class:`Exchange` of each call event, in order.

    Checking a call event means building its exchange; the replay session takes these instead
    of building each one a second time.
    """
    if not isinstance(events, Sequence) or isinstance(events, (str, bytes)):
        raise ConfigurationError(f"{where}: expected a JSON array (list) of replay events, got {type(events).__name__}")
    out: list[dict[str, Any]] = []
    exchanges: list[Exchange] = []
    for index, event in enumerate(events):
        label = f"{where}, event #{index}"
        kind = check_event(event, label)
        if kind == "call":
            exchanges.append(event_exchange(event, label))
        out.append(dict(event))
    if not exchanges:
        raise ConfigurationError(
            f"{where} holds no recorded calls (no event with kind='call'); "
            "expected events from a trace in which the agent made at least one call"
        )
    return out, exchanges


# --- the fast path from a call span to its event ------------------------------------------------
#
# ``call_event(exchange_from_span(span))`` decodes every body into bytes and every header list
# into tuples, only for ``call_event`` to encode them back into the same text and lists. For the
# spans AgentTrace writes (UTF-8 bodies, well-formed attributes) the event can be built from the
# span's strings directly; tests/replay/test_loader.py checks that both give equal events. Any
# other span (a base64 body, a missing or malformed field) returns None and takes the long way.


def _event_attributes(items: Any) -> dict[str, Any]:
    # decode_value, with its two commonest cases (strings, integers) inlined in its order.
    return {
        kv["key"]: value["stringValue"]
        if "stringValue" in value
        else int(value["intValue"])
        if "intValue" in value
        else decode_value(value)
        for kv in items or ()
        for value in (kv.get("value", {}),)
    }


def _fast_body(attrs: Mapping[str, Any]) -> tuple[str, int, str, bool] | None:
    """``(text, size, sha256, truncated)`` of a UTF-8 body, as ``exchange_from_span`` reads it."""
    if attrs.get(S.BODY_ENCODING, "utf-8") == "base64":
        return None
    text = attrs.get(S.BODY, "") or ""
    if type(text) is not str:
        return None
    data = None
    if text.isascii():
        length = len(text)
    else:
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: let the long way report it
            return None
        length = len(data)
    size = int(attrs.get(S.BODY_SIZE, length))
    digest = str(attrs.get(S.BODY_SHA256, ""))
    if not digest:
        digest = hashlib.sha256(data if data is not None else text.encode("ascii")).hexdigest()
    return text, size, digest, bool(attrs.get(S.BODY_TRUNCATED, False))


def _fast_headers(text: Any, seen: dict[str, list[tuple[str, str]]]) -> list[list[str]]:
    if not text:
        return []
    pairs = seen.get(text)  # the same header lists repeat call after call: parse each once
    if pairs is None:
        pairs = [(str(k), str(v)) for k, v in json.loads(text)]
        if len(seen) < 4096:
            seen[text] = pairs
    return [[k, v] for k, v in pairs]  # each event gets lists of its own


def _fast_call_event(
    span: Mapping[str, Any], attrs: Mapping[str, Any], seen: dict[str, list[tuple[str, str]]]
) -> dict[str, Any] | None:
    """The list-form event of an AgentTrace call span, equal to the long way's; None if unsure."""
    try:
        events = {e.get("name"): _event_attributes(e.get("attributes")) for e in span.get("events", ())}
        req = events.get(S.EVENT_REQUEST)
        if req is None:
            return None
        req_body = _fast_body(req)
        if req_body is None:
            return None
        request = {
            "method": str(req.get(S.HTTP_METHOD, attrs.get("http.request.method", ""))),
            "url": str(req.get(S.HTTP_URL, attrs.get("url.full", ""))),
            "headers": _fast_headers(req.get(S.HTTP_HEADERS), seen),
            "body": req_body[0],
            "body_encoding": "utf-8",
        }
        event: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "kind": "call",
            "library": str(attrs.get(S.CALL_LIBRARY, "")),
            "ordinal": int(attrs.get(S.CALL_ORDINAL, -1)),
            "step_path": [str(s) for s in attrs.get(S.CALL_STEP_PATH) or ()],
            "trace_id": str(span.get("traceId", "")),
            "span_id": str(span.get("spanId", "")),
            "request": request,
        }
        resp = events.get(S.EVENT_RESPONSE)
        if resp is not None:
            body = _fast_body(resp)
            if body is None or S.SERVED_SPAN_ID in resp:
                return None
            event["response"] = {
                "status_code": int(resp.get(S.HTTP_STATUS, 0)),
                "reason": str(resp.get(S.HTTP_REASON, "")),
                "http_version": str(resp.get(S.HTTP_VERSION, "HTTP/1.1")),
                "headers": _fast_headers(resp.get(S.HTTP_HEADERS), seen),
                "body": body[0],
                "body_encoding": "utf-8",
                "body_size": body[1],
                "body_sha256": body[2],
                "body_truncated": body[3],
                "chunk_sizes": [int(x) for x in resp.get(S.STREAM_CHUNK_SIZES, ()) or ()],
                "chunk_offsets_ns": [int(x) for x in resp.get(S.STREAM_CHUNK_OFFSETS, ()) or ()],
                "stream_end": str(resp.get(S.STREAM_END, "complete")),
            }
        err = events.get(S.EVENT_ERROR)
        if err is not None:
            event["error"] = {
                "type": str(err.get(S.ERROR_TYPE, "")),
                "message": str(err.get(S.ERROR_MESSAGE, "")),
                "phase": str(err.get(S.ERROR_PHASE, "request")),
            }
        extra: dict[str, str] = {}
        if req.get(S.BODY_FILTERED):
            extra["request_body_filtered"] = "true"
        if resp is not None and resp.get(S.BODY_FILTERED):
            extra["response_body_filtered"] = "true"
        if extra:
            event["extra"] = extra
        return event
    except Exception:  # noqa: BLE001 - the long way decides, and names what is wrong
        return None
