"""Replay with one thing changed: the LLM live over recorded tools, going live from a step, trials.

An agent (the openai SDK against a fake LLM on 127.0.0.1 whose answers the test switches, and a
tools API, the loopback TestServer, whose counters say what reached it) is recorded, then run by
``agenttrace replay`` with ``--live``, ``--live-from`` and ``--repeat``.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agenttrace._demo._loopback import LoopbackServer
from agenttrace._format.genai import is_llm_call
from agenttrace._replay.live import ForkPoint, parse_fork_point, parse_live
from tests.conftest import _CLEAN_ENV, AgentRunner, agenttrace_cli, run_command
from tests.servers import TestServer

from .conftest import Replayer

AGENT = """
import json, sys
import httpx, openai
import agenttrace

llm, tools = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=llm, api_key="sk-test", max_retries=0)


def ask(prompt):
    answer = client.chat.completions.create(model="m", messages=[{"role": "user", "content": prompt}])
    return answer.choices[0].message.content


@agenttrace.run("planner")
def main():
    with agenttrace.step("plan"):
        plan = ask("make a plan")
    with agenttrace.step("lookup"):
        found = httpx.get(tools + "/json?q=order-42").json()["query"]["q"]
    with agenttrace.step("answer"):
        answer = ask(f"answer with {plan} and {found}")
    return {"plan": plan, "answer": answer}


