"""The SQLite store: a database file, created with its folder at the first start, shared by the
request handlers' threads through a small pool of connections (WAL journal, writes serialized by
SQLite itself)."""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agenttrace._core.errors import ConfigurationError
from agenttrace._server.store.sql import BACKFILL, SCHEMA, SUMMARY_SCHEMA, SQLStore, migrations

__all__ = ["SQLiteStore", "StoreBusyError"]


class StoreBusyError(RuntimeError):
    """Every connection of the store stayed in use for the whole wait."""


# The WAL is written back into the database by a thread of the store's own, every second, rather
# than by the writer whose commit passes 1,000 pages (SQLite's default): that was half an
# ingest's insert time. The writers' own checkpoint stays as a backstop, at 64 MiB of WAL.
CHECKPOINT_INTERVAL = 1.0
AUTOCHECKPOINT_BYTES = 64 * 2**20
# A new database's page size: a span's row (a few KB of payloads) then fits in its page instead of
# spilling into overflow pages, which halves the time to store a batch of realistic spans. A
# database made with another page size keeps it (SQLite changes it only on an empty file).
PAGE_SIZE = 16_384


class _Checkpointer(threading.Thread):
    """Checkpoints the WAL of ``path`` every CHECKPOINT_INTERVAL seconds (PASSIVE: it never makes a
    reader or writer wait) on a connection of its own; SQLite runs it without the GIL."""

    def __init__(self, path: Path) -> None:
        super().__init__(name="agenttrace-sqlite-checkpoint", daemon=True)
        self._path = path
        self._stopped = threading.Event()

    def run(self) -> None:
        try:
            connection = sqlite3.connect(self._path, timeout=5, isolation_level=None, check_same_thread=False)
        except sqlite3.Error:
            return  # the writers' own checkpoint remains
        try:
            while not self._stopped.wait(CHECKPOINT_INTERVAL):
                with contextlib.suppress(sqlite3.Error):  # busy, or the file went away: the next turn
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            connection.close()

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=10)


class SQLiteStore(SQLStore):
    """A SQLite database file, through a small pool of connections (WAL journal)."""

    MAX_CONNECTIONS = 8
    errors: tuple[type[BaseException], ...] = (sqlite3.Error, StoreBusyError)
    refused: tuple[type[BaseException], ...] = (sqlite3.DataError, sqlite3.IntegrityError, OverflowError)

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
                # One transaction, the writer's lock taken first: a second server starting on the
                # same file at once waits, then finds the schema made.
                connection.execute("BEGIN IMMEDIATE")
                try:
                    self._schema(connection)
                    connection.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        connection.execute("ROLLBACK")
                    raise
            finally:
                self._idle.put(connection)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigurationError(
                f"database {self.path} cannot be opened as a SQLite database: {exc}; "
                "expected a writable file path (sqlite:///path/to/file.db)"
            ) from None
        self._checkpointer = _Checkpointer(self.path)
        self._checkpointer.start()

    @staticmethod
    def _schema(connection: sqlite3.Connection) -> None:
        """Create the tables, or bring those of an older server up to date."""
        for statement in SCHEMA.split(";"):
            if statement.strip():
                connection.execute(statement)
        columns = {row[1] for row in connection.execute("PRAGMA table_info(agenttrace_spans)")}
        for statement in migrations(columns):
            connection.execute(statement)
        found = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'agenttrace_traces'"
        summarized = connection.execute(found).fetchone() is not None
        for statement in SUMMARY_SCHEMA:
            connection.execute(statement)
        if not summarized:
            for statement in BACKFILL:
                connection.execute(statement)
        # A write now, so that a database the server can read but not write (a read-only
        # mount, a file it does not own) is refused at start, not answered 503 at every
        # ingest: writing the header's user_version with the value it has changes nothing.
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        connection.execute(f"PRAGMA user_version = {int(version)}")

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
                connection.execute(f"PRAGMA page_size={PAGE_SIZE}")  # before WAL: a no-op on a database made
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")
                page = int(connection.execute("PRAGMA page_size").fetchone()[0])
                connection.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_BYTES // page}")
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
        """Close every connection of the pool (the checkpoint thread first)."""
        checkpointer = getattr(self, "_checkpointer", None)
        if checkpointer is not None:
            checkpointer.stop()
        with self._lock:
            connections, self._all = self._all, []
        for connection in connections:
            with contextlib.suppress(sqlite3.Error):
                connection.close()
