"""Server tests: ``agenttrace server`` run as users run it (its console script, a fresh process),
on 127.0.0.1 with a free port, over each store: SQLite (a file in tmp_path) and PostgreSQL.

PostgreSQL tests need a server the test may create databases on, named by
``AGENTTRACE_TEST_POSTGRES_DSN`` (``.ci/run`` starts Debian's PostgreSQL and sets it); each test
gets a new database, dropped afterwards. Without the variable those tests are skipped, saying so.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.exporters.conftest import CLEAN_ENV

BIN = Path(sys.executable).parent
POSTGRES_VARIABLE = "AGENTTRACE_TEST_POSTGRES_DSN"
KEY = "at_test_server_key_0001"


def chromium_path() -> str | None:
    """Debian's Chromium (which .ci/run installs), or another Chromium on PATH; None without one."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Server:
    """One ``agenttrace server`` process; :attr:`url` once it listens."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        command = shutil.which("agenttrace", path=str(BIN)) or "agenttrace"
        self.log = cwd / f"server-{uuid.uuid4().hex[:8]}.log"
        self._log_handle = self.log.open("w")
        self.process = subprocess.Popen(
            [command, "server", "--port", "0", *args],
            cwd=cwd,
            env={**CLEAN_ENV, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=self._log_handle,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        found = re.search(r"listening on (http://\S+)", line)
        if found is None:
            self.stop()
            raise AssertionError(f"the server did not start: {line!r} {self.log.read_text()}")
        self.url = found.group(1)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(self.url + path, timeout=30, **kwargs)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log_handle.close()


def postgres_admin_dsn() -> str | None:
    return os.environ.get(POSTGRES_VARIABLE) or None


@pytest.fixture
def postgres_dsn() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test (dropped after it)."""
    admin = postgres_admin_dsn()
    if admin is None:
        pytest.skip(f"PostgreSQL tests need {POSTGRES_VARIABLE} (bash .ci/run starts PostgreSQL and sets it)")
    import psycopg

    name = f"agenttrace_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = admin.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store the server offers, as its ``--database`` value."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'server.db'}"
    dsn: str = request.getfixturevalue("postgres_dsn")
    return dsn


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Any]:
    """``start_server(*args, env=None)``: a running server, stopped at the end of the test."""
    started: list[Server] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Server:
        server = Server(list(args), tmp_path, env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def wait_for(predicate: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())
