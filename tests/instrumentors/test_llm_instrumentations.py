"""Coexistence with the LLM instrumentations users run: Logfire's, OpenTelemetry's openai-v2, OpenInference's.

Each records a real openai SDK agent (a chat completion and a streamed one) against the fake
LLM server with that instrumentation on, in a fresh interpreter (each sets global OTel state),
in both orders of set-up; then replays it in governance in another fresh interpreter, the
server counting connections as a tripwire.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agenttrace._demo.llm_server import FakeLLMServer
from tests.conftest import AgentRunner
from tests.recording import Trace, read_trace

AGENT = """
import json, sys, openai, agenttrace
{setup}
if sys.argv[2] == "theirs-first":
    theirs()
    agenttrace.init()
else:
    agenttrace.init()
    theirs()

@agenttrace.run("llm-agent")
def main(base):
    client = openai.OpenAI(base_url=base, api_key="sk-test-secret", max_retries=0)
    with agenttrace.step("plain"):
        reply = client.chat.completions.create(model="demo", messages=[{{"role": "user", "content": "hi"}}])
    with agenttrace.step("stream"):
        stream = client.chat.completions.create(
            model="demo", messages=[{{"role": "user", "content": "stream please"}}],
            stream=True, stream_options={{"include_usage": True}},
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    return {{"id": reply.id, "plain": reply.choices[0].message.content, "streamed": text}}

print(json.dumps(main(sys.argv[1])))
"""


@dataclass(frozen=True)
class Instrumentation:
    """One LLM instrumentation: the module it needs, how a user turns it on, the name its LLM spans carry."""

    name: str
    module: str
    setup: str
    span_name: str


LOGFIRE = Instrumentation(
    "logfire",
    "logfire",
    """
import logfire
def theirs():
    logfire.configure(send_to_logfire=False, console=False)  # nothing leaves the machine
    logfire.instrument_openai()  # suppresses other instrumentation around each request (its default)
""",
    "Chat Completion with {request_data[model]!r}",
)
OPENAI_V2 = Instrumentation(
    "openai-v2",
    "opentelemetry.instrumentation.openai_v2",
    """
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
def theirs():
    OpenAIInstrumentor().instrument()
""",
    "chat demo",
)
OPENINFERENCE = Instrumentation(
    "openinference",
    "openinference.instrumentation.openai",
    """
from openinference.instrumentation.openai import OpenAIInstrumentor
def theirs():
    OpenAIInstrumentor().instrument()
""",
    "ChatCompletion",
)


def _require(instrumentation: Instrumentation) -> None:
    if importlib.util.find_spec(instrumentation.module.partition(".")[0]) is None or (
        importlib.util.find_spec(instrumentation.module) is None
    ):
        pytest.skip(f"{instrumentation.name} is not installed (pip install -e '.[test]' brings it)")


def _is_call(trace: Trace, span: dict[str, Any]) -> bool:
    return trace.attrs(span).get("agenttrace.kind") == "call"


def _record_and_replay(
    run_agent: AgentRunner, llm: FakeLLMServer, instrumentation: Instrumentation, order: str
) -> tuple[Trace, Trace]:
    """Record the agent, replay it in governance: same output, no connection. Returns both traces."""
    code = AGENT.format(setup=instrumentation.setup)
    args = [llm.openai_base_url, order]
    calls = llm.calls
    rec = run_agent(code, args=args)
    assert rec.returncode == 0, rec.stderr
    assert llm.calls == calls + 2
    (recording,) = rec.files()
    connections = llm.connections
    rep = run_agent(
        code,
        args=args,
        env={
            "AGENTTRACE_MODE": "replay",
            "AGENTTRACE_REPLAY_EVENTS_FILE": str(recording),
            "AGENTTRACE_GOVERNANCE_LEVEL": "governance",
        },
    )
    assert rep.returncode == 0, rep.stderr
    assert "2 call(s) served, 0 missed, 0 leak(s)" in rep.stderr
    assert rep.stdout == rec.stdout
    assert '"streamed": "You said: stream please' in rep.stdout
    assert llm.connections == connections
    (replayed,) = (p for p in rep.files() if p != recording)
    return read_trace(recording), read_trace(Path(replayed))


def _assert_one_tree(trace: Trace, instrumentation: Instrumentation) -> None:
    """One trace; each HTTP call recorded once, its call span a child of their LLM span, itself in our step."""
    assert len({s["traceId"] for s in trace.spans}) == 1
    by_id = {s["spanId"]: s for s in trace.spans}
    calls = [s for s in trace.spans if _is_call(trace, s)]
    assert len(calls) == 2  # nothing recorded twice
    steps = []
    for call in calls:
        theirs = by_id[call["parentSpanId"]]
        assert theirs["name"] == instrumentation.span_name
        assert trace.attrs(theirs).get("agenttrace.kind") is None
        step = by_id[theirs["parentSpanId"]]
        steps.append(step["name"])
    assert steps == ["plain", "stream"]
    assert [e.request.url.rsplit("/", 2)[-2:] for e in trace.exchanges] == [["chat", "completions"]] * 2


@pytest.mark.parametrize("order", ["theirs-first", "agenttrace-first"])
@pytest.mark.parametrize("instrumentation", [OPENAI_V2, OPENINFERENCE], ids=lambda i: i.name)
def test_llm_spans_and_call_spans_form_one_tree(
    run_agent: AgentRunner, llm: FakeLLMServer, instrumentation: Instrumentation, order: str
) -> None:
    """openai-v2 / OpenInference in either order: one tree, calls once under their LLM spans, replay served."""
    _require(instrumentation)
    recorded, replayed = _record_and_replay(run_agent, llm, instrumentation, order)
    _assert_one_tree(recorded, instrumentation)
    _assert_one_tree(replayed, instrumentation)


def test_logfire_configured_first_one_tree(run_agent: AgentRunner, llm: FakeLLMServer) -> None:
    """Logfire configured first: AgentTrace joins its provider; calls made under its suppression are in the tree."""
    _require(LOGFIRE)
    recorded, replayed = _record_and_replay(run_agent, llm, LOGFIRE, "theirs-first")
    _assert_one_tree(recorded, LOGFIRE)
    _assert_one_tree(replayed, LOGFIRE)
    # Logfire's "streaming response" span sits beside the request span in the stream step.
    names = [s["name"] for s in recorded.spans if recorded.attrs(s).get("agenttrace.kind") is None]
    assert sorted(names).count(LOGFIRE.span_name) == 2


def test_logfire_configured_after_agenttrace_keeps_calls(run_agent: AgentRunner, llm: FakeLLMServer) -> None:
    """AgentTrace first: Logfire cannot become the global provider, so its spans miss the trace file; calls stay whole.

    The documented limit (docs/instrumentors.md): configure Logfire first for one tree.
    """
    _require(LOGFIRE)
    recorded, replayed = _record_and_replay(run_agent, llm, LOGFIRE, "agenttrace-first")
    for trace in (recorded, replayed):
        ids = {s["spanId"] for s in trace.spans}
        calls = [s for s in trace.spans if _is_call(trace, s)]
        assert len(calls) == 2
        assert [trace.attrs(s).get("agenttrace.kind") for s in trace.spans if not _is_call(trace, s)].count(None) == 0
        # Each call span's parent is Logfire's request span, which went to Logfire's own provider.
        assert all(call["parentSpanId"] not in ids for call in calls)
