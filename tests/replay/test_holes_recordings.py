"""Recordings a governance replay must judge: edited bodies, repeated spans, raw socket spans, a missing file.

Also: loading a recording leaves the host process's garbage collector as it found it.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import agenttrace
from agenttrace._core.errors import ConfigurationError
from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.BODY
from agenttrace._replay.loader import load_recording
from tests.conftest import AgentRunner, run_command
from tests.servers import TestServer

from .conftest import Recorded, Replayer

BIN = Path(sys.executable).parent

GET_AGENT = """
import json, sys, httpx, agenttrace

@agenttrace.run("getter")
def main(base):
    return httpx.get(base + "/json").json()["id"]

print(json.dumps(main(sys.argv[1])))
"""

SOCKET_AGENT = """
import json, socket, sys, httpx, agenttrace

@agenttrace.run("raw")
def main(base):
    port = int(base.rsplit(":", 1)[1])
    socket.getaddrinfo("localhost", port)
    return httpx.get(base + "/json").json()["id"]

try:
    print(json.dumps(main(sys.argv[1])))
except agenttrace.DeterminismLeakError as exc:
    print("leak:", type(exc).__name__, file=sys.stderr)
    raise
"""

PLAIN_SCRIPT = """
import sys, requests
print("agent ran", requests.get(sys.argv[1] + "/json", timeout=5).status_code)
"""


def _edit_response_body(path: Path, new_id: str) -> None:
    """Change the recorded response's "id" (as a user editing the file by hand would), leaving its digest."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        document = json.loads(line)
        for resource in document["resourceSpans"]:
            for scope in resource["scopeSpans"]:
                for span in scope["spans"]:
                    for event in span.get("events", ()):
                        if event["name"] != S.EVENT_RESPONSE:
                            continue
                        for attribute in event["attributes"]:
                            if attribute["key"] == S.BODY:
                                body = json.loads(attribute["value"]["stringValue"])
                                body["id"] = new_id
                                attribute["value"]["stringValue"] = json.dumps(body)
        lines.append(json.dumps(document))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def recording(replayer: Replayer, server: TestServer) -> Recorded:
    """A one-call recording of GET_AGENT."""
    return replayer.record(GET_AGENT, [server.base_url])


def test_edited_body_is_refused_in_governance_and_resealed(
    replayer: Replayer, server: TestServer, recording: Recorded
) -> None:
    """An edited body fails a governance replay naming span and field; `agenttrace reseal` makes it servable."""
    _edit_response_body(recording.path, "edited-by-hand")
    rep = replayer.replay(GET_AGENT, recording, [server.base_url])
    assert rep.returncode == 1
    assert "span 'GET'" in rep.stderr
    assert f"the {S.BODY} of its {S.EVENT_RESPONSE} event does not match its {S.BODY_SHA256}" in rep.stderr
    assert f"agenttrace reseal {recording.path}" in rep.stderr
    relaxed = replayer.replay(GET_AGENT, recording, [server.base_url], level="relaxed")
    assert relaxed.returncode == 0, relaxed.stderr  # relaxed replays what the file holds
    sealed = subprocess.run(
        [str(BIN / "agenttrace"), "reseal", str(recording.path)], capture_output=True, text=True, check=False
    )
    assert sealed.returncode == 0, sealed.stderr
    assert "1 body digest(s) recomputed" in sealed.stderr
    before = server.connections
    again = replayer.replay(GET_AGENT, recording, [server.base_url])
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == "edited-by-hand"
    assert server.connections == before


