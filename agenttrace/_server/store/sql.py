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
import functools
from collections.abc import Sequence
from typing import Any

from agenttrace._server.protobuf import stored_text
from agenttrace._server.store.records import ModelUsage, SpanRow, TraceFilter, TraceSummary

__all__ = ["BACKFILL", "SCHEMA", "SUMMARY_SCHEMA", "SQLStore", "migrations"]

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
    # A span received as protobuf is kept as protobuf (line is then ""), its line made when read.
    ("proto", "{blob}"),
)


def migrations(existing: set[str], blob: str = "BLOB") -> list[str]:
    """The ALTER TABLE statements that bring a table with the columns ``existing`` up to date; ``blob`` is
    the database's type of bytes."""
    return [
        f"ALTER TABLE agenttrace_spans ADD COLUMN {name} {kind.format(blob=blob)}"
        for name, kind in _ADDED
        if name not in existing
    ]


_COLUMNS = (
    "trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns, status_code, run_name, run_mode, line, "
    "model, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, proto"
)

# One row per trace, kept up to date by every insert in the insert's transaction, so that a page of
# the listing reads one index and a few rows however many spans are stored. The earliest span
# (by start, then span id) names a trace without a run; the first run span (likewise) names it and
# gives its mode. ``*_key`` are the names in lower case, for the name search.
SUMMARY_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS agenttrace_traces (
    trace_id TEXT NOT NULL PRIMARY KEY,
    first_ns BIGINT NOT NULL,
    last_ns BIGINT NOT NULL,
    spans BIGINT NOT NULL,
    calls BIGINT NOT NULL,
    failed INTEGER NOT NULL,
    first_span_id TEXT NOT NULL,
    first_name TEXT NOT NULL,
    first_key TEXT NOT NULL,
    run_ns BIGINT,
    run_span_id TEXT,
    run_name TEXT NOT NULL,
    run_key TEXT NOT NULL,
    run_mode TEXT NOT NULL
)""",
    # The listing's order, holding every column its filters read but the model: a filter that
    # matches few traces reads this index alone, never a table row, until it has a page.
    "CREATE INDEX IF NOT EXISTS agenttrace_traces_listing ON agenttrace_traces "
    "(first_ns, trace_id, failed, run_mode, run_key, first_key)",
    # A trace's LLM calls, added up by model: the listing's tokens and cost, and its model filter.
    """CREATE TABLE IF NOT EXISTS agenttrace_trace_models (
    trace_id TEXT NOT NULL,
    model TEXT NOT NULL,
    calls BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cache_read_tokens BIGINT NOT NULL,
    cache_creation_tokens BIGINT NOT NULL,
    PRIMARY KEY (trace_id, model)
)""",
    "CREATE INDEX IF NOT EXISTS agenttrace_trace_models_model ON agenttrace_trace_models (model, trace_id)",
)
RARE_MODEL = 2000  # (trace, model) rows under which a model filter starts from the model's traces

# What a database made before the summary tables needs, once, in the transaction that creates
# them: their rows, computed from the spans.
BACKFILL = (
    """INSERT INTO agenttrace_traces (trace_id, first_ns, last_ns, spans, calls, failed, first_span_id, first_name,
    first_key, run_ns, run_span_id, run_name, run_key, run_mode)
SELECT g.trace_id, g.first_ns, g.last_ns, g.spans, g.calls, g.failed, f.span_id, f.name, lower(f.name),
       r.start_ns, r.span_id, COALESCE(r.run_name, ''), lower(COALESCE(r.run_name, '')), COALESCE(r.run_mode, '')
FROM (
    SELECT trace_id, MIN(start_ns) AS first_ns, MAX(end_ns) AS last_ns, COUNT(*) AS spans,
           SUM(CASE WHEN kind = 'call' THEN 1 ELSE 0 END) AS calls,
           MAX(CASE WHEN status_code = 2 THEN 1 ELSE 0 END) AS failed
    FROM agenttrace_spans GROUP BY trace_id
) g
JOIN agenttrace_spans f ON f.trace_id = g.trace_id AND f.span_id = (
    SELECT e.span_id FROM agenttrace_spans e WHERE e.trace_id = g.trace_id ORDER BY e.start_ns, e.span_id LIMIT 1)
