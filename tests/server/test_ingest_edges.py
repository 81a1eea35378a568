"""What the server does with requests that are odd but valid, and with malformed ones: a span it
takes is one every reader of the download can read, and its pages render; anything else is refused
whole (400, 413) with where and what."""

from __future__ import annotations

import copy
import gzip
import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agenttrace._format.files import read_spans
from agenttrace._server.ingest import decode_request
from agenttrace._server.store import open_store

from .conftest import KEY
from .test_server import _request

TRACE = "7e" * 16


def _span(span_id: int, name: str = "s", parent: int | None = None, start: int = 1, **fields: Any) -> dict[str, Any]:
    span: dict[str, Any] = {
        "traceId": TRACE,
        "spanId": f"{span_id:016x}",
        "name": name,
        "startTimeUnixNano": str(1_700_000_000_000_000_000 + start),
        "endTimeUnixNano": str(1_700_000_000_000_000_000 + start + 1000),
    }
    if parent is not None:
        span["parentSpanId"] = f"{parent:016x}"
    span.update(fields)
    return span


def _document(*spans: dict[str, Any], scope: Any = None) -> dict[str, Any]:
    scope_spans: dict[str, Any] = {"spans": list(spans)}
    if scope is not None:
        scope_spans["scope"] = scope
    return {"resourceSpans": [{"resource": {}, "scopeSpans": [scope_spans]}]}


def _attr(key: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"key": key, "value": value}