def test_agenttrace_replay_checks_digests_before_the_command(recording: Recorded, run_agent: AgentRunner) -> None:
    """`agenttrace replay FILE --governance-level governance` refuses an edited file with exit 2, before running."""
    _edit_response_body(recording.path, "flipped")
    done = subprocess.run(
        [str(BIN / "agenttrace"), "replay", str(recording.path), "--governance-level", "governance", "--", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "does not match its agenttrace.body.sha256" in done.stderr


def test_same_call_span_twice_is_refused_in_governance(
    replayer: Replayer, server: TestServer, recording: Recorded
) -> None:
    """A file holding the same call span twice (concatenated with itself) is refused by governance."""
    text = recording.path.read_text(encoding="utf-8")
    recording.path.write_text(text + text, encoding="utf-8")
    with pytest.raises(ConfigurationError, match="appears more than once"):
        load_recording(recording.path, str(recording.path), sealed=True)
    rep = replayer.replay(GET_AGENT, recording, [server.base_url])
    assert rep.returncode == 1
    assert "appears more than once" in rep.stderr


def test_socket_spans_load_and_the_lookup_is_a_leak(replayer: Replayer, server: TestServer) -> None:
    """A recording with dns/connect spans loads; the agent's lookup is a leak when made (governance raises)."""
    rec = replayer.record(SOCKET_AGENT, [server.base_url])
    spans = [
        span
        for line in rec.path.read_text(encoding="utf-8").splitlines()
        for resource in json.loads(line)["resourceSpans"]
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
    ]
    assert "dns" in {span["name"] for span in spans}
    assert [e["kind"] for e in agenttrace.load_events(rec.path)].count("call") == 1  # the httpx call only
    before = server.connections
    rep = replayer.replay(SOCKET_AGENT, rec, [server.base_url])
    assert rep.returncode == 1
    assert "leak: DeterminismLeakError" in rep.stderr
    assert "the agent attempted getaddrinfo(localhost:" in rep.stderr
    relaxed = replayer.replay(SOCKET_AGENT, rec, [server.base_url], level="relaxed")
    assert relaxed.returncode == 0, relaxed.stderr
    assert relaxed.stdout == rec.result.stdout
    assert "the agent attempted getaddrinfo(localhost:" in relaxed.stderr
    assert server.connections == before


@pytest.mark.parametrize("launcher", ["agenttrace-instrument", "opentelemetry-instrument"])
def test_zero_code_replay_without_its_recording_stops_before_the_agent(
    launcher: str, run_agent: AgentRunner, server: TestServer, tmp_path: Path
) -> None:
    """With AGENTTRACE_MODE=replay and a missing recording, the zero-code launchers exit 2 before the agent runs."""
    script = tmp_path / "plain_agent.py"
    script.write_text(PLAIN_SCRIPT, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTTRACE_", "OTEL_"))}
    env.update(
        AGENTTRACE_MODE="replay",
        AGENTTRACE_GOVERNANCE_LEVEL="governance",
        AGENTTRACE_REPLAY_EVENTS_FILE=str(tmp_path / "missing.jsonl"),
        AGENTTRACE_TRACE_DIR=str(tmp_path / "traces"),
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        # opentelemetry-distro is installed beside AgentTrace here: choose AgentTrace's distro.
        OTEL_PYTHON_DISTRO="agenttrace",
    )
    before = server.connections
    done = run_command(
        [str(BIN / launcher), sys.executable, str(script), server.base_url],
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "agent ran" not in done.stdout
    assert f"replay file {tmp_path / 'missing.jsonl'} does not exist" in done.stderr
    assert server.connections == before


def test_init_without_its_recording_raises(run_agent: AgentRunner, server: TestServer) -> None:
    """init() in replay mode with a missing recording raises ConfigurationError; the agent's call never goes out."""
    before = server.connections
    result = run_agent(
        """
        import sys, requests, agenttrace
        agenttrace.init(mode="replay", replay_events_file="missing.jsonl", governance_level="governance")
        print("agent ran", requests.get(sys.argv[1] + "/json", timeout=5).status_code)
        """,
        args=[server.base_url],
    )
    assert result.returncode == 1
    assert "ConfigurationError: replay file missing.jsonl does not exist" in result.stderr
    assert server.connections == before


@pytest.mark.parametrize("enabled", [True, False])
def test_loading_leaves_the_collector_as_it_was(recording: Recorded, enabled: bool) -> None:
    """Loading a recording freezes nothing and restores the collector's on/off state and thresholds."""
    was_enabled = gc.isenabled()
    thresholds = gc.get_threshold()
    frozen = gc.get_freeze_count()
    try:
        gc.enable() if enabled else gc.disable()
        agenttrace.load_events(recording.path)
        load_recording(recording.path, str(recording.path), sealed=True)
        assert gc.isenabled() is enabled
        assert gc.get_freeze_count() == frozen
        assert gc.get_threshold() == thresholds
    finally:
        gc.enable() if was_enabled else gc.disable()


URLLIB_AGENT = """
import sys, urllib.request, agenttrace

@agenttrace.run("uninstrumented")
def main(base):
    with urllib.request.urlopen(base + "/json", timeout=5) as response:
        return response.status

print(main(sys.argv[1]))
"""


def test_recording_of_only_socket_spans_loads(replayer: Replayer, server: TestServer) -> None:
    """A client AgentTrace does not instrument leaves dns/connect spans only: the file loads, the connect is a leak."""
    rec = replayer.record(URLLIB_AGENT, [server.base_url])
    assert '"connect"' in rec.path.read_text(encoding="utf-8")
    before = server.connections
    rep = replayer.replay(URLLIB_AGENT, rec, [server.base_url])
    assert rep.returncode == 1
    assert "DeterminismLeakError: governance replay: the agent attempted getaddrinfo(127.0.0.1:" in rep.stderr
    assert server.connections == before
    relaxed = replayer.replay(URLLIB_AGENT, rec, [server.base_url], level="relaxed")
    assert relaxed.returncode == 0, relaxed.stderr
    assert "replay: the agent attempted connect to 127.0.0.1:" in relaxed.stderr
