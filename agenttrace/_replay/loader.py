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
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from agenttrace._capture.model import Exchange
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
    run_event,
)
from agenttrace._format.exactjson import InexactNumberError, exact_int, fast_loads, has_inexact
from agenttrace._format.exchange import BodyMismatchError, HeaderCache, exchange_from_span
from agenttrace._format.files import SPANS_CUT, Documents, SplitError, collector_paused
from agenttrace._format.otlp_json import decode_attributes
from agenttrace._format.schema import READABLE_SCHEMA_VERSIONS, SCHEMA_VERSION

__all__ = [
    "check_events",
    "collector_paused",
    "keep_last_recording",
    "load_events",
    "load_recording",
    "validate_events",
]


def load_events(path: str | Path) -> list[dict[str, Any]]:
    """Read a trace file (OTLP JSON / JSON Lines, or a JSON event list) into replay events."""
    with collector_paused():
        return _load(Path(path), None)[0]


def load_recording(
    path: str | Path, source: str, *, sealed: bool = False
) -> tuple[list[dict[str, Any]], list[Exchange]]:
    """What ``init(replay_events_file=...)`` replays: the events and the exchange of each call.

    Equal to ``load_events`` followed by building each call event's exchange (labelled
    ``"<source>, event #<index>"`` as then), but a trace file's call spans become exchanges
    directly, without list-form call events in between: the events returned hold the runs and
    the entropy draws only (and, for a JSON event list, every event, calls too).

    ``sealed`` (a governance replay): every body must match its recorded SHA-256 and no call span
    may appear twice, else :class:`ConfigurationError` naming the span and the field.

    While :func:`keep_last_recording` is on, reading the file the last call read, unchanged since
    (same device, inode, size, modification and change times, none of them changed in the two
    seconds before that call), returns what that call returned without reading it again.
    """
    global _last  # noqa: PLW0603 - the one recording kept, see keep_last_recording
    file = Path(path)
    key: tuple[Any, ...] | None = None
    if _keeping:
        identity = _identity(file)
        if identity is not None:
            key = (source, sealed, identity)
            last = _last
            if last is not None and last[0] == key:
                return list(last[1]), list(last[2])
            _last = None  # another file, or changed: not held while the new one is built
    with collector_paused():
        events, exchanges = _load(file, source, sealed=sealed)
        assert exchanges is not None
        if sealed:
            _check_sealed(file, exchanges)
    # Kept only if the file did not change while it was read, and only once it was checked whole.
    if key is not None and _keeping and _identity(file) == key[2] and not _racy(key[2]):
        _last = (key, events, exchanges)
        return list(events), list(exchanges)
    return events, exchanges


# The pytest plugin's speed trick: tests that replay the same file one after the other (a marker's
# path= on a module or class, parametrized tests, re-runs) load it once. A 1,000-call recording
# takes about 60 ms to read and check; a hit costs two stat() calls. A file edited, replaced or
# touched since has another change time (which no program can set back), so it is read and
# checked again, digests included: what was read before is never trusted for a changed file.
_keeping = False
_last: tuple[tuple[Any, ...], list[dict[str, Any]], list[Exchange]] | None = None


def keep_last_recording(keep: bool) -> None:
    """Keep the last recording :func:`load_recording` read while its file is unchanged (``keep``), or drop it.

    What is kept is shared by the sessions that load it: its events and exchanges are never
    modified once loaded (each caller gets its own lists).
    """
    global _keeping, _last  # noqa: PLW0603 - process-global, switched by the pytest plugin
    _keeping = keep
    if not keep:
        _last = None


def _identity(file: Path) -> tuple[int, int, int, int, int] | None:
    try:
        st = os.stat(file)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


# A file changed this recently may change again within the same timestamp granule (1 s on HFS+
# and ext3, 2 s on FAT) without its identity showing it: such a file is not kept (git's "racily
# clean" files). Its next load reads it again.
_RACY_NS = 2_000_000_000


def _racy(identity: tuple[int, int, int, int, int]) -> bool:
    return time.time_ns() - max(identity[3], identity[4]) < _RACY_NS


def _reseal_hint(file: Path) -> str:
    return (
        "the recording was changed after it was written (edited or damaged), and a governance replay "
        "serves only what was recorded; if the change was deliberate, re-seal the file with "
        f"`agenttrace reseal {file}` (it recomputes every body's size and SHA-256)"
    )


