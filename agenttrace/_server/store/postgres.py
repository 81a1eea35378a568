"""The PostgreSQL store (the ``postgres`` extra: psycopg 3 and its pool, imported only when a
``postgresql://`` address is opened), and :func:`redacted`, which takes the passwords out of an
address before any message shows it."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from agenttrace._core.errors import ConfigurationError
from agenttrace._server.store.sql import SCHEMA, SQLStore

__all__ = ["POSTGRES_HINT", "PostgresStore", "redacted"]

POSTGRES_HINT = "pip install 'agenttrace[postgres]'"


class PostgresStore(SQLStore):
    """A PostgreSQL database, through a ``psycopg_pool`` connection pool."""

    _param = "%s"

    def __init__(self, dsn: str) -> None:
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError as exc:
            raise ConfigurationError(
                f"database {redacted(dsn)} is PostgreSQL, which needs the psycopg driver ({exc.name} is "
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
                    connection.execute(SCHEMA)
                finally:
                    connection.execute("SELECT pg_advisory_unlock(727271)")
        except psycopg.Error as exc:
            raise ConfigurationError(
                f"database {redacted(dsn)} cannot be used: {str(exc).strip()}; "
                "expected a reachable PostgreSQL database the user may create tables in"
            ) from None
        self._pool = ConnectionPool(dsn, min_size=1, max_size=8, open=True, kwargs={"connect_timeout": 10})

    @contextlib.contextmanager
    def _cursor(self, write: bool = False) -> Iterator[Any]:
        # The pool's connection context commits at the end, or rolls back on an exception.
        with self._pool.connection() as connection, connection.cursor() as cursor:
            yield cursor

    def close(self) -> None:
        """Close the pool and its connections."""
        self._pool.close()


_QUERY_SECRET = re.compile(r"(?i)((?:^|&)(?:ssl)?password=)[^&]*")


def redacted(dsn: str) -> str:
    """``dsn`` without its passwords (after the user name, and ``password=`` or ``sslpassword=``
    in the query), for messages."""
    parts = urlsplit(dsn)
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':', 1)[0]}:***@{host}"
    return parts._replace(netloc=netloc, query=_QUERY_SECRET.sub(r"\1***", parts.query)).geturl()
