"""The PostgreSQL store (the ``postgres`` extra: psycopg 3 and its pool, imported only when a
``postgresql://`` address is opened), and :func:`redacted`, which takes the passwords out of an
address before any message shows it."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from typing import Any

from agenttrace._core.errors import ConfigurationError
from agenttrace._server.store.sql import BACKFILL, SCHEMA, SUMMARY_SCHEMA, SQLStore, migrations

__all__ = ["POSTGRES_HINT", "PostgresStore", "redacted"]

POSTGRES_HINT = "pip install 'agenttrace[postgres]'"


class PostgresStore(SQLStore):
    """A PostgreSQL database, through a ``psycopg_pool`` connection pool."""

    _param = "%s"
    _least, _greatest = "LEAST", "GREATEST"
    _contains = "strpos({0}, {1}) > 0"
    _binary_text = False

    def __init__(self, dsn: str) -> None:
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError as exc:
            raise ConfigurationError(
                f"database {redacted(dsn)} is PostgreSQL, which needs the psycopg driver ({exc.name} is "
                f"not installed): {POSTGRES_HINT}"
            ) from None
        dsn, parts = _parse(dsn)
        # No user, password or query (which may hold one) in what pages and logs show.
        self.description = (
            f"PostgreSQL {parts.get('host') or 'localhost'}:{parts.get('port') or 5432}/{parts.get('dbname', '')}"
        )
        from psycopg_pool import PoolTimeout

        self.errors = (psycopg.Error, PoolTimeout)
        self.refused = (psycopg.DataError, psycopg.IntegrityError)
        try:
            with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as connection:
                # Two servers starting at once on a new database: the second waits for the first.
                # Two servers starting at once (on a new database, or one of an older version):
                # the second waits for the first, then finds the schema made.
                connection.execute("SELECT pg_advisory_lock(%s)", (_SCHEMA_LOCK,))
                try:
                    with connection.transaction():
                        _schema(connection)
                finally:
                    connection.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK,))
        except psycopg.Error as exc:
            raise ConfigurationError(
                f"database {redacted(dsn)} cannot be used: {_scrubbed(str(exc).strip(), dsn, parts)}; "
                "expected a reachable PostgreSQL database the user may create tables in"
            ) from None
        self._pool = ConnectionPool(dsn, min_size=1, max_size=8, open=True, kwargs={"connect_timeout": 10})

    def _lock_traces(self, cursor: Any, trace_ids: Sequence[str]) -> None:
        # Read committed gives each statement its own snapshot: without this, a delete whose row
        # DELETE ran before an insert committed, and whose span DELETE ran after, removed the
        # insert's spans and left its summary row counting them. An advisory lock per trace (the
        # 32-bit hash of its id: a collision only makes two traces wait for each other), taken in
        # order by inserts and deletes alike, so no two transactions deadlock on them.
        if trace_ids:
            cursor.executemany("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [(_TRACE_LOCK, t) for t in trace_ids])

    def _expiring(self, cursor: Any) -> bool:
        # One server at a time deletes expired traces; the others skip their turn, not wait for it.
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", (_RETENTION_LOCK,))
        return bool(cursor.fetchone()[0])

    @contextlib.contextmanager
    def _cursor(self, write: bool = False) -> Iterator[Any]:
        # The pool's connection context commits at the end, or rolls back on an exception.
        with self._pool.connection() as connection, connection.cursor() as cursor:
            yield cursor

    def close(self) -> None:
        """Close the pool and its connections."""
        self._pool.close()


# Advisory lock keys (one number space per database): the schema's creation and migrations, and
# the deletion of expired traces.
_SCHEMA_LOCK = 727271
_RETENTION_LOCK = 727272
_TRACE_LOCK = 727273  # with a trace id's hash: its write lock (_lock_traces)
BLOB = "BYTEA"  # PostgreSQL's type of bytes (the spans kept as protobuf)


def _schema(connection: Any) -> None:
    """Create the tables, or bring those of an older server up to date (in the caller's transaction).

    Nothing is run on a database already up to date: a CREATE ... IF NOT EXISTS still locks its
    table, and held through this transaction against the servers already running on the database
    (their ingest and retention), that could deadlock.
    """
    columns = _columns(connection)
    made = {
        str(row[0])
        for row in connection.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND indexname IN "
            "('agenttrace_spans_start', 'agenttrace_traces_listing', 'agenttrace_traces_pkey', "
            "'agenttrace_trace_models_pkey', 'agenttrace_trace_models_model')"
        )
    }
    if len(made) == 5 and not migrations(columns, BLOB):
        return
    connection.execute(SCHEMA)
    for statement in migrations(_columns(connection), BLOB):
        connection.execute(statement)
    summarized = "agenttrace_traces_pkey" in made
    for statement in SUMMARY_SCHEMA:
        connection.execute(statement)
    if not summarized:
        for statement in BACKFILL:
            connection.execute(statement)


def _columns(connection: Any) -> set[str]:
    return {
        str(row[0])
        for row in connection.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'agenttrace_spans' AND table_schema = current_schema()"
        )
    }


# libpq's keywords an address in the keyword form starts with (``host=db user=agent ...``).
_KEYWORDS = frozenset(
    {"host", "hostaddr", "port", "dbname", "user", "password", "passfile", "service", "sslmode", "options"}
)
_KEYWORD_FORM = re.compile(r"^\s*([a-z_]+)\s*=")
_QUERY_SECRET = re.compile(r"(?i)([?&](?:ssl)?password=)[^&]*")
_KEYWORD_SECRET = re.compile(r"(?i)\b((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|\S*)")


def is_keyword_form(address: str) -> bool:
    """True for libpq's keyword form of an address (``host=h user=u password=...``)."""
    found = _KEYWORD_FORM.match(address)
    return found is not None and found.group(1) in _KEYWORDS


def _parse(dsn: str) -> tuple[str, dict[str, Any]]:
    """The address as libpq reads it (the scheme in lower case) and its parts; ConfigurationError if unreadable."""
    scheme, sep, rest = dsn.strip().partition("://")
    text = f"{scheme.lower()}{sep}{rest}" if sep else dsn.strip()
    from psycopg.conninfo import conninfo_to_dict

    try:
        return text, conninfo_to_dict(text)
    except Exception:  # noqa: BLE001 - libpq's own message may repeat the address, password included
        raise ConfigurationError(
            f"database {redacted(dsn)} is not a PostgreSQL address libpq can read; expected "
            "postgresql://user:password@host:port/dbname (special characters percent-encoded) "
            "or the keyword form host=... user=... password=... dbname=..."
        ) from None


def _scrubbed(message: str, dsn: str, parts: dict[str, Any]) -> str:
    """``message`` with the address and its password (as written anywhere in it) replaced."""
    message = message.replace(dsn, redacted(dsn))
    password = str(parts.get("password") or "")
    return message.replace(password, "***") if password else message


def redacted(dsn: str) -> str:
    """``dsn`` without its passwords, for messages: after the user name, and ``password=`` or
    ``sslpassword=`` in the query or the keyword form. Unreadable addresses are hidden more, never less."""
    scheme, sep, rest = dsn.partition("://")
    if not sep:
        return _KEYWORD_SECRET.sub(r"\1***", dsn)
    at = rest.rfind("@")  # the last one: a password may hold an unencoded "@"
    if at >= 0 and ":" in rest[:at]:
        rest = rest[:at].split(":", 1)[0] + ":***" + rest[at:]
    return scheme + sep + _QUERY_SECRET.sub(r"\1***", rest)