print(json.dumps(main()))
"""


class SwitchLLM(LoopbackServer):
    """An OpenAI-compatible chat endpoint answering ``answer(n)`` to its n-th request (from 0)."""

    def __init__(self) -> None:
        owner = self
        self.requests = 0
        self.answer = lambda n: "A"

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                with lock:
                    n = owner.requests
                    owner.requests += 1
                body = json.dumps(
                    {
                        "id": "chatcmpl-1",
                        "object": "chat.completion",
                        "created": 1,
                        "model": "m",
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": owner.answer(n)},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        lock = threading.Lock()
        super().__init__(ThreadingHTTPServer(("127.0.0.1", 0), Handler), "switch-llm")


@pytest.fixture
def switch_llm() -> Iterator[SwitchLLM]:
    with SwitchLLM() as server:
        yield server


def _replay(recording: Path, agent: Path, llm: SwitchLLM, tools: TestServer, *options: str) -> Any:
    """``agenttrace replay RECORDING OPTIONS -- python agent.py``, its own trace to ``replays/`` beside the agent."""
    command = [sys.executable, "-m", "agenttrace._cli", "replay", str(recording), *options, "--"]
    env = {**_CLEAN_ENV, "AGENTTRACE_TRACE_DIR": str(agent.parent / "replays")}
    return run_command([*command, sys.executable, str(agent), llm.base_url + "/v1", tools.base_url], agent.parent, env)


def _recorded(run_agent: AgentRunner, llm: SwitchLLM, tools: TestServer) -> tuple[Path, Path, dict[str, Any]]:
    rec = Replayer(run_agent).record(AGENT, [llm.base_url + "/v1", tools.base_url])
    (agent,) = run_agent.tmp_path.glob("agent_*.py")
    return rec.path, agent, json.loads(rec.result.stdout)


def test_live_llm_over_recorded_tools(run_agent: AgentRunner, switch_llm: SwitchLLM, server: TestServer) -> None:
    """--live llm: the LLM is asked again (now answering otherwise), the tools API never; the report says where."""
    recording, agent, original = _recorded(run_agent, switch_llm, server)
    assert original == {"plan": "A", "answer": "A"}
    switch_llm.answer = lambda n: "B"
    llm_before, tools_before = switch_llm.requests, server.connections
    done = _replay(recording, agent, switch_llm, server, "--live", "llm", "--governance-level", "governance")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"plan": "B", "answer": "B"}
    assert switch_llm.requests == llm_before + 2
    assert server.connections == tools_before  # the tool's answer came from the recording
    assert "1 call(s) served, 2 live, 0 missed" in done.stderr
    assert "first divergence: " in done.stderr
    assert "call #1 POST " + switch_llm.base_url + "/v1/chat/completions went live" in done.stderr
    assert '$.choices[0].message.content: recorded "A", live "B"' in done.stderr


def test_live_llm_with_the_same_answers_does_not_diverge(
    run_agent: AgentRunner, switch_llm: SwitchLLM, server: TestServer
) -> None:
    recording, agent, _ = _recorded(run_agent, switch_llm, server)
    done = _replay(recording, agent, switch_llm, server, "--live", "llm", "--governance-level", "governance")
    assert done.returncode == 0, done.stderr
    assert "first divergence" not in done.stderr


def test_live_from_a_step(run_agent: AgentRunner, switch_llm: SwitchLLM, server: TestServer) -> None:
    """--live-from lookup: the plan is served; the lookup and the answer go live."""
    recording, agent, _ = _recorded(run_agent, switch_llm, server)
    switch_llm.answer = lambda n: "C"
    llm_before, tools_before = switch_llm.requests, server.connections
    done = _replay(recording, agent, switch_llm, server, "--live-from", "lookup")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"plan": "A", "answer": "C"}  # the plan as recorded, the answer live
    assert switch_llm.requests == llm_before + 1
    assert server.connections == tools_before + 1
    assert "live from: step 'lookup'" in done.stderr
    shown = agenttrace_cli("show", str(recording))
    assert "#1 " in shown.stdout
    assert "#3 " in shown.stdout


def test_live_from_a_call_number(run_agent: AgentRunner, switch_llm: SwitchLLM, server: TestServer) -> None:
    recording, agent, _ = _recorded(run_agent, switch_llm, server)
    switch_llm.answer = lambda n: "D"
    tools_before = server.connections
    done = _replay(recording, agent, switch_llm, server, "--live-from", "#3")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"plan": "A", "answer": "D"}
    assert server.connections == tools_before  # call #2, the lookup, was served


def test_repeat_counts_the_runs_that_ended_like_the_original(
    run_agent: AgentRunner, switch_llm: SwitchLLM, server: TestServer
) -> None:
    """--repeat 5 against an LLM that answers otherwise every other run: 3 of 5 end like the original."""
    recording, agent, _ = _recorded(run_agent, switch_llm, server)
    switch_llm.requests = 0
    switch_llm.answer = lambda n: "A" if (n // 2) % 2 == 0 else "B"  # each run asks twice
    done = _replay(recording, agent, switch_llm, server, "--live", "llm", "--repeat", "5", "--json")
    assert done.returncode == 1, done.stderr  # not every run ended like the original
    summary = json.loads(done.stdout)
    assert summary["count"] == 5
    assert summary["like_original"] == 3
    assert [t["like_original"] for t in summary["trials"]] == [True, False, True, False, True]
    assert [t["result"] for t in summary["trials"]][1] == [{"plan": "B", "answer": "B"}]
    assert "$.choices[0].message.content" in summary["trials"][1]["first_divergence"]
    assert summary["trials"][0]["first_divergence"] == ""
    table = _replay(recording, agent, switch_llm, server, "--live", "llm", "--repeat", "2")
    assert "run(s) ended like the original" in table.stdout


def test_diff_marks_served_and_live_calls(run_agent: AgentRunner, switch_llm: SwitchLLM, server: TestServer) -> None:
    recording, agent, _ = _recorded(run_agent, switch_llm, server)
    switch_llm.answer = lambda n: "E"
    done = _replay(recording, agent, switch_llm, server, "--live", "llm")
    assert done.returncode == 0, done.stderr
    (replay,) = (agent.parent / "replays").glob("*.jsonl")
    diffed = agenttrace_cli("diff", str(recording), str(replay), "--json")
    assert diffed.returncode == 1  # the answers differ
    data = json.loads(diffed.stdout)
    notes = json.dumps(data)
    assert '"live"' in notes
    assert '"served"' in notes
    assert "first divergence: " in notes
    shown = agenttrace_cli("diff", str(recording), str(replay))
    assert "[live]" in shown.stdout
    assert "[served]" in shown.stdout


@pytest.mark.parametrize(
    ("entries", "error"),
    [(["llm", "api.openai.com", "https://x.test/v1/", "https://*.test/*"], None), (["not a/host"], "replay_live")],
)
def test_live_rules_parse(entries: list[str], error: str | None) -> None:
    if error is None:
        rules = parse_live(entries)
        assert rules.kinds == {"llm"}
        assert rules.hosts == {"api.openai.com"}
    else:
        with pytest.raises(ValueError, match=error):
            parse_live(entries)


def test_fork_points_parse() -> None:
    assert parse_fork_point("plan") == ForkPoint(step="plan")
    assert parse_fork_point("plan#2") == ForkPoint(step="plan", occurrence=2)
    assert parse_fork_point("#3") == ForkPoint(call=3)
    with pytest.raises(ValueError, match="STEP, STEP#N or #N"):
        parse_fork_point("#0")


def test_bad_live_setting_is_refused_naming_it(
    run_agent: AgentRunner, switch_llm: SwitchLLM, server: TestServer
) -> None:
    recording, agent, _ = _recorded(run_agent, switch_llm, server)
    done = _replay(recording, agent, switch_llm, server, "--live-from", "#x")
    assert done.returncode == 2
    assert "--live-from: '#x': expected STEP, STEP#N or #N" in done.stderr
    env_bad = run_agent(
        AGENT,
        args=[switch_llm.base_url + "/v1", server.base_url],
        env={
            "AGENTTRACE_MODE": "replay",
            "AGENTTRACE_REPLAY_EVENTS_FILE": str(recording),
            "AGENTTRACE_REPLAY_LIVE": "a b",
        },
    )
    assert env_bad.returncode != 0
    assert "replay_live: 'a b' is not a kind" in env_bad.stderr
    assert "AGENTTRACE_REPLAY_LIVE" in env_bad.stderr


def test_llm_calls_are_recognised() -> None:
    assert is_llm_call("POST", "https://api.openai.com/v1/chat/completions", (), b"{}")
    assert is_llm_call("POST", "https://api.anthropic.com/v1/messages", (), b"{}")
    assert is_llm_call("POST", "http://h/v1beta/models/gemini-2.0:generateContent", (), b"{}")
    assert is_llm_call("POST", "http://h/custom", (), b'{"model": "x", "messages": []}')
    assert not is_llm_call("GET", "https://api.openai.com/v1/models", (), b"")
    assert not is_llm_call("POST", "http://h/search", (), b'{"query": "model"}')


UNTRACED_TOOL_AGENT = """
import json, sys, urllib.request
import openai
import agenttrace