def _check_sealed(file: Path, exchanges: Sequence[Exchange]) -> None:
    """No call span twice."""
    seen: set[tuple[str, str]] = set()
    for index, exchange in enumerate(exchanges):
        if exchange.span_id:
            key = (exchange.trace_id.lower(), exchange.span_id.lower())
            if key in seen:
                label = f"replay file {file}, call #{index} ({exchange.request.method} {exchange.request.url})"
                raise ConfigurationError(
                    f"{label}: call span {exchange.trace_id}/{exchange.span_id} appears more than once; a "
                    "governance replay refuses a recording holding the same call twice (a file "
                    "concatenated with itself, or a span copied); remove the copy"
                )
            seen.add(key)


def _check_list_digests(file: Path, exchanges: Sequence[Exchange]) -> None:
    """Each response body of a list-form recording against its body_sha256 (spans are checked as decoded)."""
    for index, exchange in enumerate(exchanges):
        response = exchange.response
        if response is None or response.body.truncated:
            continue
        actual = hashlib.sha256(response.body.data).hexdigest()
        if response.body.sha256 != actual:
            raise ConfigurationError(
                f"replay file {file}, call #{index} ({exchange.request.method} {exchange.request.url}): "
                f"span {exchange.span_id}: the response body does not match its body_sha256 "
                f"(recorded {response.body.sha256}, the body's is {actual}); {_reseal_hint(file)}"
            )


def _load(
    file: Path, source: str | None, *, sealed: bool = False
) -> tuple[list[dict[str, Any]], list[Exchange] | None]:
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
            return _from_documents(file, ((1, d) for d in parsed), None, source, sealed)  # parsed exactly
        if source is None:
            return validate_events(parsed, str(file)), None
        events, exchanges = check_events(parsed, str(file))
        if sealed:
            _check_list_digests(file, exchanges)
        return events, exchanges
    if fast_loads() is not None:
        # Span by span (see Documents): the same result, or SplitError, or a ConfigurationError
        # that reading the file whole words as it always did.
        split = Documents(
            file, data, "replay file", "cannot be read as UTF-8 text", split_spans=True, split_above=_SPLIT_ABOVE
        )
        try:
            return _from_documents(file, split, split, source, sealed)
        except (SplitError, ConfigurationError):
            pass
    documents = Documents(file, data, "replay file", "cannot be read as UTF-8 text")
    try:
        return _from_documents(file, documents, documents, source, sealed)
    except ConfigurationError:
        documents.check_text()  # bytes that are not UTF-8 are the first thing wrong with a file
        raise


# Lines of up to this many bytes are parsed whole: a line of a few spans (a pytest recording
# writes one span per line) gains nothing from being read span by span (see Documents).
_SPLIT_ABOVE = 64 * 1024

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


class _Recording:
    """The run and call spans and entropy draws read so far, and what reading them shares."""

    def __init__(self, exchanges: bool, sealed: Path | None = None) -> None:
        self.exchanges = exchanges  # calls as exchanges (load_recording), else as events
        self.sealed = sealed  # the file, when every body must match its digest (governance)
        self.runs: list[tuple[int, dict[str, Any]]] = []  # (start, event)
        self.entropy: list[dict[str, Any]] = []
        self.calls: list[tuple[str, int, Any]] = []  # (trace id, ordinal, event or exchange)
        self.headers: HeaderCache = {}  # header lists seen, parsed
        self.socket_spans = 0  # raw DNS/connect spans read (loaded, never served)
        # (trace id, run span id) -> (start, run name) of the runs call spans' draws name: a run
        # whose own span is missing (cut short) is known from them.
        self.draw_runs: dict[tuple[str, str], tuple[int, str]] = {}

    def mark(self) -> tuple[int, int, int]:
        return len(self.runs), len(self.entropy), len(self.calls)

    def undo(self, mark: tuple[int, int, int]) -> None:
        del self.runs[mark[0] :], self.entropy[mark[1] :], self.calls[mark[2] :]

    def add_call(
        self, where: str, span: Mapping[str, Any], attributes: Mapping[str, Any], to_int: Callable[[Any], int]
    ) -> None:
        """Add the call's exchange (when exchanges are built) or its list-form event."""
        try:
            exchange = exchange_from_span(
                span, attributes, to_int=to_int, headers=self.headers, verify=self.sealed is not None
            )
        except BodyMismatchError as exc:
            assert self.sealed is not None
            raise ConfigurationError(
                f"{where}: span {span.get('name', '')!r} (span id {span.get('spanId', '')}): {exc}; "
                f"{_reseal_hint(self.sealed)}"
            ) from None
        served_from = exchange.extra.get("served_from")
        if served_from is not None:
            raise ConfigurationError(
                f"{where}: span {span.get('name', '')!r} is a call served by a replay (from recorded "
                f"call span {served_from}); a replay's trace does not repeat the bodies it served, "
                "so it cannot be replayed: replay the recording it was served from"
            )
        item: Any = exchange
        if not self.exchanges or (exchange.response is None and exchange.error is None):
            # load_events' event; a call with neither response nor error is kept as its event so
            # that the error names the event, as init() names it for load_events' list.
            item = call_event(exchange)
        self.calls.append((exchange.trace_id, exchange.ordinal, item))


