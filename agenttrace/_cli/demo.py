"""``agenttrace demo``: record a bundled agent against a local fake LLM, then replay it offline.

Steps: start the fake OpenAI-compatible server on 127.0.0.1, run the demo agent (openai SDK,
a tool call, a streamed answer) in record mode, stop the server, run the same agent again in
governance replay from the trace just written, and show that both outputs are identical,
random ids included. Each agent run is a fresh interpreter, as a user's script would be.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``demo`` command's arguments."""
    parser.add_argument(
        "--trace-dir", default=".agenttrace/demo", help="where the demo's trace files go (default: ./.agenttrace/demo)"
    )
    parser.add_argument("--question", default="Where is my order 1234?", help="what the demo user asks")


def _agent(env: dict[str, str], base_url: str, question: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "agenttrace._demo.agent", "--base-url", base_url, "--question", question]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=False)  # noqa: S603 - our own module


def _show(title: str, text: str) -> None:
    print(f"\n== {title} ==")
    print(text.rstrip())


def run(args: argparse.Namespace) -> int:
    """Record, stop the server, replay in governance, compare; 0 when the outputs are identical."""
    from agenttrace._demo.llm_server import FakeLLMServer

    trace_dir = Path(args.trace_dir).resolve()
    before = set(trace_dir.glob("*.jsonl"))
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTTRACE_")}
    base_env.update({"AGENTTRACE_TRACE_DIR": str(trace_dir), "AGENTTRACE_QUIET": "1"})
    server = FakeLLMServer().start()
    print(f"1. fake LLM server listening on {server.base_url}")
    try:
        recorded = _agent(base_env, server.openai_base_url, args.question)
    finally:
        calls = server.calls
        server.stop()
    if recorded.returncode != 0:
        print(recorded.stderr, file=sys.stderr)
        print("agenttrace demo: the recording run failed", file=sys.stderr)
        return 1
    (trace,) = set(trace_dir.glob("*.jsonl")) - before
    trace = Path(os.path.relpath(trace))
    print(f"2. recorded the agent: {calls} LLM call(s) -> {trace}")
    _show("recorded output", recorded.stdout)
    print(f"\n3. server stopped; replaying in governance from {trace.name} (no network)")
    replay_env = {
        **base_env,
        "AGENTTRACE_MODE": "replay",
        "AGENTTRACE_REPLAY_EVENTS_FILE": str(trace),
        "AGENTTRACE_GOVERNANCE_LEVEL": "governance",
    }
    replayed = _agent(replay_env, server.openai_base_url, args.question)
    if replayed.returncode != 0:
        print(replayed.stderr, file=sys.stderr)
        print("agenttrace demo: the replay failed", file=sys.stderr)
        return 1
    _show("replayed output", replayed.stdout)
    if replayed.stdout != recorded.stdout:
        print("\nagenttrace demo: the outputs differ", file=sys.stderr)
        return 1
    print("\n4. identical: every response, stream chunk and random id came from the recording.")
    print(f"   See the recorded run:  agenttrace show {trace}")
    return 0