LEFT JOIN agenttrace_spans r ON r.trace_id = g.trace_id AND r.span_id = (
    SELECT x.span_id FROM agenttrace_spans x WHERE x.trace_id = g.trace_id AND x.kind = 'run'
    ORDER BY x.start_ns, x.span_id LIMIT 1)""",
    """INSERT INTO agenttrace_trace_models (trace_id, model, calls, input_tokens, output_tokens, cache_read_tokens,
    cache_creation_tokens)
SELECT trace_id, model, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens),
       SUM(cache_creation_tokens)
FROM agenttrace_spans WHERE model <> '' GROUP BY trace_id, model""",
)

_INSERT_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_CHUNK = 256  # rows a statement inserts: 4,352 parameters, within both databases' limits


@functools.cache
def _insert(count: int, returning: bool) -> str:
    """The insert of ``count`` spans; ``returning``: answering the keys of those that were not stored before."""
    return (
        f"INSERT INTO agenttrace_spans ({_COLUMNS}) VALUES {', '.join([_INSERT_ROW] * count)} "  # noqa: S608 - constants only
        "ON CONFLICT (trace_id, span_id) DO NOTHING" + (" RETURNING trace_id, span_id" if returning else "")
    )


# Adds a batch's new spans into their trace's row: a sum, a minimum, a maximum, or the name of the
# earlier span; the SET expressions read the row as it was, so concurrent inserts (another request,
# another server) add up in any order. {least}/{greatest}: the database's two-argument MIN/MAX.
_UPSERT_TRACE = """
INSERT INTO agenttrace_traces AS t (trace_id, first_ns, last_ns, spans, calls, failed, first_span_id, first_name,
    first_key, run_ns, run_span_id, run_name, run_key, run_mode)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (trace_id) DO UPDATE SET
    first_ns = {least}(t.first_ns, excluded.first_ns),
    last_ns = {greatest}(t.last_ns, excluded.last_ns),
    spans = t.spans + excluded.spans,
    calls = t.calls + excluded.calls,
    failed = {greatest}(t.failed, excluded.failed),
    first_span_id = CASE WHEN {first} THEN excluded.first_span_id ELSE t.first_span_id END,
    first_name = CASE WHEN {first} THEN excluded.first_name ELSE t.first_name END,
    first_key = CASE WHEN {first} THEN excluded.first_key ELSE t.first_key END,
    run_ns = CASE WHEN {run} THEN excluded.run_ns ELSE t.run_ns END,
    run_span_id = CASE WHEN {run} THEN excluded.run_span_id ELSE t.run_span_id END,
    run_name = CASE WHEN {run} THEN excluded.run_name ELSE t.run_name END,
    run_key = CASE WHEN {run} THEN excluded.run_key ELSE t.run_key END,
    run_mode = CASE WHEN {run} THEN excluded.run_mode ELSE t.run_mode END
""".format(
    least="{least}",
    greatest="{greatest}",
    first="(excluded.first_ns < t.first_ns OR (excluded.first_ns = t.first_ns AND excluded.first_span_id < "
    "t.first_span_id))",
    run="(excluded.run_span_id IS NOT NULL AND (t.run_span_id IS NULL OR excluded.run_ns < t.run_ns OR "
    "(excluded.run_ns = t.run_ns AND excluded.run_span_id < t.run_span_id)))",
)

_UPSERT_MODEL = """
INSERT INTO agenttrace_trace_models AS m (trace_id, model, calls, input_tokens, output_tokens, cache_read_tokens,
    cache_creation_tokens)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (trace_id, model) DO UPDATE SET
    calls = m.calls + excluded.calls,
    input_tokens = m.input_tokens + excluded.input_tokens,
    output_tokens = m.output_tokens + excluded.output_tokens,
    cache_read_tokens = m.cache_read_tokens + excluded.cache_read_tokens,
    cache_creation_tokens = m.cache_creation_tokens + excluded.cache_creation_tokens
"""

_LISTED = (
    "SELECT trace_id, first_ns, last_ns, spans, calls, failed, run_name, run_mode, first_name FROM agenttrace_traces"
)

# The LLM calls of some traces, added up by model.
_USAGE = """
SELECT trace_id, model, calls, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens
FROM agenttrace_trace_models WHERE trace_id IN ({ids}) ORDER BY trace_id, model
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


