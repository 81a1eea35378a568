"""What goes into the store and what comes out: a span's row, and a trace's summary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ModelUsage", "SpanRow", "TraceFilter", "TraceSummary"]


# Not frozen: a frozen dataclass's __init__ costs five times as much, and ingest makes one per span.
@dataclass(slots=True)
class SpanRow:
    """One span as stored: the columns the listing and the run page query, and its OTLP JSON line."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str  # agenttrace.kind: "run", "step", "call", or "" for spans that are not AgentTrace's
    start_ns: int
    end_ns: int
    status_code: int  # OTLP status code: 0 unset, 1 ok, 2 error
    run_name: str  # agenttrace.run.name on run spans, else ""
    run_mode: str  # agenttrace.run.mode on run spans ("record", "replay"), else ""
    # {"resourceSpans":[{"resource":..., "scopeSpans":[{"scope":..., "spans":[span]}]}]}; "" when proto holds the span
    line: str
    # LLM call spans (gen_ai.operation.name set): the model ("?" when unsaid) and the gen_ai.usage tokens.
    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    # A span received as protobuf: the TracesData of its resource, scope and itself, its line made when read
    # (agenttrace._server.protobuf.stored_line).
    proto: bytes | None = None

    @property
    def text(self) -> str:
        """The span's OTLP JSON line, as the store gives it back."""
        from agenttrace._server.protobuf import stored_text

        return stored_text(self.line, self.proto)


@dataclass(frozen=True)
class ModelUsage:
    """A trace's LLM calls to one model, added up (the listing prices them)."""

    model: str
    calls: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int


@dataclass(frozen=True)
class TraceSummary:
    """One trace in the listing."""

    trace_id: str
    name: str
    start_ns: int
    end_ns: int
    spans: int
    calls: int
    failed: bool
    mode: str
    usage: tuple[ModelUsage, ...] = ()

    @property
    def cursor(self) -> str:
        """Where the next page of a listing ending at this trace starts (``before=``)."""
        return f"{self.start_ns}.{self.trace_id}"

    def as_json(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "name": self.name,
            "start_time_unix_nano": self.start_ns,
            "end_time_unix_nano": self.end_ns,
            "duration_ms": round(max(self.end_ns - self.start_ns, 0) / 1e6, 3),
            "spans": self.spans,
            "calls": self.calls,
            "status": "error" if self.failed else "ok",
            "mode": self.mode,
            "llm_calls": sum(u.calls for u in self.usage),
            "input_tokens": sum(u.input_tokens for u in self.usage),
            "output_tokens": sum(u.output_tokens for u in self.usage),
        }


@dataclass(frozen=True)
class TraceFilter:
    """Which traces a listing holds; every field left at its default lets every trace through."""

    name: str = ""  # a substring of the trace's name (its first run's), in lower case
    failed: bool | None = None  # True: traces with a failed span; False: traces without
    mode: str = ""  # the first run's mode: "record" or "replay"
    model: str = ""  # a prefix of the model of one of its LLM calls (case-sensitive)
    trace_id: str = ""  # a prefix of the trace id, lower-case hex (all 32 digits: that trace)
    since_ns: int | None = None  # started at or after
    until_ns: int | None = None  # started before
    before: tuple[int, str] | None = None  # keyset cursor: traces listed after (start_ns, trace_id)
