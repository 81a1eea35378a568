"""Where the server keeps spans: the interface the routes use, and :func:`open_store`, which picks
SQLite (the default, a file; :mod:`.sqlite`) or PostgreSQL (:mod:`.postgres`) by the address.

One table, ``agenttrace_spans``, one row per span keyed by (trace id, span id): a span sent twice
(an exporter's retry after a lost answer, a spool resent after a crash) is stored once. A trace
is the spans that share its id; its row in ``agenttrace_traces`` (and its LLM calls by model in
``agenttrace_trace_models``) adds up the spans stored so far, in the transaction that stores them,
so spans of one trace may arrive in any order, in any number of requests, from any number of
servers, and the listing reads one row a trace. The SQL both databases run is in :mod:`.sql`.

Every store is safe to use from many threads at once, as the server's request handlers do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from agenttrace._core.errors import ConfigurationError
from agenttrace._server.store.postgres import PostgresStore, is_keyword_form, redacted
from agenttrace._server.store.records import SpanRow, TraceFilter, TraceSummary
from agenttrace._server.store.sqlite import SQLiteStore

__all__ = ["Store", "TraceFilter", "TraceSummary", "open_store"]


class Store(Protocol):
    """The operations the server needs of a database."""

    description: str  # what pages and the start line name it by: no user, password or query
    # What the driver raises when the database fails (answered 503: try again later), and among
    # those, what it raises when it refuses the data itself (answered 400: never retried).
    errors: tuple[type[BaseException], ...]
    refused: tuple[type[BaseException], ...]

    def add(self, rows: Sequence[SpanRow]) -> int:
        """Store ``rows`` in one transaction (all or none); return how many were new (not stored before)."""
        ...

    def traces(self, limit: int = 100, offset: int = 0, where: TraceFilter | None = None) -> list[TraceSummary]:
        """The most recent traces first (by their earliest span's start, then trace id, both descending)
        that ``where`` lets through, from its ``before`` cursor on, ``offset`` of them skipped."""
        ...

    def trace(self, trace_id: str) -> TraceSummary | None:
        """One trace's summary, or None if no span of it is stored."""
        ...

    def lines(self, trace_id: str) -> list[str]:
        """The trace's spans as OTLP JSON lines, in start order (empty if the trace is unknown)."""
        ...

    def span_lines(
        self, trace_id: str, after: tuple[int, str] | None = None, limit: int = 200, max_bytes: int = 2**21
    ) -> list[tuple[int, str, str]]:
        """A part of the trace: up to ``limit`` spans in start order after the key ``after`` (a span's
        ``(start_ns, span_id)``), as ``(start_ns, span_id, line)``; it stops once ``max_bytes`` of
        lines are read (one line at least), so a part costs what it holds, whatever the trace's size."""
        ...

    def span_line(self, trace_id: str, span_id: str) -> str | None:
        """One span's OTLP JSON line, or None."""
        ...

    def span_outline(self, trace_id: str) -> list[tuple[str, str, int]]:
        """Every span's ``(span_id, parent_span_id, start_ns)``: the tree's shape, without the spans."""
        ...

    def run_lines(self, trace_id: str) -> list[str]:
        """The OTLP JSON lines of the trace's run spans, in start order."""
        ...

    def delete(self, trace_ids: Sequence[str]) -> int:
        """Delete the traces' spans and summaries in one transaction; return how many were stored."""
        ...

    def expire(self, before_ns: int, batch: int = 100) -> int:
        """Delete up to ``batch`` traces that started before ``before_ns``, the oldest first, in one
        transaction; return how many (0 also while another server is expiring traces)."""
        ...

    def close(self) -> None:
        """Release the store's connections."""
        ...


def open_store(database: str) -> Store:
    """The store ``database`` names: ``sqlite:///path``, a plain file path, ``postgresql://...`` or
    libpq's keyword form (``host=... user=... dbname=...``)."""
    text = database.strip()
    if not text:
        raise ConfigurationError("database is empty; expected sqlite:///path/to/file.db or postgresql://...")
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in ("postgresql", "postgres") or (not scheme and is_keyword_form(text)):
        return PostgresStore(text)
    if scheme == "sqlite":
        path = text.split("://", 1)[1]
        if path.startswith("/"):
            path = path[1:]  # sqlite:///relative.db is relative, sqlite:////abs.db absolute (SQLAlchemy's form)
        if not path:
            raise ConfigurationError(f"database {text!r} names no file; expected sqlite:///path/to/file.db")
        return SQLiteStore(path)
    if scheme:
        raise ConfigurationError(
            f"database {redacted(text)!r}: scheme {scheme!r} is not supported; "
            "expected sqlite:///path or postgresql://..."
        )
    return SQLiteStore(text)
