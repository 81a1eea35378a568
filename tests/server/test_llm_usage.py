"""The server's listing and run page show each run's LLM tokens and cost, and each LLM call's model and tokens."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

from agenttrace._demo.llm_server import FakeLLMServer

from .conftest import KEY
from .test_server import _agent_env, _run

AGENT = """
import json, sys, anthropic, openai, agenttrace

@agenttrace.run("llm-run")
def main(base):
    chat = openai.OpenAI(base_url=base + "/v1", api_key="sk-test", max_retries=0)
    first = chat.chat.completions.create(model="gpt-4o-mini-2024-07-18", messages=[{"role": "user", "content": "hi"}])
    second = anthropic.Anthropic(base_url=base, api_key="sk-ant", max_retries=0).messages.create(
        model="claude-3-5-haiku-20241022", max_tokens=20, messages=[{"role": "user", "content": "hello there"}])
    return [first.usage.prompt_tokens, first.usage.completion_tokens,
            second.usage.input_tokens, second.usage.output_tokens]

print(json.dumps(main(sys.argv[1])))
"""

AUTH = {"Authorization": f"Bearer {KEY}"}


def _record(server: Any, tmp_path: Path, llm: FakeLLMServer) -> list[int]:
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    done = _run([sys.executable, str(agent), llm.base_url], _agent_env(tmp_path, server.url), tmp_path)
    assert done.returncode == 0, done.stderr
    tokens: list[int] = json.loads(done.stdout)
    return tokens


def test_listing_and_run_page_show_tokens_and_cost(
    database: str, start_server: Any, tmp_path: Path, llm: FakeLLMServer
) -> None:
    """The listing's Tokens and Cost columns, the API's counts, and the run page's per-call line and totals."""
    server = start_server("--database", database, "--api-key", KEY)
    gpt_in, gpt_out, claude_in, claude_out = _record(server, tmp_path, llm)
    cost = (gpt_in * 0.15 + gpt_out * 0.60 + claude_in * 0.80 + claude_out * 4.00) / 1e6

    (listed,) = server.get("/api/traces", headers=AUTH).json()["traces"]
    assert (listed["llm_calls"], listed["input_tokens"], listed["output_tokens"]) == (
        2,
        gpt_in + claude_in,
        gpt_out + claude_out,
    )
    index = server.get("/", headers=AUTH).text
    assert f'<td class="tokens">{gpt_in + claude_in:,} → {gpt_out + claude_out:,}</td>' in index
    assert f'<td class="cost">${cost:.6f}</td>' in index

    page = server.get(f"/traces/{listed['trace_id']}", headers=AUTH).text
    assert (
        f"gpt-4o-mini-2024-07-18 · {gpt_in:,} → {gpt_out:,} tokens · ${(gpt_in * 0.15 + gpt_out * 0.60) / 1e6:.6f}"
        in page
    )
    assert f"claude-3-5-haiku-20241022 · {claude_in:,} → {claude_out:,} tokens" in page
    totals = f"2 LLM calls · {gpt_in + claude_in:,} → {gpt_out + claude_out:,} tokens · ${cost:.6f}"
    assert f'<p id="llm-totals">{totals}</p>' in page


def test_database_of_an_older_server_gains_the_columns(start_server: Any, tmp_path: Path, llm: FakeLLMServer) -> None:
    """A SQLite database written before the LLM columns opens: its traces list without tokens, new ones with."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:
        old.executescript(
            """
            CREATE TABLE agenttrace_spans (trace_id TEXT NOT NULL, span_id TEXT NOT NULL,
                parent_span_id TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL, start_ns BIGINT NOT NULL,
                end_ns BIGINT NOT NULL, status_code INTEGER NOT NULL, run_name TEXT NOT NULL,
                run_mode TEXT NOT NULL, line TEXT NOT NULL, PRIMARY KEY (trace_id, span_id));
            INSERT INTO agenttrace_spans VALUES ('aa' || printf('%030d', 1), 'bb' || printf('%014d', 1), '', 'old',
                'run', 1, 2, 0, 'old-run', 'record', '{}');
            """
        )
    server = start_server("--database", f"sqlite:///{path}", "--api-key", KEY)
    gpt_in, _, claude_in, _ = _record(server, tmp_path, llm)
    listed = {t["name"]: t for t in server.get("/api/traces", headers=AUTH).json()["traces"]}
    assert listed["old-run"]["llm_calls"] == 0
    assert listed["llm-run"]["input_tokens"] == gpt_in + claude_in
