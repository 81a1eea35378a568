"""Several ``agenttrace server`` processes on one PostgreSQL database, as behind a load balancer:
they start at once (on a new database, and on one of an older server), each reads what another
stored, deletes are seen by all, concurrent ingest adds up, and retention run by all deletes each
trace once and leaves no span without its trace."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx

from .conftest import KEY, Server, wait_for
from .test_listing import AUTH, T, _ids, _send, _span, make_old_database
from .test_server import _request


def _at_once(count: int, args: list[str], tmp_path: Path, started: list[Server]) -> list[Server]:
    """``count`` servers started at the same moment (each its own process)."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def start() -> None:
        barrier.wait()
        try:
            started.append(Server(args, tmp_path))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return started


def _orphans(dsn: str) -> tuple[int, int]:
    """(spans whose trace has no summary row, summary rows whose span count is not their spans')."""
    import psycopg

    with psycopg.connect(dsn) as connection:
        alone = connection.execute(
            "SELECT COUNT(*) FROM agenttrace_spans s WHERE NOT EXISTS "
            "(SELECT 1 FROM agenttrace_traces t WHERE t.trace_id = s.trace_id)"
        ).fetchone()
        wrong = connection.execute(
            "SELECT COUNT(*) FROM agenttrace_traces t WHERE t.spans <> "
            "(SELECT COUNT(*) FROM agenttrace_spans s WHERE s.trace_id = t.trace_id)"
        ).fetchone()
    assert alone is not None
    assert wrong is not None
    return int(alone[0]), int(wrong[0])


def test_two_servers_on_one_database(postgres_dsn: str, tmp_path: Path) -> None:
    """Both start at once on a new database; each serves what the other stored and deleted."""
    started: list[Server] = []
    try:
        one, two = _at_once(2, ["--database", postgres_dsn, "--api-key", KEY], tmp_path, started)
        _send(one, _span(T[0], 1, "stored-by-one", time.time_ns()))
        assert _ids(two, "") == [T[0]]
        assert two.get(f"/api/traces/{T[0]}/download", headers=AUTH).text.count("stored-by-one") == 1
        # The same trace's spans sent to both at once, each span several times: counted once.
        trace = "cd" * 16
        body = _request(trace, 300).SerializeToString()
        headers = {**AUTH, "Content-Type": "application/x-protobuf"}

        def client(server: Server) -> None:
            with httpx.Client(timeout=60) as http:
                for _ in range(3):
                    assert http.post(server.url + "/v1/traces", content=body, headers=headers).status_code == 200

        threads = [threading.Thread(target=client, args=(server,)) for server in (one, two, one, two)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert one.get(f"/api/traces/{trace}", headers=AUTH).json()["spans"] == 300
        assert httpx.delete(f"{two.url}/api/traces/{T[0]}", headers=AUTH, timeout=30).status_code == 204
        assert _ids(one, "") == [trace]
        assert _orphans(postgres_dsn) == (0, 0)
    finally:
        for server in started:
            server.stop()


def test_servers_starting_at_once_on_an_older_database_build_its_summary_once(
    postgres_dsn: str, tmp_path: Path
) -> None:
    """The migration runs under the schema lock: three servers starting together all start, the counts are right."""
    make_old_database(postgres_dsn, tmp_path)
    started: list[Server] = []
    try:
        servers = _at_once(3, ["--database", postgres_dsn, "--api-key", KEY], tmp_path, started)
        for server in servers:
            listed = server.get("/api/traces", headers=AUTH).json()["traces"]
            assert [(t["trace_id"][:2], t["spans"]) for t in listed] == [("bb", 2), ("aa", 3)]
    finally:
        for server in started:
            server.stop()


def test_retention_run_by_two_servers_at_once(postgres_dsn: str, tmp_path: Path, start_server: Any) -> None:
    """Two servers expiring the same traces while a third ingests: every old trace goes, once, nothing is left half."""
    filler = start_server("--database", postgres_dsn, "--api-key", KEY)
    now = time.time_ns()
    day = 86400 * 10**9
    old = [f"{0x200 + i:032x}" for i in range(400)]
    for at in range(0, len(old), 100):
        _send(filler, *[_span(t, s, "old", now - 40 * day + s) for t in old[at : at + 100] for s in (1, 2, 3)])
    started: list[Server] = []
    try:
        _at_once(2, ["--database", postgres_dsn, "--api-key", KEY, "--retention", "30d"], tmp_path, started)
        for i in range(20):  # meanwhile, new traces
            _send(filler, _span(f"{0x900 + i:032x}", 1, "new", now))
        assert wait_for(lambda: len(_ids(filler, "limit=1000")) == 20, timeout=60)
        assert _ids(filler, "limit=1000&name=old") == []
        for server in started:
            assert server.process.poll() is None
            assert server.get("/healthz").text == "ok"
            assert "Traceback" not in server.log.read_text()
        assert _orphans(postgres_dsn) == (0, 0)
    finally:
        for server in started:
            server.stop()
