"""load_events: every accepted format, and every unusable file refused with file, line and expectation."""

from __future__ import annotations

import copy
import gc
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import agenttrace
from agenttrace import ConfigurationError
from agenttrace._cli.show import render
from agenttrace._format.events import call_event, event_exchange
from agenttrace._format.exchange import exchange_from_span
from agenttrace._format.files import read_spans
from agenttrace._format.otlp_json import decode_attributes
from agenttrace._replay.loader import check_events
from tests.servers import TestServer

from .agents import HTTPX_AGENT, REQUESTS_AGENT
from .conftest import Recorded, Replayer


@pytest.fixture
def recording(replayer: Replayer, server: TestServer) -> Recorded:
    """A real recording of the httpx agent."""
    return replayer.record(HTTPX_AGENT, [server.base_url])


def test_trace_file_becomes_documented_event_list(recording: Recorded) -> None:
    """A local trace file loads into run, call and entropy events, each with schema_version."""
    events = agenttrace.load_events(recording.path)
    kinds = [e["kind"] for e in events]
    assert kinds.count("run") == 1
    assert kinds.count("call") == 2
    assert "entropy" in kinds
    assert all(e["schema_version"] == 1 for e in events)
    call = next(e for e in events if e["kind"] == "call")
    assert call["request"]["method"] == "POST"
    assert call["step_path"] == ["ask"]
    assert call["response"]["status_code"] == 200
    assert json.loads(json.dumps(events)) == events  # plain JSON all the way down


def test_event_list_file_and_collector_document_load_the_same(recording: Recorded, tmp_path: Path) -> None:
    """A JSON array of events and a single pretty-printed OTLP document give the same events."""
    events = agenttrace.load_events(recording.path)
    as_list = tmp_path / "events.json"
    as_list.write_text(json.dumps(events, indent=2))
    assert agenttrace.load_events(as_list) == events
    merged = {"resourceSpans": []}
    for line in recording.path.read_text().splitlines():
        merged["resourceSpans"] += json.loads(line)["resourceSpans"]
    document = tmp_path / "collector.json"
    document.write_text(json.dumps(merged, indent=2))
    assert agenttrace.load_events(document) == events


def test_replay_from_list_form_via_init(replayer: Replayer, recording: Recorded, server: TestServer) -> None:
    """init(mode="replay", replay_events=load_events(...)) replays an agent without env vars."""
    code = HTTPX_AGENT.replace(
        "import json, os,",
        f"import agenttrace as _a; _a.init(mode='replay', governance_level='governance', "
        f"replay_events=_a.load_events({str(recording.path)!r}))\nimport json, os,",
    )
    before = server.connections
    result = replayer.runner(code, args=[server.base_url])
    assert result.returncode == 0, result.stderr
    assert result.stdout == recording.result.stdout
    assert server.connections == before


def test_missing_file_is_named(tmp_path: Path) -> None:
    """A missing file is refused with its path."""
    with pytest.raises(ConfigurationError, match=r"replay file .*nope\.jsonl does not exist"):
        agenttrace.load_events(tmp_path / "nope.jsonl")


