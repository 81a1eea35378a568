"""A replay whose own trace goes nowhere serves its calls without opening a span for each one.

Each side runs in a fresh interpreter: whether a call span has a receiver depends on the
process's tracer provider, which the test process has already set.
"""

from __future__ import annotations

from tests.conftest import AgentRunner
from tests.replay.conftest import Replayer
from tests.servers import TestServer

AGENT = """
import json, sys
import httpx, requests
import agenttrace

base = sys.argv[1]


@agenttrace.run("untraced")
def agent():
    out = [httpx.get(base + "/json").json()["id"]]
    with httpx.stream("GET", base + "/sse?n=3") as r:
        out.append([c.decode() for c in r.iter_raw()])
    out.append(requests.post(base + "/json", json={"a": 1}, timeout=5).json()["id"])
    out.append(httpx.get(base + "/status/404").status_code)
    return out


agent_result = agent()
from agenttrace._core.runtime import runtime

print(json.dumps({"result": agent_result, "traced": runtime.traced}))
"""

# The same agent, with an exporter of the user's own added to the provider AgentTrace made.
WITH_PROCESSOR = """
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import agenttrace

agenttrace.init()
exporter = InMemorySpanExporter()
trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exporter))
""" + AGENT.replace(
    'print(json.dumps({"result": agent_result, "traced": runtime.traced}))',
    'calls = [s for s in exporter.get_finished_spans() if s.attributes.get("agenttrace.kind") == "call"]\n'
    'replayed = [s for s in calls if s.attributes.get("agenttrace.call.replayed")]\n'
    'print(json.dumps({"result": agent_result, "traced": runtime.traced, "calls": len(calls),'
    ' "replayed": len(replayed)}))',
)


def test_untraced_replay_serves_the_recorded_answers(run_agent: AgentRunner, server: TestServer) -> None:
    replayer = Replayer(run_agent)
    recording = replayer.record(AGENT, [server.base_url])
    before = server.connections
    replayed = replayer.replay(AGENT, recording, [server.base_url], env={"AGENTTRACE_LOCAL_FILES": "0"})
    assert replayed.returncode == 0, replayed.stderr
    assert server.connections == before
    recorded_out = recording.result.stdout.replace('"traced": true', '"traced": false')
    assert replayed.stdout == recorded_out
    assert '"traced": false' in replayed.stdout
    assert "4 call(s) served, 0 missed" in replayed.stderr


def test_a_span_processor_of_the_users_gets_the_served_calls(run_agent: AgentRunner, server: TestServer) -> None:
    replayer = Replayer(run_agent)
    recording = replayer.record(AGENT, [server.base_url])
    replayed = replayer.replay(WITH_PROCESSOR, recording, [server.base_url], env={"AGENTTRACE_LOCAL_FILES": "0"})
    assert replayed.returncode == 0, replayed.stderr
    assert '"traced": true' in replayed.stdout
    assert '"calls": 4, "replayed": 4' in replayed.stdout