@pytest.mark.parametrize(
    ("span_fields", "scope", "message"),
    [
        ({"status": "ok"}, None, "spans[1].status: expected an object"),
        ({"status": {"code": 5}}, None, "spans[1].status.code 5: expected 0, 1 or 2"),
        ({"status": {"code": 99999999999999999999}}, None, "status.code 99999999999999999999: expected 0, 1 or 2"),
        ({"kind": "SPAN_KIND_CLIENT"}, None, "spans[1]: malformed span (ValueError"),
        ({"events": [1]}, None, "spans[1]: malformed span (AttributeError"),
        ({"events": [{"name": "e", "timeUnixNano": "abc"}]}, None, "spans[1]: malformed span (ValueError"),
        ({"events": [{"name": "e", "attributes": [{"value": {"intValue": "1"}}]}]}, None, "malformed span (KeyError"),
        ({}, "not-an-object", "scopeSpans[0].scope: expected an object"),
    ],
)
def test_a_span_no_reader_could_read_is_refused_at_ingest(
    start_server: Any, tmp_path: Path, span_fields: dict[str, Any], scope: Any, message: str
) -> None:
    server = start_server("--database", f"sqlite:///{tmp_path / 'm.db'}")
    good = _span(1, "good")
    bad = _span(2, "bad", **span_fields)
    answer = server.post("/v1/traces", json=_document(good, bad, scope=scope))
    assert answer.status_code == 400
    assert message in answer.json()["message"]
    assert server.get("/api/traces").json()["traces"] == []  # refused whole: the good span neither


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_a_bad_span_after_hundreds_of_good_ones_refuses_the_request_whole(
    start_server: Any, tmp_path: Path, encoding: str
) -> None:
    """A request is stored all or none: a bad span after 400 good ones (more than one insert
    statement's worth) leaves nothing of the request stored."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    server = start_server("--database", f"sqlite:///{tmp_path / 'w.db'}")
    good = [_span(i, f"good-{i}", start=i) for i in range(1, 401)]
    bad = _span(401, "bad", start=401, status={"code": 5})  # valid protobuf, refused by the server
    if encoding == "json":
        answer = server.post("/v1/traces", json=_document(*good, bad))
    else:
        message = ExportTraceServiceRequest()
        spans = message.resource_spans.add().scope_spans.add().spans
        for i in range(1, 402):
            span = spans.add(trace_id=bytes.fromhex(TRACE), span_id=i.to_bytes(8, "big"), name=f"good-{i}")
            span.start_time_unix_nano, span.end_time_unix_nano = (
                1_700_000_000_000_000_000 + i,
                1_700_000_000_000_001_000 + i,
            )
        spans[400].status.code = 5  # type: ignore[assignment]  # an enum value OTLP does not define
        body = message.SerializeToString()
        answer = server.post("/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"})
    assert answer.status_code == 400, answer.text
    assert "status.code 5: expected 0, 1 or 2" in answer.text
    assert server.get("/api/traces").json()["traces"] == []
    assert server.get(f"/api/traces/{TRACE}").status_code == 404
    # The same request without its bad span is stored whole.
    assert server.post("/v1/traces", json=_document(*good)).status_code == 200
    assert server.get("/api/traces").json()["traces"][0]["spans"] == 400


def test_odd_but_valid_spans_are_kept_and_their_pages_render(start_server: Any, tmp_path: Path) -> None:
    server = start_server("--database", f"sqlite:///{tmp_path / 'odd.db'}")
    call_attrs = [_attr("agenttrace.kind", {"stringValue": "call"}), _attr("url.full", {"stringValue": "http://x/"})]
    odd_payload = {
        "name": "agenttrace.response",
        "timeUnixNano": "1",
        "attributes": [
            _attr("agenttrace.body", {"intValue": "12"}),
            _attr("agenttrace.body.encoding", {"stringValue": "base64"}),
            _attr("agenttrace.body.size", {"stringValue": "abc"}),
            _attr("agenttrace.stream.chunk_sizes", {"intValue": "5"}),
        ],
    }
    spans = [
        _span(1, "root"),  # no attributes at all
        _span(2, "call", parent=1, start=2, attributes=call_attrs, events=[odd_payload]),
        _span(3, "linked", parent=1, start=3, links=[{"traceId": "ab" * 16, "spanId": "0102030405060708"}]),
        _span(4, "nul\u0000in name \u2603", parent=1, start=4),
    ]
    # A chain of spans 300 deep under the root: drawn nested to a depth, then flat.
    spans += [_span(100 + i, f"deep-{i}", parent=(1 if i == 0 else 99 + i), start=10 + i) for i in range(300)]
    answer = server.post("/v1/traces", json=_document(*spans))
    assert (answer.status_code, answer.json()) == (200, {})
    page = server.get(f"/traces/{TRACE}")
    assert page.status_code == 200
    assert "in name \u2603" in page.text
    # The timeline comes in parts (the page's script fetches the next ones): walk them all.
    html, after = page.text, re.search(r'data-after="([^"]+)"', page.text)
    key = after.group(1) if after else None
    while key is not None:
        part = server.get(f"/traces/{TRACE}/part", params={"after": key})
        assert part.status_code == 200
        html += part.json()["html"]
        key = part.json()["next"]
    # Drawn nested to a depth of 64 levels, then at that depth.
    pads = {
        name: int(px)
        for px, name in re.findall(
            r'padding-left: (\d+)px">\s*<span class="badge[^>]*>[^<]*</span>\s*<strong class="span-name">([^<]+)', html
        )
    }
    assert (pads["deep-0"], pads["deep-62"], pads["deep-63"], pads["deep-299"]) == (14, 63 * 14, 64 * 14, 64 * 14)
    download = tmp_path / "odd.jsonl"
    download.write_bytes(server.get(f"/api/traces/{TRACE}/download").content)
    names = {s.name for s in read_spans(download)}
    assert "nul\u0000in name \u2603" in names  # the download keeps the span exactly


def test_nul_in_names_is_stored_on_postgresql_too(postgres_dsn: str, start_server: Any) -> None:
    server = start_server("--database", postgres_dsn)
    answer = server.post("/v1/traces", json=_document(_span(1, "a\u0000b")))
    assert answer.status_code == 200  # not a 503 the exporter would retry forever
    [trace] = server.get("/api/traces").json()["traces"]
    assert trace["name"] == "a\ufffdb"


def test_the_listing_names_a_trace_after_its_first_run(database: str, start_server: Any) -> None:
    server = start_server("--database", database)

    def run(span_id: int, name: str, mode: str, start: int, parent: int | None = None) -> dict[str, Any]:
        attributes = [
            _attr("agenttrace.kind", {"stringValue": "run"}),
            _attr("agenttrace.run.name", {"stringValue": name}),
            _attr("agenttrace.run.mode", {"stringValue": mode}),
        ]
        return _span(span_id, name, parent=parent, start=start, attributes=attributes)

    # The outer run (recorded) started first; a run nested in it (a replay) sorts after it by name.
    nested = _document(run(1, "first-run", "record", 1), run(2, "zz-nested", "replay", 5, parent=1))
    assert server.post("/v1/traces", json=nested).status_code == 200
    # A trace with no run: named after its earliest span, not its alphabetically first.
    other = copy.deepcopy(_document(_span(1, "zzz-root", start=100), _span(2, "aaa-child", parent=1, start=200)))
    for span in other["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        span["traceId"] = "8f" * 16
    assert server.post("/v1/traces", json=other).status_code == 200
    listing = {t["trace_id"]: (t["name"], t["mode"]) for t in server.get("/api/traces").json()["traces"]}
    assert listing == {TRACE: ("first-run", "record"), "8f" * 16: ("zzz-root", "")}


def test_compressed_bodies(start_server: Any, tmp_path: Path) -> None:
    server = start_server("--database", f"sqlite:///{tmp_path / 'z.db'}")
    first, second = (_request(trace, 2).SerializeToString() for trace in ("a1" * 16, "b2" * 16))
    protobuf = {"Content-Type": "application/x-protobuf"}
    # Two gzip members, as gzip.decompress reads them: both requests' spans are kept.
    answer = server.post(
        "/v1/traces",
        content=gzip.compress(first) + gzip.compress(second),
        headers={**protobuf, "Content-Encoding": "gzip"},
    )
    assert answer.status_code == 200
    assert {t["trace_id"] for t in server.get("/api/traces").json()["traces"]} == {"a1" * 16, "b2" * 16}
    trailing = server.post(
        "/v1/traces", content=gzip.compress(first) + b"TRAILING", headers={**protobuf, "Content-Encoding": "gzip"}
    )
    assert trailing.status_code == 400
    deflated = server.post(
        "/v1/traces",
        content=zlib.compress(_request("c3" * 16, 1).SerializeToString()),
        headers={**protobuf, "Content-Encoding": "deflate"},
    )
    assert deflated.status_code == 200
    assert server.get(f"/api/traces/{'c3' * 16}").status_code == 200


def test_limits_hold_for_streamed_bodies_and_span_counts(start_server: Any, tmp_path: Path) -> None:
    server = start_server("--database", f"sqlite:///{tmp_path / 'l.db'}", "--max-request-bytes", "100000")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is checked while reading
        for _ in range(20):
            yield b"\0" * 10_000

    streamed = server.post("/v1/traces", content=chunks(), headers={"Content-Type": "application/x-protobuf"})
    assert streamed.status_code == 413
    many = _request("d4" * 16, 10_001).SerializeToString()  # ~0.4 MB: over the span count, not the bytes
    big = start_server("--database", f"sqlite:///{tmp_path / 'l2.db'}")
    counted = big.post("/v1/traces", content=many, headers={"Content-Type": "application/x-protobuf"})
    assert counted.status_code == 413
    assert big.get("/api/traces").json()["traces"] == []


def test_huge_integers_in_otlp_json_are_kept_exactly(start_server: Any, tmp_path: Path) -> None:
    server = start_server("--database", f"sqlite:///{tmp_path / 'i.db'}")
    body = json.dumps(_document(_span(1, attributes=[_attr("big", {"intValue": 123456789012345678901234567890})])))
    answer = server.post("/v1/traces", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 200
    stored = server.get(f"/api/traces/{TRACE}/download").text
    assert "123456789012345678901234567890" in stored


def test_every_read_route_needs_the_key(start_server: Any, tmp_path: Path) -> None:
    server = start_server("--database", f"sqlite:///{tmp_path / 'k.db'}", "--api-key", KEY)
    sent = server.post("/v1/traces", json=_document(_span(1)), headers={"Authorization": f"Bearer {KEY}"})
    assert sent.status_code == 200
    for path in (f"/api/traces/{TRACE}", f"/traces/{TRACE}", f"/api/traces/{TRACE}/download", "/?page=2"):
        assert server.get(path).status_code == 401, path
        assert server.get(path, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200, path


def test_a_store_counts_new_spans_and_keeps_each_once(database: str) -> None:
    store = open_store(database)
    try:
        rows = decode_request(_request("e5" * 16, 5).SerializeToString(), "application/x-protobuf")
        assert store.add(rows) == 5
        assert store.add(rows) == 0
        assert (
            store.add(
                rows[:2] + decode_request(_request("e5" * 16, 7).SerializeToString(), "application/x-protobuf")[5:]
            )
            == 2
        )
        [summary] = store.traces()
        assert summary.spans == 7
        assert len(store.lines("e5" * 16)) == 7
    finally:
        store.close()


def test_a_database_password_is_never_shown(start_server: Any, tmp_path: Path) -> None:
    from .test_server import _cli

    done = _cli(["--port", "0", "--database", "postgresql://nobody@127.0.0.1:9/x?password=hunter2secret"], tmp_path)
    assert done.returncode == 2
    assert "password=***" in done.stderr
    assert "hunter2secret" not in done.stderr


def test_nulls_are_defaults_and_doubles_are_doubles(start_server: Any, tmp_path: Path) -> None:
    server = start_server("--database", f"sqlite:///{tmp_path / 'n.db'}")
    # Protobuf's JSON mapping reads null as the field's default.
    nulls = _document(_span(1, "nulls", status=None, events=None, kind=None, attributes=None), scope=None)
    nulls["resourceSpans"][0]["resource"] = None
    assert server.post("/v1/traces", json=nulls).status_code == 200
    # A double of 2**63 or more is a double, not an integer orjson rounded.
    doubles = copy.deepcopy(_document(_span(2, "double", parent=1, attributes=[_attr("big", {"doubleValue": 1e20})])))
    assert server.post("/v1/traces", json=doubles).status_code == 200
    # Call ordinals of mixed types (from any OTLP client) still sort.
    odd = [_attr("agenttrace.call.ordinal", {"stringValue": "a"})]
    mixed = _document(
        _span(3, "o1", parent=1, attributes=odd),
        _span(4, "o2", parent=1, attributes=[_attr("agenttrace.call.ordinal", {"intValue": "1"})]),
    )
    assert server.post("/v1/traces", json=mixed).status_code == 200
    assert server.get(f"/traces/{TRACE}").status_code == 200
    download = tmp_path / "d.jsonl"
    download.write_bytes(server.get(f"/api/traces/{TRACE}/download").content)
    spans = {s.name: s for s in read_spans(download)}
    assert spans["double"].attributes["big"] == 1e20
    assert {"nulls", "o1", "o2"} <= set(spans)


def test_listing_bounds_and_gzip_members(start_server: Any, tmp_path: Path) -> None:
    server = start_server("--database", f"sqlite:///{tmp_path / 'b.db'}")
    assert server.get("/api/traces?offset=99999999999999999999").status_code == 400
    assert server.get("/?page=99999999999999999999").status_code == 200
    members = gzip.compress(b"") * 1_001 + gzip.compress(_request("f6" * 16, 1).SerializeToString())
    answer = server.post(
        "/v1/traces", content=members, headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
    )
    assert answer.status_code == 400
    assert "more than 1000 members" in answer.text


def test_the_sqlite_store_writes_its_wal_back_in_the_background(tmp_path: Path) -> None:
    """Ingest does not pay for SQLite's checkpoints: a thread of the store writes the WAL back into
    the database file within a few seconds of the inserts (the writers' own checkpoint only comes at
    64 MiB of WAL, far above the 6 MB here)."""
    import time

    from agenttrace._server.store.records import SpanRow
    from agenttrace._server.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "c.db")
    try:
        line = "x" * 6000
        rows = [SpanRow(TRACE, f"{i + 1:016x}", "", "s", "call", i, i + 1, 0, "", "", line) for i in range(1000)]
        assert store.add(rows) == 1000
        database = tmp_path / "c.db"
        deadline = time.monotonic() + 10
        while database.stat().st_size < 5_000_000 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert database.stat().st_size >= 5_000_000  # the spans are in the database file, not only the WAL
        assert len(store.lines(TRACE)) == 1000
    finally:
        store.close()


def test_a_new_sqlite_database_has_16_kib_pages_and_an_older_one_keeps_its_own(tmp_path: Path) -> None:
    """A new file gets pages a span's row fits in; a file made with SQLite's default 4 KiB pages keeps them
    and still takes spans (their rows spill into overflow pages there)."""
    import sqlite3

    from agenttrace._server.store.records import SpanRow
    from agenttrace._server.store.sqlite import SQLiteStore

    older = tmp_path / "older.db"
    made = sqlite3.connect(older)
    made.execute("CREATE TABLE other (x)")  # a file with content: its page size is set
    made.close()
    for path, size in ((tmp_path / "new.db", 16384), (older, 4096)):
        store = SQLiteStore(path)
        try:
            row = SpanRow(TRACE, "01" * 8, "", "s", "call", 1, 2, 0, "", "", "", proto=b"\x0a\x00")
            assert store.add([row]) == 1
        finally:
            store.close()
        check = sqlite3.connect(path)
        assert check.execute("PRAGMA page_size").fetchone()[0] == size
        assert check.execute("SELECT proto FROM agenttrace_spans").fetchone()[0] == b"\x0a\x00"
        check.close()
