"""``agenttrace diff``: recordings of a real agent (the openai SDK against the fake LLM server on
127.0.0.1) compared with each other and with their replays, as the command line runs it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from agenttrace._demo.llm_server import FakeLLMServer
from tests.conftest import AgentRunner, agenttrace_cli

AGENT = """
import os, sys
import agenttrace, openai

@agenttrace.run("agent")
def main(prompt, calls):
    client = openai.OpenAI(base_url=os.environ["LLM_URL"], api_key="sk-test", max_retries=0)
    answer = None
    for number in range(calls):
        with agenttrace.step("think", type="thought", topic=prompt):
            reply = client.chat.completions.create(
                model="demo", messages=[{"role": "user", "content": f"{prompt} #{number}"}]
            )
            answer = reply.choices[0].message.content
            agenttrace.set_result({"chars": len(answer)})
    return prompt

main(sys.argv[1], int(sys.argv[2]))
"""


def _record(run_agent: AgentRunner, llm: FakeLLMServer, prompt: str, calls: int = 1, **env: str) -> Path:
    before = set(run_agent.trace_dir.glob("*.jsonl"))
    done = run_agent(
        AGENT, env={"LLM_URL": llm.openai_base_url, "AGENTTRACE_QUIET": "1", **env}, args=[prompt, str(calls)]
    )
    assert done.returncode == 0, done.stderr
    (path,) = set(run_agent.trace_dir.glob("*.jsonl")) - before
    return path


def _diff(*args: str) -> subprocess.CompletedProcess[str]:
    return agenttrace_cli("diff", "--no-color", *args)


def test_two_recordings_with_different_prompts_differ_at_the_json_path(
    run_agent: AgentRunner, llm: FakeLLMServer
) -> None:
    """Two recordings whose prompts differ: exit 1, the request body's JSON path and the step argument shown."""
    a = _record(run_agent, llm, "weather in Paris")
    b = _record(run_agent, llm, "weather in Rome")
    done = _diff(str(a), str(b))
    assert done.returncode == 1, done.stdout + done.stderr
    assert '$.messages[0].content: A "weather in Paris #0", B "weather in Rome #0"' in done.stdout
    assert "argument topic: A weather in Paris, B weather in Rome" in done.stdout
    data = json.loads(_diff("--json", str(a), str(b)).stdout)
    assert data["equal"] is False
    (run,) = data["runs"]
    (step,) = run["children"]
    (call,) = step["children"]
    assert call["change"] == "changed"
    assert "$.messages[0].content" in call["json_paths"]


def test_recording_and_its_replay_are_equal(run_agent: AgentRunner, llm: FakeLLMServer, tmp_path: Path) -> None:
    """A replay's trace alone is compared with the recording it names, and both ways it is equal (exit 0)."""
    recording = _record(run_agent, llm, "hello")
    replay = _record(
        run_agent,
        llm,
        "hello",
        AGENTTRACE_MODE="replay",
        AGENTTRACE_REPLAY_EVENTS_FILE=str(recording),
        AGENTTRACE_GOVERNANCE_LEVEL="governance",
    )
    alone = _diff(str(replay))
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert str(recording) in alone.stdout
    both = _diff(str(recording), str(replay))
    assert both.returncode == 0, both.stdout + both.stderr


def test_added_and_missing_calls_pair_by_causal_position(run_agent: AgentRunner, llm: FakeLLMServer) -> None:
    """A run that made one more call shows it as added (B only); the first call pairs with its request equal."""
    one = _record(run_agent, llm, "same", calls=1)
    two = _record(run_agent, llm, "same", calls=2)
    done = _diff("--json", str(one), str(two))
    assert done.returncode == 1
    data = json.loads(done.stdout)
    first, second = data["runs"][0]["children"]
    assert (first["change"], second["change"]) == ("equal", "added")
    (call,) = first["children"]  # the server's answers carry random ids: only the response differs
    assert call["details"]
    assert all(line.startswith("response ") for line in call["details"])
    reverse = json.loads(_diff("--json", str(two), str(one)).stdout)
    assert [child["change"] for child in reverse["runs"][0]["children"]] == ["equal", "missing"]


def test_ignore_rule_leaves_a_field_out(run_agent: AgentRunner, llm: FakeLLMServer) -> None:
    """--ignore '$.messages[0].content' makes the request bodies compare equal (only responses still differ)."""
    a = _record(run_agent, llm, "first")
    b = _record(run_agent, llm, "second")
    done = _diff("--json", "--ignore", "$.messages[0].content", str(a), str(b))
    paths = [p for run in json.loads(done.stdout)["runs"] for p in _paths(run)]
    assert "$.messages[0].content" not in paths


def _paths(node: dict[str, object]) -> list[str]:
    found = list(node.get("json_paths", []))  # type: ignore[call-overload]
    for child in node.get("children", []):  # type: ignore[attr-defined]
        found += _paths(child)
    return found


def test_bad_input_exits_2_naming_the_file(tmp_path: Path, run_agent: AgentRunner, llm: FakeLLMServer) -> None:
    """A missing file, a file that is not a trace, or one trace that is no replay: exit 2 with the reason."""
    missing = _diff(str(tmp_path / "nope.jsonl"), str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2
    assert "nope.jsonl does not exist" in missing.stderr
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json\n")
    bad = _diff(str(broken), str(broken))
    assert bad.returncode == 2
    assert "broken.jsonl" in bad.stderr
    recording = _record(run_agent, llm, "hello")
    alone = _diff(str(recording))
    assert alone.returncode == 2
    assert "is not the trace of a replay" in alone.stderr