def _from_documents(
    file: Path,
    documents: Iterable[tuple[int, Any]],
    reader: Documents | None,
    source: str | None,
    sealed: bool = False,
) -> tuple[list[dict[str, Any]], list[Exchange] | None]:
    """Read the documents' spans; ``reader`` (if documents come from one) re-reads lines and cut spans."""
    recording = _Recording(source is not None, file if sealed else None)
    first_seen: dict[str, int] = {}
    prefix = f"replay file {file}, line "  # formatted once: a recording has a line per call
    for number, document in documents:
        where = f"{prefix}{number}"
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
    if not calls and not recording.socket_spans:
        raise ConfigurationError(
            f"replay file {file} holds no recorded calls (no span with {S.KIND}='call'); "
            "expected a trace recorded by agenttrace in which the agent made at least one call"
        )
    # Calls in causal order: trace by trace (as the runs started), then by ordinal within it.
    calls.sort(key=lambda item: (first_seen.get(item[0], 0), item[0], item[1]))
    known = {(event["trace_id"], event["span_id"]) for _, event in runs}
    for (trace_id, span_id), (start, name) in recording.draw_runs.items():
        if (trace_id, span_id) not in known:  # cut short: the run's span was never written
            runs.append((start, run_event(trace_id, span_id, name, start)))
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
            attributes = decode_attributes(span.get("attributes"), to_int)
            kind = attributes.get(S.KIND)
            if kind not in ("run", "call"):
                continue  # the user's own spans, steps, other instrumentations: not ours to replay
            version = attributes.get(S.SCHEMA, SCHEMA_VERSION)
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
            if attributes.get(S.CALL_LIBRARY) == "socket":
                # A raw DNS lookup or connect (the socket instrumentor): no payload to serve. In
                # replay the sandbox meets the agent's lookup or connect as the leak it is.
                recording.socket_spans += 1
                continue
            recording.add_call(where, span, attributes, to_int)
            if len(span.get("events", ())) > 2:  # a request, a response or error, and maybe draws
                owner = _entropy_events(span, trace_id, None, recording.entropy, to_int)
                if owner is not None and (trace_id, owner[0]) not in recording.draw_runs:
                    recording.draw_runs[(trace_id, owner[0])] = (start, owner[1])
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
    _entropy_events(span, trace_id, span_id, entropy, to_int)
    name = str(attributes.get(S.RUN_NAME, span.get("name", "")))
    start = to_int(span.get("startTimeUnixNano", 0))
    return run_event(trace_id, span_id, name, start, str(span.get("parentSpanId", "")))


def _entropy_events(
    span: Mapping[str, Any],
    trace_id: str,
    run_span_id: str | None,
    entropy: list[dict[str, Any]],
    to_int: Callable[[Any], int],
) -> tuple[str, str] | None:
    """Add the draws of ``span``'s ``agenttrace.entropy`` events to ``entropy``, numbered as the run drew them.

    ``run_span_id``: the run's span id (a run span), or None for a call span, whose events name
    their run. Returns the (run span id, run name) a call span's draws belong to, if it has any.
    """
    owner: tuple[str, str] | None = None
    for event in span.get("events", ()):
        if event.get("name") != S.EVENT_ENTROPY:
            continue
        values = decode_attributes(event.get("attributes"), to_int)
        sources = list(values.get(S.ENTROPY_SOURCES) or ())
        draws = list(values.get(S.ENTROPY_VALUES) or ())
        if len(sources) != len(draws):
            raise ValueError(f"{S.ENTROPY_SOURCES} and {S.ENTROPY_VALUES} differ in length")
        first = int(values.get(S.ENTROPY_FIRST, 0))
        run = run_span_id
        if run is None:
            run = str(values.get(S.ENTROPY_RUN_SPAN_ID, "")).lower()
            if not run:
                raise ValueError(f"an {S.EVENT_ENTROPY} event on a call span has no {S.ENTROPY_RUN_SPAN_ID}")
            owner = (run, str(values.get(S.RUN_NAME, "")))
        for index, (source, value) in enumerate(zip(sources, draws), start=first):
            entropy.append(entropy_event(trace_id, run, index, str(source), base64.b64decode(value)))
    return owner


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