llm, tools = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=llm, api_key="sk-test", max_retries=0)


@agenttrace.run("planner")
def main():
    plan = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "plan"}])
    # A tool reached with a client AgentTrace does not instrument: only the sandbox sees it.
    found = json.load(urllib.request.urlopen(tools + "/json?q=order-42"))["query"]
    return {"plan": plan.choices[0].message.content, "found": found}


print(json.dumps(main()))
"""


def test_a_live_call_opens_no_door_for_other_traffic(
    run_agent: AgentRunner, switch_llm: SwitchLLM, server: TestServer
) -> None:
    """--live llm lets the LLM call through, not its host: an uninstrumented tool call on the same IP still fails."""
    rec = Replayer(run_agent).record(UNTRACED_TOOL_AGENT, [switch_llm.base_url + "/v1", server.base_url])
    agent = sorted(run_agent.tmp_path.glob("agent_*.py"))[-1]
    before = server.connections
    done = _replay(rec.path, agent, switch_llm, server, "--live", "llm", "--governance-level", "governance")
    assert done.returncode == 1
    assert "DeterminismLeakError" in done.stderr
    assert server.connections == before


def test_live_from_a_step_that_never_starts_is_said(
    run_agent: AgentRunner, switch_llm: SwitchLLM, server: TestServer
) -> None:
    recording, agent, _ = _recorded(run_agent, switch_llm, server)
    done = _replay(recording, agent, switch_llm, server, "--live-from", "lokup")
    assert done.returncode == 0, done.stderr
    assert "live from: never reached (step 'lokup' did not come)" in done.stderr


def test_repeat_needs_a_trace_file(run_agent: AgentRunner, switch_llm: SwitchLLM, server: TestServer) -> None:
    recording, agent, _ = _recorded(run_agent, switch_llm, server)
    events = recording.parent / "events.json"
    import agenttrace

    events.write_text(json.dumps(agenttrace.load_events(str(recording))))
    done = _replay(events, agent, switch_llm, server, "--repeat", "2")
    assert done.returncode == 2
    assert "--repeat compares each run's end with the recording's, which needs a trace file" in done.stderr


def test_same_answers_streamed_or_compressed_do_not_diverge() -> None:
    """Live answers are compared as the agent reads them: decoded, streams as their events, ids and times aside."""
    import gzip

    from agenttrace._capture.model import Body, Exchange, RequestData, ResponseData
    from agenttrace._replay.session import _answer_difference

    def sse(answer_id: str, text: str) -> bytes:
        chunk = {"id": answer_id, "created": 1, "choices": [{"delta": {"content": text}}]}
        return f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()

    def recorded(data: bytes, headers: tuple[tuple[str, str], ...]) -> Exchange:
        response = ResponseData(200, headers, Body(data, len(data), ""))
        return Exchange("httpx", 0, (), RequestData("POST", "http://m/v1/chat/completions", (), b""), response)

    stream = (("content-type", "text/event-stream"),)
    assert _answer_difference(recorded(sse("a1", "A"), stream), 200, sse("b2", "A"), None, stream) == ""
    assert "content" in _answer_difference(recorded(sse("a1", "A"), stream), 200, sse("b2", "B"), None, stream)
    zipped = (("content-type", "application/json"), ("content-encoding", "gzip"))
    was = gzip.compress(json.dumps({"id": "x1", "answer": "A"}).encode())
    now = gzip.compress(json.dumps({"id": "y2", "answer": "A"}).encode(), mtime=5)
    assert _answer_difference(recorded(was, zipped), 200, now, None, zipped) == ""
