"""Record real agents against loopback servers, replay them in governance with the servers as tripwires."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from agenttrace._demo.llm_server import FakeLLMServer
from agenttrace._format.files import read_spans
from tests.conftest import run_command
from tests.servers import TestServer

from .agents import ASYNC_AGENT, HTTPX_AGENT, OPENAI_AGENT, REQUESTS_AGENT
from .conftest import Replayer


def test_httpx_agent_replays_identically_with_no_connections(replayer: Replayer, server: TestServer) -> None:
    """httpx JSON + SSE stream + uuid4/random/urandom: same output in governance, zero connections."""
    _, rep = replayer.round_trip(HTTPX_AGENT, server)
    assert "0 missed, 0 leak(s), 0 recorded call(s) unused" in rep.stderr


def test_requests_and_urllib3_agent_replays_identically(replayer: Replayer, server: TestServer) -> None:
    """requests (gzip, redirect, form) and urllib3 (binary, JSON) replay byte for byte."""
    replayer.round_trip(REQUESTS_AGENT, server)


def test_concurrent_async_tasks_get_their_own_responses(replayer: Replayer, server: TestServer) -> None:
    """40 httpx async tasks started in the opposite order in replay still each get their own ids."""
    rec = replayer.record(ASYNC_AGENT, [server.base_url])
    before = server.connections
    rep = replayer.replay(ASYNC_AGENT, rec, [server.base_url], env={"REVERSE": "1"})
    assert rep.returncode == 0, rep.stderr
    assert json.loads(rep.stdout) == json.loads(rec.result.stdout)
    assert len(set(json.loads(rep.stdout).values())) == 40
    assert server.connections == before


def test_openai_tools_and_stream_replay_identically(replayer: Replayer, llm: FakeLLMServer) -> None:
    """openai SDK tool call + streamed answer: same ids and text, no request reaches the LLM server."""
    rec = replayer.record(OPENAI_AGENT, [llm.openai_base_url, "weather in Paris?"])
    before = llm.calls
    rep = replayer.replay(OPENAI_AGENT, rec, [llm.openai_base_url, "weather in Paris?", "sk-other-key-in-ci"])
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout == rec.result.stdout
    assert llm.calls == before


def test_replay_run_span_points_to_the_recording(replayer: Replayer, server: TestServer) -> None:
    """The replay's own trace marks the run as a replay of the recorded trace id, with the report."""
    rec = replayer.record(HTTPX_AGENT, [server.base_url])
    recorded_trace = rec.path.stem
    rep = replayer.replay(HTTPX_AGENT, rec, [server.base_url])
    assert rep.returncode == 0, rep.stderr
    new = [p for p in rep.files() if p != rec.path]
    runs = [s for p in new for s in read_spans(p) if s.attributes.get("agenttrace.kind") == "run"]
    assert len(runs) == 1
    attrs = runs[0].attributes
    assert attrs["agenttrace.run.mode"] == "replay"
    assert attrs["agenttrace.run.replay_of"] == recorded_trace
    assert attrs["agenttrace.replay.calls_served"] == 2
    assert attrs["agenttrace.replay.calls_missed"] == 0
    assert runs[0].trace_id != recorded_trace


def test_cli_replay_runs_an_unchanged_script(replayer: Replayer, server: TestServer) -> None:
    """`agenttrace replay FILE -- python agent.py` replays without touching the script."""
    rec = replayer.record(HTTPX_AGENT, [server.base_url])
    script = rec.result.trace_dir.parent / "agent_1.py"
    before = server.connections
    result = replayer.runner(
        "import sys\nfrom agenttrace._cli import main\nsys.exit(main(sys.argv[1:]))\n",
        args=[
            "replay",
            str(rec.path),
            "--governance-level",
            "governance",
            "--",
            __import__("sys").executable,
            str(script),
            server.base_url,
        ],
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == rec.result.stdout
    assert server.connections == before


def test_cli_replays_a_script_with_no_agenttrace_import(tmp_path: Path, server: TestServer) -> None:
    """A plain script recorded by agenttrace-instrument replays under `agenttrace replay` with zero connections."""
    script = tmp_path / "plain.py"
    script.write_text(
        "import sys, uuid, httpx, requests\n"
        "print(httpx.get(sys.argv[1] + '/json').text, requests.get(sys.argv[1] + '/json').text, uuid.uuid4())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTTRACE_", "OTEL_"))}
    env["AGENTTRACE_TRACE_DIR"] = str(tmp_path / "traces")
    bin_dir = Path(sys.executable).parent
    recorded = run_command(
        [str(bin_dir / "agenttrace-instrument"), sys.executable, str(script), server.base_url],
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert recorded.returncode == 0, recorded.stderr
    (trace,) = (tmp_path / "traces").glob("*.jsonl")
    before = server.connections
    replayed = run_command(
        [
            str(bin_dir / "agenttrace"),
            "replay",
            str(trace),
            "--governance-level",
            "governance",
            "--",
            sys.executable,
            str(script),
            server.base_url,
        ],
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == recorded.stdout
    assert server.connections == before
