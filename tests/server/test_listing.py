"""The listing's search, filters and paging (API and page), deleting a trace (API and the page's
button, refused to other sites), the summary built for a database of an older server, and
retention; over SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import KEY, wait_for
from .test_ingest_edges import _attr

AUTH = {"Authorization": f"Bearer {KEY}"}
HOUR = 3600 * 10**9
BASE = 1_780_000_000 * 10**9  # 2026-05-28T20:26:40Z


def _span(
    trace: str,
    span_id: int,
    name: str,
    start: int,
    *,
    parent: int | None = None,
    failed: bool = False,
    attributes: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    span: dict[str, Any] = {
        "traceId": trace,
        "spanId": f"{span_id:016x}",
        "name": name,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + 10**6),
        "attributes": attributes or [],
    }
    if parent is not None:
        span["parentSpanId"] = f"{parent:016x}"
    if failed:
        span["status"] = {"code": 2, "message": "boom"}
    return span


def _run(trace: str, name: str, mode: str, start: int, span_id: int = 1) -> dict[str, Any]:
    attributes = [
        _attr("agenttrace.kind", {"stringValue": "run"}),
        _attr("agenttrace.run.name", {"stringValue": name}),
        _attr("agenttrace.run.mode", {"stringValue": mode}),
    ]
    return _span(trace, span_id, name, start, attributes=attributes)


def _llm(trace: str, model: str, start: int, span_id: int = 2, failed: bool = False) -> dict[str, Any]:
    attributes = [
        _attr("agenttrace.kind", {"stringValue": "call"}),
        _attr("gen_ai.operation.name", {"stringValue": "chat"}),
        _attr("gen_ai.response.model", {"stringValue": model}),
        _attr("gen_ai.usage.input_tokens", {"intValue": "100"}),
        _attr("gen_ai.usage.output_tokens", {"intValue": "7"}),
    ]
    return _span(trace, span_id, "POST", start + 1000, parent=1, failed=failed, attributes=attributes)


def _document(*spans: dict[str, Any]) -> dict[str, Any]:
    return {"resourceSpans": [{"resource": {}, "scopeSpans": [{"spans": list(spans)}]}]}


def _send(server: Any, *spans: dict[str, Any]) -> None:
    answer = server.post("/v1/traces", json=_document(*spans), headers=AUTH)
    assert answer.status_code == 200, answer.text


def _ids(server: Any, query: str) -> list[str]:
    answer = server.get(f"/api/traces?{query}", headers=AUTH)
    assert answer.status_code == 200, answer.text
    return [t["trace_id"] for t in answer.json()["traces"]]


T = [f"{i:02x}" * 16 for i in range(0x10, 0x18)]  # eight traces, T[i] started i hours after BASE


def _fill(server: Any) -> None:
    _send(server, _run(T[0], "Nightly-Report", "record", BASE), _llm(T[0], "gpt-4o-mini-2024-07-18", BASE))
    _send(server, _run(T[1], "weekly report", "replay", BASE + HOUR), _llm(T[1], "claude-3-5-haiku", BASE + HOUR))
    # T[2]'s spans come in two requests, its run last: its name, start and status are still right.
    _send(server, _llm(T[2], "gpt-4o", BASE + 2 * HOUR + 5, failed=True))
    _send(server, _run(T[2], "chat", "record", BASE + 2 * HOUR))
    for i in range(3, 8):
        _send(server, _span(T[i], 1, f"bulk-{i}", BASE + i * HOUR))


def test_filters_search_and_keyset_paging(database: str, start_server: Any) -> None:
    """Each filter finds its traces, alone and combined; the next cursor walks every trace once, newest first."""
    server = start_server("--database", database, "--api-key", KEY)
    _fill(server)
    newest_first = T[::-1]
    assert _ids(server, "") == newest_first
    chat = server.get(f"/api/traces/{T[2]}", headers=AUTH).json()
    assert (chat["name"], chat["status"], chat["spans"], chat["start_time_unix_nano"]) == (
        "chat",
        "error",
        2,
        BASE + 2 * HOUR,
    )
    assert _ids(server, "name=REPORT") == [T[1], T[0]]  # a part of the name, any case
    assert _ids(server, "name=bulk-5") == [T[5]]  # a trace without a run: its earliest span's name
    assert _ids(server, "status=error") == [T[2]]
    assert _ids(server, "status=ok&name=report") == [T[1], T[0]]
    assert _ids(server, "mode=replay") == [T[1]]
    assert _ids(server, "mode=record") == [T[2], T[0]]
    assert _ids(server, "model=gpt-4o") == [T[2], T[0]]  # the beginning of a model name
    assert _ids(server, "model=claude-3-5-haiku") == [T[1]]
    assert _ids(server, "model=GPT") == []
    assert _ids(server, f"trace_id={T[3][:6].upper()}") == [T[3]]
    assert _ids(server, f"trace_id={T[4]}") == [T[4]]
    assert _ids(server, "since=2026-05-28T22:00&until=2026-05-29T00:26:40Z") == [T[3], T[2]]
    assert _ids(server, f"since={BASE + 6 * HOUR}") == [T[7], T[6]]
    assert _ids(server, "until=2026-05-28T21:26:41%2B01:00") == [T[0]]  # an offset: 20:26:41 UTC
    assert _ids(server, "model=gpt&status=ok&since=2026-05-28") == [T[0]]

    walked: list[str] = []
    query = "limit=3"
    while True:
        page = server.get(f"/api/traces?{query}", headers=AUTH).json()
        walked += [t["trace_id"] for t in page["traces"]]
        if page["next"] is None:
            break
        query = f"limit=3&before={page['next']}"
    assert walked == newest_first
    first = server.get("/api/traces?limit=2&name=report", headers=AUTH).json()
    assert first["next"] is None  # two found: no page after
    assert _ids(server, "limit=2&offset=3") == newest_first[3:5]  # offset still pages


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=failed", "status 'failed': expected ok or error"),
        ("mode=live", "mode 'live': expected record or replay"),
        ("trace_id=xyz", "trace_id 'xyz': expected 1 to 32 hex digits"),
        ("since=yesterday", "since 'yesterday': expected an ISO 8601 date or time"),
        ("until=2026-13-01", "until '2026-13-01': expected an ISO 8601 date or time"),
        ("before=12.34", "before '12.34': expected the 'next' cursor of a listing page"),
        ("name=" + "x" * 201, "name: 201 characters; expected at most 200"),
    ],
)
def test_a_bad_filter_is_refused_naming_it(start_server: Any, tmp_path: Path, query: str, message: str) -> None:
    """400 with the parameter, its value and what was expected, from the API and the page alike."""
    server = start_server("--database", f"sqlite:///{tmp_path / 'f.db'}")
    answer = server.get(f"/api/traces?{query}")
    assert answer.status_code == 400
    assert answer.json()["error"].startswith(message)
    page = server.get(f"/?{query}")
    assert page.status_code == 400
    escaped = message.replace("'", "&#39;")
    assert f'<p id="filter-error">{escaped}' in page.text


def test_the_listing_page_filters_and_pages(start_server: Any, tmp_path: Path) -> None:
    """The page's form keeps its filters; the older link carries them and the cursor; newest starts over."""
    server = start_server("--database", f"sqlite:///{tmp_path / 'p.db'}", "--api-key", KEY)
    _fill(server)
    for i in range(60):  # more than a page of record runs
        _send(server, _run(f"{0x40 + i:032x}", f"many-{i}", "record", BASE - (i + 1) * HOUR))
    page = server.get("/?mode=record&name=many", headers=AUTH).text
    assert page.count('<tr class="trace-row">') == 50
    assert '<input name="name" value="many"' in page
    assert '<option value="record" selected>' in page
    assert "many-0<" in page
    assert "many-49<" in page
    assert "many-50<" not in page
    older = page.split('<a id="older" href="/?', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert older == f"name=many&mode=record&before={BASE - 50 * HOUR}.{0x40 + 49:032x}"
    second = server.get(f"/?{older}", headers=AUTH).text
    assert second.count('<tr class="trace-row">') == 10
    assert "many-50<" in second
    assert "many-59<" in second
    assert 'id="older"' not in second
    assert '<a id="newest" href="/?name=many&amp;mode=record">' in second
    nothing = server.get("/?status=error&mode=replay", headers=AUTH).text
    assert 'id="none-found"' in nothing
    assert 'id="empty"' not in nothing


def test_a_trace_is_deleted_through_the_api_with_its_key(database: str, start_server: Any) -> None:
    """DELETE needs the key, removes the trace's spans and summary, and leaves the others."""
    server = start_server("--database", database, "--api-key", KEY)
    _fill(server)
    assert httpx_delete(server, f"/api/traces/{T[2]}", {}).status_code == 401
    assert httpx_delete(server, f"/api/traces/{T[2]}", AUTH).status_code == 204
    assert httpx_delete(server, f"/api/traces/{T[2]}", AUTH).status_code == 404
    assert httpx_delete(server, "/api/traces/not-a-trace", AUTH).status_code == 400
    assert server.get(f"/api/traces/{T[2]}", headers=AUTH).status_code == 404
    assert server.get(f"/api/traces/{T[2]}/download", headers=AUTH).status_code == 404
    assert _ids(server, "") == [t for t in T[::-1] if t != T[2]]
    assert _ids(server, "model=gpt") == [T[0]]
    # Spans of the deleted trace sent again make it again, from those spans alone.
    _send(server, _run(T[2], "chat", "record", BASE + 2 * HOUR))
    again = server.get(f"/api/traces/{T[2]}", headers=AUTH).json()
    assert (again["spans"], again["status"], again["llm_calls"]) == (1, "ok", 0)


def httpx_delete(server: Any, path: str, headers: dict[str, str]) -> Any:
    import httpx

    return httpx.delete(server.url + path, headers=headers, timeout=30)


def test_the_pages_delete_button_refuses_other_sites(start_server: Any, tmp_path: Path) -> None:
    """A form posted from another site (with the browser's kept credentials) deletes nothing; the page's own does."""
    server = start_server("--database", f"sqlite:///{tmp_path / 'd.db'}", "--api-key", KEY)
    _fill(server)
    basic = {"Authorization": "Basic " + __import__("base64").b64encode(f"me:{KEY}".encode()).decode()}
    host = server.url.removeprefix("http://")
    listing = server.get("/", headers=basic).text
    assert f'<form class="delete" method="post" action="/traces/{T[1]}/delete">' in listing
    hostile = [
        {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "same-site", "Origin": f"http://{host}"},  # a sibling subdomain is another site
        {},  # neither header: no browser posts a form so
    ]
    for headers in hostile:
        answer = server.post(f"/traces/{T[1]}/delete", headers={**basic, **headers}, follow_redirects=False)
        assert answer.status_code == 403, headers
        assert "from the server's own pages only" in answer.text
    assert T[1] in _ids(server, "")
    assert server.post(f"/traces/{T[1]}/delete", headers={"Origin": f"http://{host}"}).status_code == 401
    own = server.post(f"/traces/{T[1]}/delete", headers={**basic, "Origin": f"http://{host}"}, follow_redirects=False)
    assert (own.status_code, own.headers["location"]) == (303, "/")
    assert T[1] not in _ids(server, "")
    fetched = server.post(
        f"/traces/{T[0]}/delete", headers={**basic, "Sec-Fetch-Site": "same-origin"}, follow_redirects=False
    )
    assert fetched.status_code == 303
    assert server.post(f"/traces/{T[0]}/delete", headers={**basic, "Sec-Fetch-Site": "same-origin"}).status_code == 404


OLD_SCHEMA = """
CREATE TABLE agenttrace_spans (trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_span_id TEXT NOT NULL,
    name TEXT NOT NULL, kind TEXT NOT NULL, start_ns BIGINT NOT NULL, end_ns BIGINT NOT NULL,
    status_code INTEGER NOT NULL, run_name TEXT NOT NULL, run_mode TEXT NOT NULL, line TEXT NOT NULL,
    model TEXT NOT NULL DEFAULT '', input_tokens BIGINT NOT NULL DEFAULT 0, output_tokens BIGINT NOT NULL DEFAULT 0,
    cache_read_tokens BIGINT NOT NULL DEFAULT 0, cache_creation_tokens BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (trace_id, span_id))
"""
OLD_ROWS = [
    # trace aa: a child that started first, a failed LLM call, then the run span; trace bb: no run.
    ("aa" * 16, "01" * 8, "03" * 8, "early-child", "step", 5, 50, 0, "", "", "{}", "", 0, 0, 0, 0),
    ("aa" * 16, "02" * 8, "03" * 8, "POST", "call", 20, 30, 2, "", "", "{}", "gpt-4o", 11, 3, 0, 0),
    ("aa" * 16, "03" * 8, "", "r", "run", 10, 100, 0, "Old Run", "replay", "{}", "", 0, 0, 0, 0),
    ("bb" * 16, "01" * 8, "", "zz-root", "", 200, 300, 0, "", "", "{}", "", 0, 0, 0, 0),
    ("bb" * 16, "02" * 8, "01" * 8, "aa-child", "", 250, 260, 0, "", "", "{}", "", 0, 0, 0, 0),
]


def make_old_database(database: str, tmp_path: Path) -> None:
    """The tables of the server before the summary, with OLD_ROWS."""
    insert = "INSERT INTO agenttrace_spans VALUES ({})"
    if database.startswith("sqlite:///"):
        old = sqlite3.connect(database.removeprefix("sqlite:///"))
        with old:
            old.execute(OLD_SCHEMA)
            old.executemany(insert.format(", ".join("?" * 16)), OLD_ROWS)
        old.close()
        return
    import psycopg

    with psycopg.connect(database, autocommit=True) as old:
        old.execute(OLD_SCHEMA)
        with old.cursor() as cursor:
            cursor.executemany(insert.format(", ".join(["%s"] * 16)), OLD_ROWS)


def test_a_database_of_an_older_server_gets_its_summary(database: str, start_server: Any, tmp_path: Path) -> None:
    """At the first start, the per-trace rows are computed from the stored spans, then kept up to date."""
    make_old_database(database, tmp_path)
    server = start_server("--database", database, "--api-key", KEY)
    listed = server.get("/api/traces", headers=AUTH).json()["traces"]
    got = [
        (t["trace_id"][:2], t["name"], t["mode"], t["status"], t["spans"], t["calls"], t["start_time_unix_nano"])
        for t in listed
    ]
    assert got == [("bb", "zz-root", "", "ok", 2, 0, 200), ("aa", "Old Run", "replay", "error", 3, 1, 5)]
    assert (listed[1]["llm_calls"], listed[1]["input_tokens"], listed[1]["output_tokens"]) == (1, 11, 3)
    assert _ids(server, "model=gpt-4o") == ["aa" * 16]
    _send(server, _span("aa" * 16, 9, "later", 1))  # the trace's row goes on from there
    assert server.get(f"/api/traces/{'aa' * 16}", headers=AUTH).json()["spans"] == 4
    # A span sent as protobuf goes into the column the server added; the old rows are served as they were.
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.add(
        trace_id=bytes.fromhex("aa" * 16), span_id=(10).to_bytes(8, "big"), name="as protobuf", start_time_unix_nano=2
    )
    answer = server.post(
        "/v1/traces", content=request.SerializeToString(), headers={**AUTH, "Content-Type": "application/x-protobuf"}
    )
    assert answer.status_code == 200, answer.text
    lines = server.get(f"/api/traces/{'aa' * 16}/download", headers=AUTH).text.splitlines()
    assert lines[2:] == ["{}", "{}", "{}"]  # the old rows (started at 5, 10 and 20), as stored
    assert [json.loads(line)["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"] for line in lines[:2]] == [
        "later",
        "as protobuf",
    ]
    assert f'"traceId":"{"aa" * 16}","spanId":"{10:016x}"' in lines[1]


def test_retention_deletes_old_traces_in_the_background(database: str, start_server: Any) -> None:
    """--retention 30d removes every trace started more than 30 days ago, in batches, and keeps the rest."""
    filler = start_server("--database", database, "--api-key", KEY)
    now = time.time_ns()
    day = 86400 * 10**9
    old = [f"{0x100 + i:032x}" for i in range(250)]  # more than two batches
    _send(filler, *[_span(trace, 1, "old", now - 31 * day - i) for i, trace in enumerate(old)])
    _send(filler, _span(T[0], 1, "recent", now - 29 * day), _span(T[1], 1, "new", now))
    filler.stop()
    server = start_server("--database", database, "--api-key", KEY, "--retention", "30d")
    assert wait_for(lambda: len(_ids(server, "limit=1000")) == 2)
    assert _ids(server, "limit=1000") == [T[1], T[0]]
    assert server.get(f"/api/traces/{old[0]}/download", headers=AUTH).status_code == 404


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--retention", "30"], {}, "retention '30' (from the command line) is not valid; expected an age"),
        ([], {"AGENTTRACE_SERVER_RETENTION": "1 month"}, "retention '1 month' (from AGENTTRACE_SERVER_RETENTION)"),
        (["--retention", "0d"], {}, "retention '0d' (from the command line) is not valid"),
    ],
)
def test_a_bad_retention_stops_the_server(tmp_path: Path, args: list[str], env: dict[str, str], message: str) -> None:
    """Exit 2 naming the option or variable and the value."""
    from .test_server import _cli

    done = _cli(["--port", "0", "--database", f"sqlite:///{tmp_path / 'r.db'}", *args], tmp_path, env)
    assert done.returncode == 2
    assert message in done.stderr


