"""The SQL both stores run: the table, the insert, the listing's query, and :class:`SQLStore`, which
runs them over a DB-API cursor that :class:`.sqlite.SQLiteStore` or :class:`.postgres.PostgresStore`
lends it from its connections.

One schema serves both databases (SQLite reads BIGINT as its 64-bit INTEGER); the statements are
written with ``?`` placeholders and given the driver's own where it differs.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
from collections.abc import Sequence
from typing import Any

from agenttrace._server.store.records import ModelUsage, SpanRow, TraceSummary

__all__ = ["SCHEMA", "SQLStore", "migrations"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS agenttrace_spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_span_id TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    start_ns BIGINT NOT NULL,
    end_ns BIGINT NOT NULL,
    status_code INTEGER NOT NULL,
    run_name TEXT NOT NULL,
    run_mode TEXT NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX IF NOT EXISTS agenttrace_spans_start ON agenttrace_spans (start_ns);
"""

# Columns added since the first schema, with what rows stored before them hold; a store opening an
# older database adds them (:func:`migrations`).
_ADDED = (
    ("model", "TEXT NOT NULL DEFAULT ''"),
    ("input_tokens", "BIGINT NOT NULL DEFAULT 0"),
    ("output_tokens", "BIGINT NOT NULL DEFAULT 0"),
    ("cache_read_tokens", "BIGINT NOT NULL DEFAULT 0"),
    ("cache_creation_tokens", "BIGINT NOT NULL DEFAULT 0"),
)


def migrations(existing: set[str]) -> list[str]:
    """The ALTER TABLE statements that bring a table with the columns ``existing`` up to date."""
    return [f"ALTER TABLE agenttrace_spans ADD COLUMN {name} {kind}" for name, kind in _ADDED if name not in existing]


_COLUMNS = (
    "trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns, status_code, run_name, run_mode, line, "
    "model, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens"
)

_INSERT = (
    f"INSERT INTO agenttrace_spans ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "  # noqa: S608 - constants only
    "ON CONFLICT (trace_id, span_id) DO NOTHING"
)

# The LLM calls of some traces, added up by model.
_USAGE = """
SELECT trace_id, model, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens),
       SUM(cache_creation_tokens)
FROM agenttrace_spans WHERE model <> '' AND trace_id IN ({ids}) GROUP BY trace_id, model ORDER BY trace_id, model
"""

# A page of the listing: each trace's time span, counts and whether a span failed, aggregated
# over its spans; then, for the page's traces only, the name and mode of its first run span (by
# start), else the name of its earliest span.
_SUMMARY = """
SELECT g.trace_id, g.first_ns, g.last_ns, g.spans, g.calls, g.failed,
       (SELECT r.run_name FROM agenttrace_spans r WHERE r.trace_id = g.trace_id AND r.kind = 'run'
        ORDER BY r.start_ns, r.span_id LIMIT 1),
       (SELECT r.run_mode FROM agenttrace_spans r WHERE r.trace_id = g.trace_id AND r.kind = 'run'
        ORDER BY r.start_ns, r.span_id LIMIT 1),
       (SELECT e.name FROM agenttrace_spans e WHERE e.trace_id = g.trace_id
        ORDER BY e.start_ns, e.span_id LIMIT 1)
FROM (
    SELECT trace_id, MIN(start_ns) AS first_ns, MAX(end_ns) AS last_ns, COUNT(*) AS spans,
           SUM(CASE WHEN kind = 'call' THEN 1 ELSE 0 END) AS calls,
           MAX(CASE WHEN status_code = 2 THEN 1 ELSE 0 END) AS failed
    FROM agenttrace_spans
    {where}
    GROUP BY trace_id
    ORDER BY MIN(start_ns) DESC, trace_id
    {limit}
) g
ORDER BY g.first_ns DESC, g.trace_id
"""


def _summary(row: Sequence[Any]) -> TraceSummary:
    trace_id, start, end, spans, calls, failed, run_name, mode, any_name = row
    return TraceSummary(
        trace_id=trace_id,
        name=run_name or any_name or "",
        start_ns=int(start),
        end_ns=int(end),
        spans=int(spans),
        calls=int(calls or 0),
        failed=bool(failed),
        mode=mode or "",
    )


