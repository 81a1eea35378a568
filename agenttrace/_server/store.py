"""Where the server keeps spans: SQLite (the default, a file) or PostgreSQL.

One table, ``agenttrace_spans``, one row per span keyed by (trace id, span id): a span sent twice
(an exporter's retry after a lost answer, a spool resent after a crash) is stored once. A trace
is the spans that share its id; the listing aggregates them, so spans of one trace may arrive in
any order, in any number of requests, over any time.

Both stores are safe to use from many threads at once, as the server's request handlers do:
SQLite gets a connection per thread (WAL journal, writes serialized by SQLite itself), PostgreSQL
a connection pool (``psycopg_pool``).
"""

from __future__ import annotations

import contextlib
import queue
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agenttrace._core.errors import ConfigurationError
from agenttrace._server.ingest import SpanRow

__all__ = ["PostgresStore", "SQLiteStore", "Store", "StoreBusyError", "TraceSummary", "open_store"]

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
        }


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


class StoreBusyError(RuntimeError):
    """Every connection of the store stayed in use for the whole wait."""


class Store:
    """The operations the server needs; :class:`SQLiteStore` and :class:`PostgresStore` give them."""

    description = ""
    _param = "?"  # the driver's placeholder
    # What the driver raises when the database fails (answered 503: try again later), and among
    # those, what it raises when it refuses the data itself (answered 400: never retried).
    errors: tuple[type[BaseException], ...] = (sqlite3.Error, StoreBusyError)
    refused: tuple[type[BaseException], ...] = (sqlite3.DataError, sqlite3.IntegrityError, OverflowError)

    def _sql(self, text: str) -> str:
        return text if self._param == "?" else text.replace("?", self._param)

    @contextlib.contextmanager
    def _cursor(self, write: bool = False) -> Iterator[Any]:
        raise NotImplementedError
        yield  # pragma: no cover

    def add(self, rows: Sequence[SpanRow]) -> int:
        """Store ``rows`` in one transaction (all or none); return how many were new (not stored before)."""
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
        """The most recent traces first (by their earliest span's start)."""
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
        """The trace's spans as OTLP JSON lines, in start order (empty if the trace is unknown)."""
        sql = self._sql("SELECT line FROM agenttrace_spans WHERE trace_id = ? ORDER BY start_ns, span_id")
        with self._cursor() as cursor:
            cursor.execute(sql, (trace_id,))
            return [row[0] for row in cursor.fetchall()]

    def close(self) -> None:
        """Release the store's connections."""


# One schema for both stores (SQLite reads BIGINT as its 64-bit INTEGER).
_SCHEMA = """
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


class SQLiteStore(Store):
    """A SQLite database file, through a small pool of connections (WAL journal)."""

    MAX_CONNECTIONS = 8

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.description = f"SQLite {self.path}"
        self._idle: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = self._acquire()
            try:
                connection.executescript(_SCHEMA)
            finally:
                self._idle.put(connection)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigurationError(
                f"database {self.path} cannot be opened as a SQLite database: {exc}; "
                "expected a writable file path (sqlite:///path/to/file.db)"
            ) from None

    def _acquire(self) -> sqlite3.Connection:
        """An idle connection, a new one while there are fewer than MAX_CONNECTIONS, else the next freed."""
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if len(self._all) < self.MAX_CONNECTIONS:
                # Autocommit; transactions are explicit (BEGIN IMMEDIATE: a writer waits for the
                # other writer, up to the busy timeout, instead of failing at commit).
                connection = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")
                self._all.append(connection)
                return connection
        try:
            return self._idle.get(timeout=30)
        except queue.Empty:
            raise StoreBusyError(
                f"all {self.MAX_CONNECTIONS} connections to {self.path} stayed busy for 30 s"
            ) from None

    @contextlib.contextmanager
    def _cursor(self, write: bool = False) -> Iterator[Any]:
        connection = self._acquire()
        cursor = connection.cursor()
        try:
            if write:
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    yield cursor
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):  # the original error is the one to report
                        cursor.execute("ROLLBACK")
                    raise
                cursor.execute("COMMIT")
            else:
                yield cursor
        finally:
            cursor.close()
            self._release(connection)

    def _release(self, connection: sqlite3.Connection) -> None:
        """Back to the pool, with no transaction left open; a connection that cannot end one is closed."""
        if connection.in_transaction:
            try:
                connection.execute("ROLLBACK")
            except sqlite3.Error:
                with self._lock:
                    self._all = [c for c in self._all if c is not connection]
                with contextlib.suppress(sqlite3.Error):
                    connection.close()
                return
        self._idle.put(connection)

    def close(self) -> None:
        with self._lock:
            connections, self._all = self._all, []
        for connection in connections:
            with contextlib.suppress(sqlite3.Error):
                connection.close()


POSTGRES_HINT = "pip install 'agenttrace[postgres]'"


class PostgresStore(Store):
    """A PostgreSQL database, through a ``psycopg_pool`` connection pool."""

    _param = "%s"

    def __init__(self, dsn: str) -> None:
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError as exc:
            raise ConfigurationError(
                f"database {_redacted(dsn)} is PostgreSQL, which needs the psycopg driver ({exc.name} is "
                f"not installed): {POSTGRES_HINT}"
            ) from None
        parts = urlsplit(dsn)
        # No user, password or query (which may hold one) in what pages and logs show.
        self.description = f"PostgreSQL {parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"
        from psycopg_pool import PoolTimeout

        self.errors = (psycopg.Error, PoolTimeout)
        self.refused = (psycopg.DataError, psycopg.IntegrityError)
        try:
            with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as connection:
                # Two servers starting at once on a new database: the second waits for the first.
                connection.execute("SELECT pg_advisory_lock(727271)")
                try:
                    connection.execute(_SCHEMA)
                finally:
                    connection.execute("SELECT pg_advisory_unlock(727271)")
        except psycopg.Error as exc:
            raise ConfigurationError(
                f"database {_redacted(dsn)} cannot be used: {str(exc).strip()}; "
                "expected a reachable PostgreSQL database the user may create tables in"
            ) from None
        self._pool = ConnectionPool(dsn, min_size=1, max_size=8, open=True, kwargs={"connect_timeout": 10})

    @contextlib.contextmanager
    def _cursor(self, write: bool = False) -> Iterator[Any]:
        # The pool's connection context commits at the end, or rolls back on an exception.
        with self._pool.connection() as connection, connection.cursor() as cursor:
            yield cursor

    def close(self) -> None:
        self._pool.close()


_QUERY_SECRET = re.compile(r"(?i)((?:^|&)(?:ssl)?password=)[^&]*")


def _redacted(dsn: str) -> str:
    """``dsn`` without its passwords (after the user name, and ``password=`` or ``sslpassword=``
    in the query), for messages."""
    parts = urlsplit(dsn)
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':', 1)[0]}:***@{host}"
    return parts._replace(netloc=netloc, query=_QUERY_SECRET.sub(r"\1***", parts.query)).geturl()


def open_store(database: str) -> Store:
    """The store ``database`` names: ``sqlite:///path``, a plain file path, or ``postgresql://...``."""
    text = database.strip()
    if not text:
        raise ConfigurationError("database is empty; expected sqlite:///path/to/file.db or postgresql://...")
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in ("postgresql", "postgres"):
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
            f"database {_redacted(text)!r}: scheme {scheme!r} is not supported; "
            "expected sqlite:///path or postgresql://..."
        )
    return SQLiteStore(text)