def test_a_model_filter_finds_the_same_traces_whether_the_model_is_rare_or_common(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The two ways a model filter is read (from the model's traces, or along the listing) agree."""
    from agenttrace._server.store import TraceFilter, open_store, sql
    from agenttrace._server.store.records import SpanRow

    def call(trace: int, model: str) -> SpanRow:
        span = f"{len(model):016x}"
        return SpanRow(f"{trace:032x}", span, "", "POST", "call", trace, trace + 1, 0, "", "", "{}", model)

    store = open_store(database)
    try:
        store.add([call(t, m) for t in range(1, 40) for m in (["gpt-4o-mini", "gpt-4o"] if t % 3 else ["claude-3"])])
        store.add([call(40, "gpt\U0001f600"), call(41, "gpt")])
        found = {}
        for rare in (10**6, 1):
            monkeypatch.setattr(sql, "RARE_MODEL", rare)
            found[rare] = [
                [int(t.trace_id, 16) for t in store.traces(100, 0, TraceFilter(model=model))]
                for model in ("gpt-4o", "gpt-4o-mini", "claude", "gpt", "nothing", "GPT")
            ]
        assert found[1] == found[10**6]
        gpt4o = [t for t in range(39, 0, -1) if t % 3]
        assert found[1] == [gpt4o, gpt4o, [t for t in range(39, 0, -1) if not t % 3], [41, 40, *gpt4o], [], []]
    finally:
        store.close()


def test_deletes_racing_inserts_of_the_same_trace_leave_no_half_trace(database: str) -> None:
    """Threads storing spans of some traces while others delete and expire them: at the end every stored
    span has its trace's row, and each row counts exactly its trace's spans."""
    import threading

    from agenttrace._server.store import open_store
    from agenttrace._server.store.records import SpanRow

    traces = [f"{0xE0 + i:032x}" for i in range(4)]
    store = open_store(database)
    stop = threading.Event()
    failures: list[BaseException] = []

    def insert(seed: int) -> None:
        number = seed
        while not stop.is_set():
            number += 4
            rows = [
                SpanRow(t, f"{number:016x}", "", f"s{number}", "call", 1 + number % 7, 9, 0, "", "", "{}")
                for t in traces
            ]
            try:
                store.add(rows)
            except BaseException as exc:  # collected: a thread's failure is the test's
                failures.append(exc)
                return

    def delete() -> None:
        while not stop.is_set():
            try:
                store.delete(traces[:2])
                store.expire(5, batch=2)  # the traces whose first span started before 5
            except BaseException as exc:  # collected: a thread's failure is the test's
                failures.append(exc)
                return

    threads = [threading.Thread(target=insert, args=(seed,)) for seed in range(4)]
    threads += [threading.Thread(target=delete) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(3)
        stop.set()
        for thread in threads:
            thread.join()
        assert not failures, failures
        for trace in traces:
            stored = len(store.lines(trace))
            summary = store.trace(trace)
            assert (summary.spans if summary else 0) == stored, trace
    finally:
        stop.set()
        store.close()