class SQLStore(abc.ABC):
    """:class:`~agenttrace._server.store.Store`'s operations in SQL; a subclass gives the cursors, the
    driver's errors and placeholder, and closes its connections."""

    description = ""
    errors: tuple[type[BaseException], ...]  # the driver's failures (503) ...
    refused: tuple[type[BaseException], ...]  # ... and among them its refusals of the data (400)
    _param = "?"  # the driver's placeholder

    @abc.abstractmethod
    def _cursor(self, write: bool = False) -> contextlib.AbstractContextManager[Any]:
        """A cursor of a connection held for the block; with ``write``, in one transaction."""

    def _sql(self, text: str) -> str:
        return text if self._param == "?" else text.replace("?", self._param)

    def add(self, rows: Sequence[SpanRow]) -> int:
        if not rows:
            return 0
        # In key order: two requests holding some of the same spans then take their row locks in
        # the same order, so one waits for the other instead of the two deadlocking (PostgreSQL).
        rows = sorted(rows, key=lambda r: (r.trace_id, r.span_id))
        values = [
            (
                r.trace_id,
                r.span_id,
                r.parent_span_id,
                r.name,
                r.kind,
                r.start_ns,
                r.end_ns,
                r.status_code,
                r.run_name,
                r.run_mode,
                r.line,
                r.model,
                r.input_tokens,
                r.output_tokens,
                r.cache_read_tokens,
                r.cache_creation_tokens,
            )
            for r in rows
        ]
        sql = self._sql(_INSERT)
        with self._cursor(write=True) as cursor:
            cursor.executemany(sql, values)
            added = cursor.rowcount
        return max(int(added), 0)

    def traces(self, limit: int = 100, offset: int = 0) -> list[TraceSummary]:
        sql = self._sql(_SUMMARY.format(where="", limit="LIMIT ? OFFSET ?"))
        with self._cursor() as cursor:
            cursor.execute(sql, (limit, offset))
            return self._with_usage(cursor, [_summary(row) for row in cursor.fetchall()])

    def trace(self, trace_id: str) -> TraceSummary | None:
        sql = self._sql(_SUMMARY.format(where="WHERE trace_id = ?", limit=""))
        with self._cursor() as cursor:
            cursor.execute(sql, (trace_id,))
            row = cursor.fetchone()
            return None if row is None else self._with_usage(cursor, [_summary(row)])[0]

    def _with_usage(self, cursor: Any, summaries: list[TraceSummary]) -> list[TraceSummary]:
        """``summaries`` with the LLM usage of each trace, by model."""
        if not summaries:
            return summaries
        ids = [s.trace_id for s in summaries]
        cursor.execute(self._sql(_USAGE.format(ids=", ".join("?" * len(ids)))), ids)
        found: dict[str, list[ModelUsage]] = {}
        for trace_id, model, calls, given, made, read, written in cursor.fetchall():
            found.setdefault(trace_id, []).append(
                ModelUsage(model, int(calls), int(given or 0), int(made or 0), int(read or 0), int(written or 0))
            )
        return [dataclasses.replace(s, usage=tuple(found.get(s.trace_id, ()))) for s in summaries]

    def lines(self, trace_id: str) -> list[str]:
        sql = self._sql("SELECT line FROM agenttrace_spans WHERE trace_id = ? ORDER BY start_ns, span_id")
        with self._cursor() as cursor:
            cursor.execute(sql, (trace_id,))
            return [row[0] for row in cursor.fetchall()]

    # --- the run page's reads: a trace in parts, each bounded (docs/server.md, "The run page") ---

    def span_lines(
        self, trace_id: str, after: tuple[int, str] | None = None, limit: int = 200, max_bytes: int = 2**21
    ) -> list[tuple[int, str, str]]:
        keyset = "" if after is None else " AND (start_ns > ? OR (start_ns = ? AND span_id > ?))"
        sql = self._sql(
            f"SELECT start_ns, span_id, line FROM agenttrace_spans WHERE trace_id = ?{keyset} "  # noqa: S608 - constants only
            "ORDER BY start_ns, span_id LIMIT ?"
        )
        params: tuple[object, ...] = (trace_id, limit)
        if after is not None:
            params = (trace_id, after[0], after[0], after[1], limit)
        out: list[tuple[int, str, str]] = []
        size = 0
        with self._cursor() as cursor:
            cursor.execute(sql, params)
            # Rows a few at a time, up to max_bytes of lines (at least one): a part's memory is bounded
            # by its size, not by the trace's.
            while size < max_bytes and (rows := cursor.fetchmany(16)):
                for start_ns, span_id, line in rows:
                    out.append((int(start_ns), span_id, line))
                    size += len(line)
                    if size >= max_bytes:
                        break
        return out

    def span_line(self, trace_id: str, span_id: str) -> str | None:
        sql = self._sql("SELECT line FROM agenttrace_spans WHERE trace_id = ? AND span_id = ?")
        with self._cursor() as cursor:
            cursor.execute(sql, (trace_id, span_id))
            row = cursor.fetchone()
            return None if row is None else str(row[0])

    def span_outline(self, trace_id: str) -> list[tuple[str, str, int]]:
        sql = self._sql("SELECT span_id, parent_span_id, start_ns FROM agenttrace_spans WHERE trace_id = ?")
        with self._cursor() as cursor:
            cursor.execute(sql, (trace_id,))
            return [(str(a), str(b), int(c)) for a, b, c in cursor.fetchall()]

    def run_lines(self, trace_id: str) -> list[str]:
        sql = self._sql(
            "SELECT line FROM agenttrace_spans WHERE trace_id = ? AND kind = 'run' ORDER BY start_ns, span_id"
        )
        with self._cursor() as cursor:
            cursor.execute(sql, (trace_id,))
            return [str(row[0]) for row in cursor.fetchall()]