def test_not_json_names_line_one(tmp_path: Path) -> None:
    """A file that is not JSON at all is refused at line 1."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text("this is not json")
    with pytest.raises(ConfigurationError, match=r"bad\.jsonl, line 1: not valid JSON"):
        agenttrace.load_events(bad)


def test_truncated_last_line_is_read_up_to_the_cut(
    recording: Recorded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A trace whose last line a killed writer cut is read up to that line, with a warning naming it."""
    lines = recording.path.read_text().splitlines()
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join([*lines, lines[0][: len(lines[0]) // 2]]))
    assert agenttrace.load_events(cut) == agenttrace.load_events(recording.path)
    assert f"cut.jsonl was cut short: line {len(lines) + 1}, its last, is incomplete" in capsys.readouterr().err


def test_truncated_middle_line_is_named(recording: Recorded, tmp_path: Path) -> None:
    """A line cut in the middle of a file (lines follow it) is refused naming that line."""
    lines = recording.path.read_text().splitlines()
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join([lines[0][: len(lines[0]) // 2], *lines]) + "\n")
    with pytest.raises(ConfigurationError, match=r"cut\.jsonl, line \d+: not valid JSON"):
        agenttrace.load_events(cut)


def test_unknown_schema_version_is_refused(recording: Recorded, tmp_path: Path) -> None:
    """A call span from a future schema version is refused, naming the version this release reads."""
    text = recording.path.read_text().replace(
        '{"key":"agenttrace.schema_version","value":{"intValue":"1"}}',
        '{"key":"agenttrace.schema_version","value":{"intValue":"99"}}',
    )
    future = tmp_path / "future.jsonl"
    future.write_text(text)
    with pytest.raises(ConfigurationError, match=r"future\.jsonl, line \d+: .*schema_version 99.*reads version 1"):
        agenttrace.load_events(future)


def test_list_form_with_unknown_version_names_the_event(tmp_path: Path) -> None:
    """In the list form, the offending event's index is named."""
    path = tmp_path / "events.json"
    path.write_text(json.dumps([{"schema_version": 7, "kind": "call"}]))
    with pytest.raises(ConfigurationError, match=r"events\.json, event #0: schema_version 7"):
        agenttrace.load_events(path)


def test_trace_without_calls_is_refused(replayer: Replayer, tmp_path: Path) -> None:
    """A trace with no recorded call is refused: replaying it would serve nothing."""
    rec = replayer.record("import agenttrace\nagenttrace.run(lambda: 1)()\n")
    with pytest.raises(ConfigurationError, match="holds no recorded calls"):
        agenttrace.load_events(rec.path)


def test_bad_file_stops_before_the_agent_runs(replayer: Replayer, tmp_path: Path) -> None:
    """AGENTTRACE_REPLAY_EVENTS_FILE pointing at a bad file fails at init, before the agent's body."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"resourceSpans": [')
    code = "import agenttrace\n@agenttrace.run\ndef main():\n    print('AGENT RAN')\nmain()\n"
    result = replayer.replay(code, bad)
    assert result.returncode == 1
    assert "AGENT RAN" not in result.stdout
    assert "ConfigurationError: replay file" in result.stderr
    assert "bad.jsonl, line 1" in result.stderr


def test_replay_without_a_recording_is_a_configuration_error(replayer: Replayer) -> None:
    """mode=replay with neither replay_events nor a file says what to provide."""
    result = replayer.runner("import agenttrace\nagenttrace.init(mode='replay')\n")
    assert result.returncode == 1
    assert "needs a recording" in result.stderr


def _call_spans(path: Path) -> list[dict[str, Any]]:
    spans = []
    for line in path.read_text().splitlines():
        for rs in json.loads(line)["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                spans += [s for s in ss["spans"] if decode_attributes(s["attributes"]).get("agenttrace.kind") == "call"]
    return spans


def _set(items: list[dict[str, Any]], key: str, value: dict[str, Any] | None) -> None:
    items[:] = [kv for kv in items if kv["key"] != key]
    if value is not None:
        items.append({"key": key, "value": value})


def test_span_decoding_round_trips_through_the_list_form(replayer: Replayer, server: TestServer) -> None:
    """A call span's exchange survives the list form: event_exchange(call_event(x)) == x.

    Checked on real spans (JSON, SSE, gzip, binary, redirect, form) and on variants: non-ASCII
    body, missing digest and size, a step filter's flag, an error event, no response headers;
    decoding with the attributes given or not, and with a shared header cache, gives one exchange.
    """
    recs = [
        replayer.record(HTTPX_AGENT, [server.base_url]),
        replayer.record(REQUESTS_AGENT, [server.base_url]),
    ]
    spans = [s for rec in recs for s in _call_spans(rec.path)]
    variants = []
    for span in spans[:3]:
        variant = copy.deepcopy(span)
        for event in variant["events"]:
            items = event["attributes"]
            _set(items, "agenttrace.body", {"stringValue": 'héllo ✓ {"a": 1}'})
            _set(items, "agenttrace.body.encoding", {"stringValue": "utf-8"})
            _set(items, "agenttrace.body.sha256", None)
            _set(items, "agenttrace.body.size", None)
            _set(items, "agenttrace.body.filtered", {"boolValue": True})
            _set(items, "agenttrace.http.headers", None)
        variant["events"].append(
            {
                "name": "agenttrace.error",
                "attributes": [{"key": "agenttrace.error.type", "value": {"stringValue": "httpx.ReadError"}}],
            }
        )
        variants.append(variant)
    no_response = copy.deepcopy(spans[0])
    no_response["events"] = [e for e in no_response["events"] if e["name"] == "agenttrace.request"]
    cache: dict[str, tuple[tuple[str, str], ...]] = {}
    for span in spans + variants:
        attributes = decode_attributes(span["attributes"])
        exchange = exchange_from_span(span)
        assert exchange_from_span(span, attributes, headers=cache) == exchange
        event = call_event(exchange)
        assert event_exchange(event, "test") == exchange
        assert json.dumps(call_event(event_exchange(event, "test"))) == json.dumps(event)  # same keys, same order
    assert exchange_from_span(no_response).response is None
    with pytest.raises(ConfigurationError, match="a call needs a 'response' or an 'error'"):
        event_exchange(call_event(exchange_from_span(no_response)), "test")


def test_replay_trace_is_not_a_recording(replayer: Replayer, server: TestServer) -> None:
    """A replay's own trace (served calls point at the recording) is refused, naming the recorded span."""
    rec = replayer.record(HTTPX_AGENT, [server.base_url])
    rep = replayer.replay(HTTPX_AGENT, rec, [server.base_url])
    assert rep.returncode == 0, rep.stderr
    replayed = [p for p in rep.files() if p != rec.path]
    assert len(replayed) == 1
    recorded_span = _call_spans(rec.path)[0]["spanId"]
    with pytest.raises(ConfigurationError, match=r"is a call served by a replay .*replay the recording") as caught:
        agenttrace.load_events(replayed[0])
    assert f"{rec.path.stem}/{recorded_span}" in str(caught.value)
    # `agenttrace show` still gives each served call its status and size.
    console = Console(no_color=True, width=200, record=True, file=io.StringIO())
    console.print(render(read_spans(replayed[0])))
    served = [line for line in console.export_text().splitlines() if "(replayed)" in line]
    assert len(served) == 2
    assert all("→ 200" in line and re.search(r"\d+(\.\d)? (B|KB)", line) for line in served), served


def test_loading_keeps_the_collector_state(recording: Recorded) -> None:
    """load_events pauses the garbage collector and restores its state, enabled or not."""
    assert gc.isenabled()
    agenttrace.load_events(recording.path)
    assert gc.isenabled()
    gc.disable()
    try:
        agenttrace.load_events(recording.path)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_checked_events_come_with_their_exchanges(recording: Recorded) -> None:
    """check_events builds each call's exchange once, equal to event_exchange, for the session to take."""
    events = agenttrace.load_events(recording.path)
    checked, exchanges = check_events(events, "test")
    assert checked == events
    calls = [e for e in events if e["kind"] == "call"]
    assert exchanges == [event_exchange(e, "test") for e in calls]
    with pytest.raises(ConfigurationError, match="holds no recorded calls"):
        check_events([e for e in events if e["kind"] != "call"], "test")
