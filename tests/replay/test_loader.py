"""load_events: every accepted format, and every unusable file refused with file, line and expectation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import agenttrace
from agenttrace import ConfigurationError
from tests.servers import TestServer

from .agents import HTTPX_AGENT
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


def test_truncated_last_line_is_named(recording: Recorded, tmp_path: Path) -> None:
    """A trace cut mid-line is refused naming that line."""
    lines = recording.path.read_text().splitlines()
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join([*lines, lines[0][: len(lines[0]) // 2]]))
    with pytest.raises(ConfigurationError, match=rf"cut\.jsonl, line {len(lines) + 1}: not valid JSON .*truncated"):
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
