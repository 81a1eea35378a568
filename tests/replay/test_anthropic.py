"""The anthropic SDK (messages.create with a tool, messages.stream) replays identically, offline."""

from __future__ import annotations

from agenttrace._demo.llm_server import FakeLLMServer

from .conftest import Replayer

ANTHROPIC_AGENT = """
import json, sys, anthropic, agenttrace

TOOLS = [{"name": "lookup", "description": "look up an order",
          "input_schema": {"type": "object", "properties": {"order": {"type": "string"}}}}]

@agenttrace.run("anthropic-agent")
def main(base, question):
    client = anthropic.Anthropic(base_url=base, api_key=sys.argv[3])
    with agenttrace.step("plan", type="thought"):
        first = client.messages.create(model="demo", max_tokens=100, tools=TOOLS,
                                       messages=[{"role": "user", "content": question}])
    with agenttrace.step("answer"):
        with client.messages.stream(model="demo", max_tokens=100,
                                    messages=[{"role": "user", "content": question}]) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
    return {"id": first.id, "blocks": [b.type for b in first.content], "text": text, "final": final.id}

print(json.dumps(main(sys.argv[1], sys.argv[2])))
"""


def test_anthropic_create_and_stream_replay_identically(replayer: Replayer, llm: FakeLLMServer) -> None:
    """messages.create (tool use) and messages.stream: same ids and text in governance replay, no request sent."""
    rec = replayer.record(ANTHROPIC_AGENT, [llm.base_url, "where is order 7?", "sk-ant-recording-key"])
    assert '"id": "msg_' in rec.result.stdout
    before = llm.calls
    rep = replayer.replay(ANTHROPIC_AGENT, rec, [llm.base_url, "where is order 7?", "sk-ant-other-key"])
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout == rec.result.stdout
    assert llm.calls == before
    assert "2 call(s) served, 0 missed" in rep.stderr


def test_anthropic_changed_prompt_fails_in_governance(replayer: Replayer, llm: FakeLLMServer) -> None:
    """A different question is a ReplayMismatchError reaching the agent through the anthropic SDK."""
    rec = replayer.record(ANTHROPIC_AGENT, [llm.base_url, "where is order 7?", "sk-ant-key"])
    before = llm.calls
    rep = replayer.replay(ANTHROPIC_AGENT, rec, [llm.base_url, "where is order 8?", "sk-ant-key"])
    assert rep.returncode != 0
    assert "ReplayMismatchError" in rep.stderr
    assert "order 8" in rep.stderr
    assert llm.calls == before
