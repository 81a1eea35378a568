"""``agenttrace server`` end to end: agents export to it, the API lists and serves their traces, a
downloaded trace replays offline; bad requests, keys and settings are refused precisely; a span
sent twice or from many clients at once is stored exactly once. Over SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agenttrace._format.files import read_spans
from tests.exporters.conftest import CLEAN_ENV
from tests.servers import TestServer

from .conftest import BIN, KEY

AGENT = """
import sys, httpx, agenttrace

@agenttrace.run("server-e2e")
def main(url):
    with agenttrace.step("ask", type="llm", prompt="hello"):
        answer = httpx.post(url + "/json?n=1", json={"q": "hello"}).json()
        agenttrace.set_result(answer["id"])
    with agenttrace.step("stream", type="tool"):
        with httpx.stream("GET", url + "/sse?n=3&delay=0") as response:
            chunks = list(response.iter_text())
    return answer["id"], len(chunks)

print("RESULT", *main(sys.argv[1]))
"""


def _agent_env(tmp_path: Path, server_url: str, key: str = KEY, **extra: str) -> dict[str, str]:
    return {
        **CLEAN_ENV,
        "AGENTTRACE_API_KEY": key,
        "AGENTTRACE_API_URL": server_url,
        "AGENTTRACE_TRACE_DIR": str(tmp_path / "traces"),
        "AGENTTRACE_SPOOL_DIR": str(tmp_path / "spool"),
        "AGENTTRACE_EXIT_UPLOAD": "wait",
        "AGENTTRACE_EXIT_TIMEOUT": "20",
        "AGENTTRACE_QUIET": "1",
        **extra,
    }


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def _comparable(path: Path) -> dict[str, Any]:
    return {
        s.span_id: (
            s.trace_id,
            s.parent_span_id,
            s.name,
            s.kind,
            s.start_ns,
            s.end_ns,
            s.attributes,
            s.events,
            s.status_code,
        )
        for s in read_spans(path)
    }


def test_recorded_run_goes_to_the_server_and_its_download_replays_offline(
    database: str, start_server: Any, tmp_path: Path
) -> None:
    server = start_server("--database", database, "--api-key", KEY)
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    with TestServer() as upstream:
        env = _agent_env(tmp_path, server.url, AGENTTRACE_LOCAL_FILES="1")
        recorded = _run([sys.executable, str(agent), upstream.url("")], env, tmp_path)
        assert recorded.returncode == 0, recorded.stderr
        served_before = len(upstream.requests)
        _, recorded_id, chunks = recorded.stdout.split()

        listing = server.get("/api/traces", headers={"Authorization": f"Bearer {KEY}"}).json()["traces"]
        assert [(t["name"], t["calls"], t["spans"], t["status"], t["mode"]) for t in listing] == [
            ("server-e2e", 2, 5, "ok", "record")
        ]
        trace_id = listing[0]["trace_id"]
        download = server.get(f"/api/traces/{trace_id}/download", headers={"Authorization": f"Bearer {KEY}"})
        assert download.status_code == 200
        assert download.headers["content-disposition"] == f'attachment; filename="trace-{trace_id}.jsonl"'
        downloaded = tmp_path / "downloaded.jsonl"
        downloaded.write_bytes(download.content)

        # The server keeps what the agent recorded: span for span, attribute for attribute,
        # payload event for payload event, as the local trace file holds it.
        local = next((tmp_path / "traces").glob("*.jsonl"))
        assert _comparable(downloaded) == _comparable(local)

        # The download replays with no real I/O, in governance: the same answer, none sent upstream.
        replay_env = {**CLEAN_ENV, "AGENTTRACE_TRACE_DIR": str(tmp_path / "replays"), "AGENTTRACE_QUIET": "1"}
        replayed = _run(
            [
                str(BIN / "agenttrace"),
                "replay",
                "--governance-level",
                "governance",
                str(downloaded),
                "--",
                sys.executable,
                str(agent),
                upstream.url(""),
            ],
            replay_env,
            tmp_path,
        )
        assert replayed.returncode == 0, replayed.stderr
        assert replayed.stdout.split() == ["RESULT", recorded_id, chunks]
        assert len(upstream.requests) == served_before


def test_the_api_and_pages_need_a_key_when_the_server_has_keys(start_server: Any, tmp_path: Path) -> None:
    server = start_server("--database", f"sqlite:///{tmp_path / 'keys.db'}", "--api-key", KEY)
    assert server.get("/healthz").text == "ok"  # the one open route
    for path in ("/api/traces", "/", f"/api/traces/{'1' * 32}/download"):
        refused = server.get(path)
        assert refused.status_code == 401, path
    assert server.get("/").headers["www-authenticate"].startswith("Basic")
    assert server.get("/api/traces").headers["www-authenticate"].startswith("Bearer")
    assert server.get("/api/traces", headers={"Authorization": "Bearer at_test_not_the_key_x"}).status_code == 401
    assert server.get("/api/traces", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    # A browser signs in with HTTP Basic, the key as the password.
    assert server.get("/", auth=("anyone", KEY)).status_code == 200
    assert server.get("/", auth=("anyone", "wrong")).status_code == 401
    assert server.post("/v1/traces", content=b"", headers={"Content-Type": "application/x-protobuf"}).status_code == 401


def test_an_agent_with_a_wrong_key_keeps_its_trace_in_the_spool(start_server: Any, tmp_path: Path) -> None:
    server = start_server("--database", f"sqlite:///{tmp_path / 'wrong.db'}", "--api-key", KEY)
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    with TestServer() as upstream:
        done = _run(
            [sys.executable, str(agent), upstream.url("")],
            _agent_env(tmp_path, server.url, key="at_test_some_other_key"),
            tmp_path,
        )
    assert done.returncode == 0, done.stderr  # the agent is never broken by its export
    assert "401" in done.stderr or "rejected" in done.stderr.lower(), done.stderr
    assert list((tmp_path / "spool").iterdir()), "the refused trace waits in the spool for `agenttrace upload`"
    assert server.get("/api/traces", headers={"Authorization": f"Bearer {KEY}"}).json()["traces"] == []
    # Once the key is right, `agenttrace upload` delivers it.
    uploaded = _run([str(BIN / "agenttrace"), "upload"], _agent_env(tmp_path, server.url), tmp_path)
    assert uploaded.returncode == 0, uploaded.stderr
    traces = server.get("/api/traces", headers={"Authorization": f"Bearer {KEY}"}).json()["traces"]
    assert [t["name"] for t in traces] == ["server-e2e"]


def _request(trace: str, spans: int, start: int = 1_700_000_000_000_000_000) -> ExportTraceServiceRequest:
    """A protobuf request of ``spans`` spans of trace ``trace`` (hex), span ids 1..spans."""
    request = ExportTraceServiceRequest()
    scope_spans = request.resource_spans.add().scope_spans.add()
    scope_spans.scope.name = "tests"
    for number in range(1, spans + 1):
        span = scope_spans.spans.add()
        span.trace_id = bytes.fromhex(trace)
        span.span_id = number.to_bytes(8, "big")
        span.name = f"span-{number}"
        span.start_time_unix_nano = start + number
        span.end_time_unix_nano = start + number + 1000
    return request


def test_a_span_sent_twice_or_by_many_clients_at_once_is_stored_once(database: str, start_server: Any) -> None:
    server = start_server("--database", database)
    trace = "ab" * 16
    whole = _request(trace, 400).SerializeToString()
    # Eight clients at once, each sending overlapping halves of the same trace, three times over:
    # every span arrives six times or more, from different connections.
    halves = [_request(trace, 400), _request(trace, 400)]
    del halves[0].resource_spans[0].scope_spans[0].spans[200:]
    del halves[1].resource_spans[0].scope_spans[0].spans[:150]
    bodies = [whole, halves[0].SerializeToString(), halves[1].SerializeToString()]
    statuses: list[int] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        with httpx.Client(timeout=60) as http:
            for round_ in range(3):
                body = bodies[(index + round_) % 3]
                answer = http.post(
                    server.url + "/v1/traces",
                    content=gzip.compress(body),
                    headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
                )
                with lock:
                    statuses.append(answer.status_code)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 24
    [summary] = server.get("/api/traces").json()["traces"]
    assert (summary["trace_id"], summary["spans"]) == (trace, 400)
    lines = server.get(f"/api/traces/{trace}/download").text.splitlines()
    ids = [json.loads(line)["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] for line in lines]
    assert ids == [number.to_bytes(8, "big").hex() for number in range(1, 401)]  # each once, in start order


def test_otlp_json_and_opentelemetrys_own_exporter_are_accepted(start_server: Any, tmp_path: Path) -> None:
    server = start_server("--database", f"sqlite:///{tmp_path / 'json.db'}")
    # OTLP JSON: ids in hex, as a local trace file's line holds them.
    document = {
        "resourceSpans": [
            {
                "resource": {},
                "scopeSpans": [
                    {
                        "scope": {"name": "json-client"},
                        "spans": [
                            {
                                "traceId": "CD" * 16,
                                "spanId": "0102030405060708",
                                "name": "from-json",
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000000000001000",
                                "attributes": [{"key": "answer", "value": {"intValue": "42"}}],
                            }
                        ],
                    }
                ],
            }
        ]
    }
    answer = server.post("/v1/traces", json=document)
    assert (answer.status_code, answer.json()) == (200, {})

    # OpenTelemetry's own OTLP/HTTP exporter, pointed at the server as at any collector.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=server.url + "/v1/traces")))
    with provider.get_tracer("plain-otel").start_as_current_span("from-otel-exporter"):
        pass
    provider.shutdown()

    names = {t["name"]: t for t in server.get("/api/traces").json()["traces"]}
    assert set(names) == {"from-json", "from-otel-exporter"}
    stored = server.get(f"/api/traces/{'cd' * 16}").json()
    assert stored["otlp_spans"][0]["attributes"] == [{"key": "answer", "value": {"intValue": "42"}}]
    assert stored["otlp_spans"][0]["traceId"] == "cd" * 16  # hex ids are kept lower-case


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        (
            b"\xff\xfe not protobuf",
            {"Content-Type": "application/x-protobuf"},
            400,
            "not a protobuf ExportTraceServiceRequest",
        ),
        (b"{not json", {"Content-Type": "application/json"}, 400, "not valid JSON"),
        (
            json.dumps(
                {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz", "spanId": "0102030405060708"}]}]}]}
            ).encode(),
            {"Content-Type": "application/json"},
            400,
            "resourceSpans[0].scopeSpans[0].spans[0].traceId 'xyz': expected 32 hex digits",
        ),
        (
            json.dumps(
                {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "ab" * 16, "spanId": "00" * 8}]}]}]}
            ).encode(),
            {"Content-Type": "application/json"},
            400,
            "spans[0].spanId '0000000000000000': expected 16 hex digits, not all zero",
        ),
        (b"{}", {"Content-Type": "text/plain"}, 415, "Content-Type 'text/plain' is not supported"),
        (
            b"{}",
            {"Content-Type": "application/json", "Content-Encoding": "br"},
            415,
            "Content-Encoding 'br' is not supported",
        ),
        (b"not gzip", {"Content-Type": "application/json", "Content-Encoding": "gzip"}, 400, "not valid gzip"),
    ],
)
def test_bad_requests_are_refused_whole_with_what_was_wrong(
    start_server: Any, tmp_path: Path, body: bytes, headers: dict[str, str], status: int, message: str
) -> None:
    server = start_server("--database", f"sqlite:///{tmp_path / 'bad.db'}")
    answer = server.post("/v1/traces", content=body, headers=headers)
    assert answer.status_code == status
    text = answer.json()["message"] if "json" in headers["Content-Type"] else _status_message(answer.content)
    assert message in text
    assert server.get("/api/traces").json()["traces"] == []


def _status_message(content: bytes) -> str:
    from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]

    return str(Status.FromString(content).message)


def test_a_request_over_the_limit_is_split_by_agenttraces_exporter_until_it_fits(
    start_server: Any, tmp_path: Path
) -> None:
    # 40 calls of 8 KB responses in one run: one export of ~400 KB against a 64 KB limit. The
    # server answers 413; the exporter halves the batch until every part is taken.
    server = start_server("--database", f"sqlite:///{tmp_path / 'limit.db'}", "--max-request-bytes", "65536")
    agent = tmp_path / "agent.py"
    agent.write_text(
        "import sys, httpx, agenttrace\n"
        "@agenttrace.run('many-calls')\n"
        "def main(url):\n"
        "    for i in range(40):\n"
        "        httpx.get(url + f'/big?size=8000&i={i}')\n"
        "main(sys.argv[1])\n"
    )
    with TestServer() as upstream:
        done = _run([sys.executable, str(agent), upstream.url("")], _agent_env(tmp_path, server.url), tmp_path)
    assert done.returncode == 0, done.stderr
    [summary] = server.get("/api/traces").json()["traces"]
    assert (summary["name"], summary["calls"], summary["spans"]) == ("many-calls", 40, 41)
    too_big = server.post("/v1/traces", content=b"x" * 70000, headers={"Content-Type": "application/x-protobuf"})
    assert too_big.status_code == 413
    assert "over the server's limit of 65536 bytes" in _status_message(too_big.content)
    bomb = gzip.compress(b"\0" * 200_000)  # small on the wire, over the limit once inflated
    answer = server.post(
        "/v1/traces", content=bomb, headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
    )
    assert answer.status_code == 413


def test_unknown_and_malformed_trace_ids(start_server: Any, tmp_path: Path) -> None:
    server = start_server("--database", f"sqlite:///{tmp_path / 'ids.db'}")
    assert server.get(f"/api/traces/{'9' * 32}").status_code == 404
    assert server.get(f"/api/traces/{'9' * 32}/download").status_code == 404
    assert server.get(f"/traces/{'9' * 32}").status_code == 404
    assert server.get("/api/traces/not-an-id").status_code == 400
    assert server.get("/api/traces?limit=0").status_code == 400
    assert server.get("/api/traces?limit=abc").status_code == 400


def _cli(args: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return _run([str(BIN / "agenttrace"), "server", *args], {**CLEAN_ENV, **(env or {})}, tmp_path)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["--port", "70000"],
            {},
            "port '70000' (from the command line) is not valid; expected a number from 0 to 65535",
        ),
        ([], {"AGENTTRACE_SERVER_PORT": "http"}, "port 'http' (from AGENTTRACE_SERVER_PORT) is not valid"),
        (["--host", "0.0.0.0"], {}, "host '0.0.0.0' is reachable from other machines, and no API key is set"),
        (["--api-key", "sk-live-secret-value-123"], {}, "API key #1 (from --api-key) is not valid"),
        (
            [],
            {"AGENTTRACE_SERVER_API_KEYS": "at_live_long_enough_key,short"},
            "API key #2 (from AGENTTRACE_SERVER_API_KEYS)",
        ),
        (
            ["--database", "mysql://db/x"],
            {},
            "scheme 'mysql' is not supported; expected sqlite:///path or postgresql://",
        ),
        (["--max-request-bytes", "10"], {}, "max_request_bytes '10' (from the command line) is not valid"),
        (
            ["--database", "postgresql://someone:hunter2secret@127.0.0.1:9/nothing"],
            {},
            "database postgresql://someone:***@127.0.0.1:9/nothing cannot be used",
        ),
    ],
)
def test_bad_settings_stop_the_server_with_what_is_wrong(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    port = [] if "--port" in args or "AGENTTRACE_SERVER_PORT" in env else ["--port", "0"]
    done = _cli([*port, *args], tmp_path, env)
    assert done.returncode == 2
    assert message in done.stderr
    assert "sk-live-secret-value-123" not in done.stderr
    assert "hunter2secret" not in done.stderr


def test_a_port_in_use_is_said_plainly(start_server: Any, tmp_path: Path) -> None:
    server = start_server("--database", f"sqlite:///{tmp_path / 'a.db'}")
    port = server.url.rsplit(":", 1)[1]
    done = _cli(["--port", port, "--database", f"sqlite:///{tmp_path / 'b.db'}"], tmp_path)
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr


def test_the_default_database_is_a_sqlite_file_in_the_working_folder(start_server: Any, tmp_path: Path) -> None:
    server = start_server()
    empty = server.post("/v1/traces", content=b"", headers={"Content-Type": "application/x-protobuf"})
    assert empty.status_code == 200  # an empty request: valid, stores nothing
    assert (tmp_path / ".agenttrace" / "server.db").is_file()


def test_a_database_failure_is_answered_503_so_exporters_retry_later(database: str, start_server: Any) -> None:
    server = start_server("--database", database)
    assert (
        server.post(
            "/v1/traces",
            content=_request("ef" * 16, 2).SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
        ).status_code
        == 200
    )
    # The table goes away under the running server (a restore gone wrong, an operator's mistake).
    if database.startswith("sqlite"):
        with sqlite3.connect(database.split("sqlite:///", 1)[1]) as connection:
            connection.execute("DROP TABLE agenttrace_spans")
    else:
        import psycopg

        with psycopg.connect(database, autocommit=True) as connection:
            connection.execute("DROP TABLE agenttrace_spans")
    answer = server.post(
        "/v1/traces",
        content=_request("ef" * 16, 2).SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert answer.status_code == 503
    assert "the database is unavailable" in _status_message(answer.content)
    assert "server: the database failed: " in server.log.read_text()


def test_agenttrace_download_fetches_a_trace_with_the_agents_settings(start_server: Any, tmp_path: Path) -> None:
    server = start_server("--database", f"sqlite:///{tmp_path / 'dl.db'}", "--api-key", KEY)
    trace = "5a" * 16
    stored = server.post(
        "/v1/traces",
        content=_request(trace, 3).SerializeToString(),
        headers={"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {KEY}"},
    )
    assert stored.status_code == 200
    env = {**CLEAN_ENV, "AGENTTRACE_API_URL": server.url, "AGENTTRACE_API_KEY": KEY}

    def download(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return _run([str(BIN / "agenttrace"), "download", *args], {**env, **extra}, tmp_path)

    done = download(trace.upper())  # ids are read in either case, as the UI and other tools print them
    assert done.returncode == 0, done.stderr
    assert f"trace-{trace}.jsonl  (3 spans of trace {trace})" in done.stdout
    api = server.get(f"/api/traces/{trace}/download", headers={"Authorization": f"Bearer {KEY}"})
    assert (tmp_path / f"trace-{trace}.jsonl").read_bytes() == api.content
    assert len(read_spans(tmp_path / f"trace-{trace}.jsonl")) == 3

    elsewhere = download(trace, "-o", str(tmp_path / "sub" / "x.jsonl"))
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert (tmp_path / "sub" / "x.jsonl").read_bytes() == api.content

    failures = [
        (download("9" * 32), f"has no trace {'9' * 32}"),
        (download(trace, AGENTTRACE_API_KEY="at_test_not_the_right_one"), "it refused the key in AGENTTRACE_API_KEY"),
        (download(trace, AGENTTRACE_API_KEY=""), "AGENTTRACE_API_KEY is not set"),
        (download("xyz"), "trace id 'xyz' is not valid; expected 32 hex digits"),
        (download(trace, "--server", "http://127.0.0.1:9"), "cannot reach http://127.0.0.1:9"),
    ]
    for failed, message in failures:
        assert failed.returncode == 2
        assert message in failed.stderr
    assert sorted(p.name for p in tmp_path.glob("trace-*.jsonl")) == [f"trace-{trace}.jsonl"]  # nothing half-written


@pytest.mark.parametrize("missing", ["uvicorn", "starlette", "jinja2"])
def test_without_the_server_extra_the_command_says_what_to_install(tmp_path: Path, missing: str) -> None:
    # The package is made unimportable in the server's process as an absent one is (sys.modules[name] = None).
    code = (
        f"import sys; sys.modules[{missing!r}] = None; from agenttrace._cli import main; "
        "sys.exit(main(['server', '--port', '0']))"
    )
    done = _run([sys.executable, "-c", code], dict(CLEAN_ENV), tmp_path)
    assert done.returncode == 2
    assert f"({missing} is not installed): pip install 'agenttrace[server]'" in done.stderr
    assert not (tmp_path / ".agenttrace").exists()  # nothing created before the check
