"""The SQL both stores run: the table, the insert, the listing's query, and :class:`SQLStore`, which
runs them over a DB-API cursor that :class:`.sqlite.SQLiteStore` or :class:`.postgres.PostgresStore`
lends it from its connections.

One schema serves both databases (SQLite reads BIGINT as its 64-bit INTEGER); the statements are
written with ``?`` placeholders and given the driver's own where it differs.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Sequence
from typing import Any

from agenttrace._server.store.records import SpanRow, TraceSummary

__all__ = ["SCHEMA", "SQLStore"]

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

_COLUMNS = "trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns, status_code, run_name, run_mode, line"

_INSERT = (
    f"INSERT INTO agenttrace_spans ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "  # noqa: S608 - constants only
    "ON CONFLICT (trace_id, span_id) DO NOTHING"
)

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
            return [_summary(row) for row in cursor.fetchall()]

    def trace(self, trace_id: str) -> TraceSummary | None:
        sql = self._sql(_SUMMARY.format(where="WHERE trace_id = ?", limit=""))
        with self._cursor() as cursor:
            cursor.execute(sql, (trace_id,))
            row = cursor.fetchone()
        return None if row is None else _summary(row)

    def lines(self, trace_id: str) -> list[str]:
        sql = self._sql("SELECT line FROM agenttrace_spans WHERE trace_id = ? ORDER BY start_ns, span_id")
        with self._cursor() as cursor:
            cursor.execute(sql, (trace_id,))
            return [row[0] for row in cursor.fetchall()]
