"""``agenttrace show`` prints each LLM call's model, tokens and cost, and each run's totals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import openai

from agenttrace._demo.llm_server import FakeLLMServer
from tests.conftest import agenttrace_cli
from tests.recording import Recorder

# Bundled prices (agenttrace/_format/prices.toml), US dollars per million tokens.
GPT_4O_MINI = (0.15, 0.60)
HAIKU = (0.80, 4.00)


def _record(recorder: Recorder, llm: FakeLLMServer) -> tuple[list[Any], Path]:
    def agent() -> list[Any]:
        chat = openai.OpenAI(base_url=llm.openai_base_url, api_key="sk-test", max_retries=0)
        first = chat.chat.completions.create(
            model="gpt-4o-mini-2024-07-18", messages=[{"role": "user", "content": "a question of some length"}]
        )
        second = anthropic.Anthropic(base_url=llm.base_url, api_key="sk-ant", max_retries=0).messages.create(
            model="claude-3-5-haiku-20241022", max_tokens=50, messages=[{"role": "user", "content": "hello"}]
        )
        third = chat.chat.completions.create(model="my-finetune", messages=[{"role": "user", "content": "x"}])
        return [first.usage, second.usage, third.usage]

    usages, _ = recorder.run(agent)
    (path,) = recorder.folder.glob("*.jsonl")
    return usages, path


def _dollars(cost: float) -> str:
    return f"${cost:.6f}"


def test_show_prints_model_tokens_and_cost_per_call_and_run_totals(recorder: Recorder, llm: FakeLLMServer) -> None:
    """Each LLM call shows its model, input→output tokens and cost; the run adds them up and counts the unpriced."""
    (openai_usage, anthropic_usage, unpriced), path = _record(recorder, llm)
    shown = agenttrace_cli("show", "--no-color", str(path))
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    gpt_cost = (openai_usage.prompt_tokens * GPT_4O_MINI[0] + openai_usage.completion_tokens * GPT_4O_MINI[1]) / 1e6
    haiku_cost = (anthropic_usage.input_tokens * HAIKU[0] + anthropic_usage.output_tokens * HAIKU[1]) / 1e6
    (gpt,) = [line for line in lines if "/v1/chat/completions" in line and "gpt-4o-mini" in line]
    assert f"gpt-4o-mini-2024-07-18 {openai_usage.prompt_tokens}→{openai_usage.completion_tokens} tok" in gpt
    assert _dollars(gpt_cost) in gpt
    (claude,) = [line for line in lines if "/v1/messages" in line]
    assert f"claude-3-5-haiku-20241022 {anthropic_usage.input_tokens}→{anthropic_usage.output_tokens} tok" in claude
    assert _dollars(haiku_cost) in claude
    (mine,) = [line for line in lines if "my-finetune" in line]
    assert f"my-finetune {unpriced.prompt_tokens}→{unpriced.completion_tokens} tok" in mine
    assert "$" not in mine  # no price: tokens only
    total_in = openai_usage.prompt_tokens + anthropic_usage.input_tokens + unpriced.prompt_tokens
    total_out = openai_usage.completion_tokens + anthropic_usage.output_tokens + unpriced.completion_tokens
    run_line = next(line for line in lines if line.startswith("run "))
    assert f"3 LLM calls, {total_in:,} in / {total_out:,} out tokens {_dollars(gpt_cost + haiku_cost)}" in run_line
    assert "(1 not priced)" in run_line


def test_prices_file_extends_and_overrides(recorder: Recorder, llm: FakeLLMServer, tmp_path: Path) -> None:
    """A prices file (--prices) prices a model the bundled table lacks and replaces one it has."""
    (_, _, unpriced), path = _record(recorder, llm)
    prices = tmp_path / "prices.toml"
    prices.write_text(
        '[models."my-finetune"]\ninput = 1000\noutput = 2000\n[models."gpt-4o-mini"]\ninput = 0\noutput = 0\n'
    )
    shown = agenttrace_cli("show", "--no-color", "--prices", str(prices), str(path))
    assert shown.returncode == 0, shown.stderr
    (mine,) = [line for line in shown.stdout.splitlines() if "my-finetune" in line]
    cost = (unpriced.prompt_tokens * 1000 + unpriced.completion_tokens * 2000) / 1e6
    assert f"${cost:.4f}" in mine
    (gpt,) = [line for line in shown.stdout.splitlines() if "gpt-4o-mini" in line]
    assert gpt.rstrip().split("  ")[-2].endswith("$0")  # overridden to free
    assert "not priced" not in shown.stdout


def test_bad_prices_file_names_the_file_model_and_key(recorder: Recorder, llm: FakeLLMServer, tmp_path: Path) -> None:
    """A price that is not a number stops show with exit 2, naming the file, the model, the key and the value."""
    _, path = _record(recorder, llm)
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."gpt-4o"]\ninput = "cheap"\noutput = 1\n')
    shown = agenttrace_cli("show", "--prices", str(prices), str(path))
    assert shown.returncode == 2
    assert f"prices file {prices}" in shown.stderr
    assert "models.\"gpt-4o\".input is 'cheap'" in shown.stderr


def test_old_recording_without_genai_attributes_is_read_from_its_payloads(
    recorder: Recorder, llm: FakeLLMServer, tmp_path: Path
) -> None:
    """A trace written before the gen_ai attributes existed shows the same tokens, parsed from its recorded bodies."""
    (openai_usage, _, _), path = _record(recorder, llm)
    old = tmp_path / "old" / path.name
    old.parent.mkdir()
    lines = []
    for line in path.read_text().splitlines():
        document = json.loads(line)
        for resource in document["resourceSpans"]:
            for scope in resource["scopeSpans"]:
                for span in scope["spans"]:
                    span["attributes"] = [a for a in span.get("attributes", []) if not a["key"].startswith("gen_ai.")]
        lines.append(json.dumps(document))
    old.write_text("\n".join(lines) + "\n")
    shown = agenttrace_cli("show", "--no-color", str(old))
    assert shown.returncode == 0, shown.stderr
    assert f"gpt-4o-mini-2024-07-18 {openai_usage.prompt_tokens}→{openai_usage.completion_tokens} tok" in shown.stdout
    assert "3 LLM calls" in shown.stdout