@dataclasses.dataclass
class _Trace:
    """A batch's new spans of one trace, added up as its summary row adds them."""

    first: tuple[int, str, str]  # the earliest span's (start, span id, name)
    last_ns: int
    spans: int = 0
    calls: int = 0
    failed: int = 0
    run: tuple[int, str, str, str] | None = None  # the first run span's (start, span id, name, mode)

    def row(self, trace_id: str) -> tuple[Any, ...]:
        run_ns, run_span, run_name, run_mode = self.run or (None, None, "", "")
        first_ns, first_span, first_name = self.first
        return (
            trace_id,
            first_ns,
            self.last_ns,
            self.spans,
            self.calls,
            self.failed,
            first_span,
            first_name,
            first_name.lower(),
            run_ns,
            run_span,
            run_name,
            run_name.lower(),
            run_mode,
        )


def _summed(rows: Sequence[SpanRow]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The trace rows and (trace, model) rows that ``rows`` (new spans, in key order) add."""
    traces: dict[str, _Trace] = {}
    models: dict[tuple[str, str], list[int]] = {}
    for r in rows:
        found = traces.get(r.trace_id)
        if found is None:
            found = traces[r.trace_id] = _Trace((r.start_ns, r.span_id, r.name), r.end_ns)
        elif (r.start_ns, r.span_id) < found.first[:2]:
            found.first = (r.start_ns, r.span_id, r.name)
        found.last_ns = max(found.last_ns, r.end_ns)
        found.spans += 1
        found.calls += r.kind == "call"
        found.failed |= r.status_code == 2
        if r.kind == "run" and (found.run is None or (r.start_ns, r.span_id) < found.run[:2]):
            found.run = (r.start_ns, r.span_id, r.run_name, r.run_mode)
        if r.model:
            sums = models.setdefault((r.trace_id, r.model), [0, 0, 0, 0, 0])
            sums[0] += 1
            sums[1] += r.input_tokens
            sums[2] += r.output_tokens
            sums[3] += r.cache_read_tokens
            sums[4] += r.cache_creation_tokens
    return (
        [t.row(trace_id) for trace_id, t in sorted(traces.items())],
        [(trace_id, model, *sums) for (trace_id, model), sums in sorted(models.items())],
    )


class SQLStore(abc.ABC):
    """:class:`~agenttrace._server.store.Store`'s operations in SQL; a subclass gives the cursors, the
    driver's errors, placeholder and dialect, and closes its connections."""

    description = ""
    errors: tuple[type[BaseException], ...]  # the driver's failures (503) ...
    refused: tuple[type[BaseException], ...]  # ... and among them its refusals of the data (400)
    _param = "?"  # the driver's placeholder
    _least, _greatest = "MIN", "MAX"  # two-argument minimum and maximum
    _contains = "instr({0}, {1}) > 0"  # {0} holds the text {1}
    # Whether text compares by code point, so that a prefix is a range of an index (PostgreSQL's
    # collation may order otherwise: a prefix is then checked with substr alone).
    _binary_text = True

    @abc.abstractmethod
    def _cursor(self, write: bool = False) -> contextlib.AbstractContextManager[Any]:
        """A cursor of a connection held for the block; with ``write``, in one transaction."""

    def _expiring(self, cursor: Any) -> bool:
        """Whether this store may delete expired traces now (a subclass answers False while another does)."""
        return True

    def _lock_traces(self, cursor: Any, trace_ids: Sequence[str]) -> None:
        """Hold the write lock of each trace (``trace_ids`` in order) for the transaction, so that an
        insert and a delete of one trace never interleave. SQLite runs one write transaction at a
        time: nothing to do; PostgreSQL's stores take a lock per trace."""
        return

    def _sql(self, text: str) -> str:
        return text if self._param == "?" else text.replace("?", self._param)

    def add(self, rows: Sequence[SpanRow]) -> int:
        if not rows:
            return 0
        # In key order: two requests holding some of the same spans then take their row locks in
        # the same order (spans, then traces, then models), so one waits for the other instead of
        # the two deadlocking (PostgreSQL).
        rows = sorted(rows, key=lambda r: (r.trace_id, r.span_id))
        with self._cursor(write=True) as cursor:
            self._lock_traces(cursor, sorted({r.trace_id for r in rows}))
            new: list[SpanRow] = []  # the spans stored now, in key order
            for at in range(0, len(rows), INSERT_CHUNK):
                chunk = rows[at : at + INSERT_CHUNK]
                values = [
                    value
                    for r in chunk
                    for value in (
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
                        r.proto,
                    )
                ]
                # Spans are new but for an exporter's retry: inserted without RETURNING (its rows
                # cost a step each), and only a chunk some of whose spans were stored before is
                # inserted again, with RETURNING, to learn which of them are new.
                cursor.execute("SAVEPOINT agenttrace_chunk")
                cursor.execute(self._sql(_insert(len(chunk), False)), values)
                if cursor.rowcount == len(chunk):
                    new += chunk
                else:
                    cursor.execute("ROLLBACK TO SAVEPOINT agenttrace_chunk")
                    cursor.execute(self._sql(_insert(len(chunk), True)), values)
                    # Only the spans stored now count (a span sent twice is counted once), each once
                    # (the first of a key the request holds twice is the one stored).
                    stored = {(str(t), str(s)) for t, s in cursor.fetchall()}
                    for r in chunk:
                        key = (r.trace_id, r.span_id)
                        if key in stored:
                            stored.discard(key)
                            new.append(r)
                cursor.execute("RELEASE SAVEPOINT agenttrace_chunk")
            if new:
                traces, models = _summed(new)
                upsert = _UPSERT_TRACE.format(least=self._least, greatest=self._greatest)
                cursor.executemany(self._sql(upsert), traces)
                if models:
                    cursor.executemany(self._sql(_UPSERT_MODEL), models)
        return len(new)

    def traces(self, limit: int = 100, offset: int = 0, where: TraceFilter | None = None) -> list[TraceSummary]:
        where = where or TraceFilter()
        with self._cursor() as cursor:
            conditions, params = self._conditions(where, self._rare_model(cursor, where.model))
            text = f"{_LISTED}{' WHERE ' + ' AND '.join(conditions) if conditions else ''}"
            # Newest first, along the listing's index: a page reads its rows and no more.
            sql = self._sql(text + " ORDER BY first_ns DESC, trace_id DESC LIMIT ? OFFSET ?")
            cursor.execute(sql, (*params, limit, offset))
            return self._with_usage(cursor, [_summary(row) for row in cursor.fetchall()])

    def _model_range(self, model: str) -> tuple[str, list[Any]]:
        """The condition on ``m.model`` that a model prefix sets, and its parameters."""
        exact = "substr(m.model, 1, ?) = ?"
        if not self._binary_text:
            return exact, [len(model), model]
        return f"m.model >= ? AND m.model < ? AND {exact}", [model, model + "\U0010ffff", len(model), model]

    def _rare_model(self, cursor: Any, model: str) -> bool:
        """Whether fewer than RARE_MODEL (trace, model) rows have a model beginning with ``model``.

        A model filter reads the listing's index newest first and looks each trace's models up:
        quick when the model is common, a scan of every trace when it is rare. A rare model's
        traces are few: listed from them instead (a sort of fewer than RARE_MODEL rows).
        """
        if not model or not self._binary_text:
            return False
        condition, params = self._model_range(model)
        count = f"SELECT COUNT(*) FROM (SELECT 1 FROM agenttrace_trace_models m WHERE {condition} LIMIT ?) c"  # noqa: S608 - constants only
        cursor.execute(self._sql(count), (*params, RARE_MODEL))
        return bool(int(cursor.fetchone()[0]) < RARE_MODEL)

    def _conditions(self, where: TraceFilter, rare_model: bool = False) -> tuple[list[str], list[Any]]:
        conditions: list[str] = []
        params: list[Any] = []
        if where.before is not None:
            # Listed after the cursor's trace: (first_ns, trace_id) below it, as the index reads.
            conditions.append("first_ns <= ? AND (first_ns < ? OR trace_id < ?)")
            params += [where.before[0], where.before[0], where.before[1]]
        if where.since_ns is not None:
            conditions.append("first_ns >= ?")
            params.append(where.since_ns)
        if where.until_ns is not None:
            conditions.append("first_ns < ?")
            params.append(where.until_ns)
        if where.failed is not None:
            conditions.append("failed = ?")
            params.append(int(where.failed))
        if where.mode:
            conditions.append("run_mode = ?")
            params.append(where.mode)
        if where.name:
            shown = "CASE WHEN run_key <> '' THEN run_key ELSE first_key END"  # columns of the index
            conditions.append(self._contains.format(shown, "?"))
            params.append(where.name.lower())
        if len(where.trace_id) == 32:
            conditions.append("trace_id = ?")
            params.append(where.trace_id)
        elif where.trace_id:
            # A range of the primary key ("g" follows every hex digit), checked exactly by substr.
            conditions.append("trace_id >= ? AND trace_id < ? AND substr(trace_id, 1, ?) = ?")
            params += [where.trace_id, where.trace_id + "g", len(where.trace_id), where.trace_id]
        if where.model:
            condition, values = self._model_range(where.model)
            if rare_model:
                # constants only (the values are parameters)
                conditions.append(f"trace_id IN (SELECT m.trace_id FROM agenttrace_trace_models m WHERE {condition})")  # noqa: S608
            else:
                conditions.append(
                    "EXISTS (SELECT 1 FROM agenttrace_trace_models m WHERE m.trace_id = agenttrace_traces.trace_id "  # noqa: S608
                    f"AND {condition})"
                )
            params += values
        return conditions, params

    def trace(self, trace_id: str) -> TraceSummary | None:
        sql = self._sql(f"{_LISTED} WHERE trace_id = ?")
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
        sql = self._sql("SELECT line, proto FROM agenttrace_spans WHERE trace_id = ? ORDER BY start_ns, span_id")
        with self._cursor() as cursor:
            cursor.execute(sql, (trace_id,))
            return [stored_text(line, proto) for line, proto in cursor.fetchall()]

    # --- the run page's reads: a trace in parts, each bounded (docs/server.md, "The run page") ---

    def span_lines(
        self, trace_id: str, after: tuple[int, str] | None = None, limit: int = 200, max_bytes: int = 2**21
    ) -> list[tuple[int, str, str]]:
        keyset = "" if after is None else " AND (start_ns > ? OR (start_ns = ? AND span_id > ?))"
        sql = self._sql(
            f"SELECT start_ns, span_id, line, proto FROM agenttrace_spans WHERE trace_id = ?{keyset} "  # noqa: S608 - constants only
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
                for start_ns, span_id, stored, proto in rows:
                    line = stored_text(stored, proto)
                    out.append((int(start_ns), span_id, line))
                    size += len(line)
                    if size >= max_bytes:
                        break
        return out

    def span_line(self, trace_id: str, span_id: str) -> str | None:
        sql = self._sql("SELECT line, proto FROM agenttrace_spans WHERE trace_id = ? AND span_id = ?")
        with self._cursor() as cursor:
            cursor.execute(sql, (trace_id, span_id))
            row = cursor.fetchone()
            return None if row is None else stored_text(*row)

    def span_outline(self, trace_id: str) -> list[tuple[str, str, int]]:
        sql = self._sql("SELECT span_id, parent_span_id, start_ns FROM agenttrace_spans WHERE trace_id = ?")
        with self._cursor() as cursor:
            cursor.execute(sql, (trace_id,))
            return [(str(a), str(b), int(c)) for a, b, c in cursor.fetchall()]

    def run_lines(self, trace_id: str) -> list[str]:
        sql = self._sql(
            "SELECT line, proto FROM agenttrace_spans WHERE trace_id = ? AND kind = 'run' ORDER BY start_ns, span_id"
        )
        with self._cursor() as cursor:
            cursor.execute(sql, (trace_id,))
            return [stored_text(line, proto) for line, proto in cursor.fetchall()]

    def delete(self, trace_ids: Sequence[str]) -> int:
        with self._cursor(write=True) as cursor:
            return self._delete(cursor, trace_ids)

    def _delete(self, cursor: Any, trace_ids: Sequence[str]) -> int:
        """Delete the traces in the cursor's transaction; how many had a summary row."""
        ids = [(trace_id,) for trace_id in sorted(set(trace_ids))]
        if not ids:
            return 0
        # Each trace's lock first (see _lock_traces): an insert of the same trace running meanwhile
        # either committed before (deleted whole here) or waits, and then makes the row again with
        # only its own spans, which outlive this delete.
        self._lock_traces(cursor, [trace_id for (trace_id,) in ids])
        deleted = 0
        for (trace_id,) in ids:
            cursor.execute(self._sql("DELETE FROM agenttrace_traces WHERE trace_id = ?"), (trace_id,))
            deleted += max(int(cursor.rowcount), 0)
        cursor.executemany(self._sql("DELETE FROM agenttrace_trace_models WHERE trace_id = ?"), ids)
        cursor.executemany(self._sql("DELETE FROM agenttrace_spans WHERE trace_id = ?"), ids)
        return deleted

    def expire(self, before_ns: int, batch: int = 100) -> int:
        select = self._sql("SELECT trace_id FROM agenttrace_traces WHERE first_ns < ? ORDER BY first_ns LIMIT ?")
        with self._cursor(write=True) as cursor:
            if not self._expiring(cursor):
                return 0
            cursor.execute(select, (before_ns, batch))
            return self._delete(cursor, [str(row[0]) for row in cursor.fetchall()])
