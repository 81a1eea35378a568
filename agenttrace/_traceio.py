"""Read OTLP JSON trace files (JSON Lines, or one JSON document) into span dicts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import ConfigurationError
from ._otlp_json import decode_attributes

__all__ = ["SpanRecord", "iter_documents", "read_spans"]


@dataclass(frozen=True)
class SpanRecord:
    """One span of a trace file, with its attributes decoded."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[tuple[str, int, dict[str, Any]]]
    status_code: int
    status_message: str
    scope: str
    raw: dict[str, Any]


def iter_documents(file: Path, text: str, what: str = "trace file") -> Iterator[tuple[int, Any]]:
    """The JSON documents of a trace file with their line numbers: one document, or JSON Lines.

    A bad line raises ConfigurationError naming ``what``, the file and the line.
    """
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
            f"{what} {file}, line 1: not valid JSON ({whole_error.msg}; truncated?); "
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
                    f"{what} {file}, line {whole_error.lineno}: not valid JSON ({whole_error.msg}; "
                    "truncated?); expected OTLP JSON (one TracesData object per line or one document)"
                ) from None
            raise ConfigurationError(
                f"{what} {file}, line {number}: not valid JSON ({exc.msg}; truncated line?); "
                "expected one OTLP JSON TracesData object per line"
            ) from None
        first = False
        yield number, document


def _documents(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(f"trace file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"trace file {path} cannot be read: {exc}") from None
    for number, document in iter_documents(path, text):
        if not isinstance(document, dict):
            raise ConfigurationError(
                f"trace file {path}, line {number}: expected a JSON object with 'resourceSpans', "
                f"got {type(document).__name__}"
            )
        yield number, document


def read_spans(path: str | Path) -> list[SpanRecord]:
    """Every span in an OTLP JSON trace file; ConfigurationError names the file and line."""
    file = Path(path)
    spans: list[SpanRecord] = []
    for number, document in _documents(file):
        if "resourceSpans" not in document:
            raise ConfigurationError(
                f"trace file {file}, line {number}: expected an OTLP JSON TracesData object "
                f"with 'resourceSpans', found keys {sorted(document)[:5]}"
            )
        try:
            for resource_spans in document["resourceSpans"]:
                for scope_spans in resource_spans.get("scopeSpans", ()):
                    scope = scope_spans.get("scope", {}).get("name", "")
                    for span in scope_spans.get("spans", ()):
                        spans.append(_record(span, scope))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"trace file {file}, line {number}: malformed OTLP JSON span ({type(exc).__name__}: {exc})"
            ) from None
    return spans


def _record(span: dict[str, Any], scope: str) -> SpanRecord:
    status = span.get("status", {})
    return SpanRecord(
        trace_id=span["traceId"],
        span_id=span["spanId"],
        parent_span_id=span.get("parentSpanId", ""),
        name=span.get("name", ""),
        kind=int(span.get("kind", 0)),
        start_ns=int(span.get("startTimeUnixNano", 0)),
        end_ns=int(span.get("endTimeUnixNano", 0)),
        attributes=decode_attributes(span.get("attributes")),
        events=[
            (e.get("name", ""), int(e.get("timeUnixNano", 0)), decode_attributes(e.get("attributes")))
            for e in span.get("events", ())
        ],
        status_code=int(status.get("code", 0)),
        status_message=status.get("message", ""),
        scope=scope,
        raw=span,
    )
