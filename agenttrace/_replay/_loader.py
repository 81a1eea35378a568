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
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import _schema as S  # noqa: N812 - the schema's names read as S.KIND
from .._errors import ConfigurationError
from .._otlp_json import decode_attributes
from ._events import call_event, check_event, entropy_event, event_exchange, run_event

__all__ = ["load_events", "validate_events"]


def load_events(path: str | Path) -> list[dict[str, Any]]:
    """Read a trace file (OTLP JSON / JSON Lines, or a JSON event list) into replay events."""
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
    try:
        # One document (an OTel Collector's single-document output, possibly pretty-printed)...
        whole = json.loads(text)
    except json.JSONDecodeError as exc:
        whole_error = exc
    else:
        yield 1, whole
        return
    if "\n" not in text.strip():
        raise ConfigurationError(
            f"replay file {file}, line 1: not valid JSON ({whole_error.msg}; truncated?); "
            "expected OTLP JSON (one TracesData object per line) or a JSON array of events"
        )
    # ...else JSON Lines: each line parses on its own, so a bad line is named exactly.
    first = True
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except json.JSONDecodeError as exc:
            if first:
                # Not JSON Lines either: report where the document as a whole breaks.
                raise ConfigurationError(
                    f"replay file {file}, line {whole_error.lineno}: not valid JSON ({whole_error.msg}; "
                    "truncated?); expected OTLP JSON (one TracesData object per line or one document)"
                ) from None
            raise ConfigurationError(
                f"replay file {file}, line {number}: not valid JSON ({exc.msg}; truncated line?); "
                "expected one OTLP JSON TracesData object per line"
            ) from None
        first = False
        yield number, document


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
                if decode is None:
                    decode = _exchange_from_span()
                exchange = decode(span)
                calls.append(call_event(exchange))
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
    if not isinstance(events, Sequence) or isinstance(events, (str, bytes)):
        raise ConfigurationError(f"{where}: expected a JSON array (list) of replay events, got {type(events).__name__}")
    out: list[dict[str, Any]] = []
    calls = 0
    for index, event in enumerate(events):
        label = f"{where}, event #{index}"
        kind = check_event(event, label)
        if kind == "call":
            event_exchange(event, label)
            calls += 1
        out.append(dict(event))
    if not calls:
        raise ConfigurationError(
            f"{where} holds no recorded calls (no event with kind='call'); "
            "expected events from a trace in which the agent made at least one call"
        )
    return out
