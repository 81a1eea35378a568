"""Replay tests: record a real agent against loopback servers, then replay it in a fresh process.

Each agent runs as a subprocess (the OTel global provider is set once per process). The
recording is the newest trace file after the record run; the replay's own trace lands in the
same folder. Servers stay up during replay as tripwires: their connection counters must not move.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agenttrace._demo.llm_server import FakeLLMServer
from tests.conftest import AgentResult, AgentRunner
from tests.servers import TestServer


@pytest.fixture
def server() -> Iterator[TestServer]:
    """The shared loopback HTTP server (tests/servers.py)."""
    with TestServer() as s:
        yield s


@pytest.fixture
def llm() -> Iterator[FakeLLMServer]:
    """The bundled fake OpenAI/Anthropic server."""
    with FakeLLMServer() as s:
        yield s


@dataclass
class Recorded:
    """A recording made by :func:`record`: the record run and its trace file."""

    result: AgentResult
    path: Path


class Replayer:
    """Records an agent, then replays it with the recording, in separate interpreters."""

    def __init__(self, runner: AgentRunner) -> None:
        self.runner = runner

    def record(self, code: str, args: list[str] | None = None, env: dict[str, str] | None = None) -> Recorded:
        """Run ``code`` in record mode; fail the test unless it exits 0 and writes a trace."""
        before = set(self.runner.trace_dir.glob("*.jsonl")) if self.runner.trace_dir.exists() else set()
        result = self.runner(code, args=args, env=env)
        assert result.returncode == 0, result.stderr
        new = [p for p in result.files() if p not in before]
        assert new, result.stderr
        return Recorded(result, new[-1])

    def round_trip(self, code: str, server: TestServer) -> tuple[Recorded, AgentResult]:
        """Record ``code`` against ``server``, replay it in governance: same output, no new connection."""
        rec = self.record(code, [server.base_url])
        before = server.connections
        rep = self.replay(code, rec, [server.base_url])
        assert rep.returncode == 0, rep.stderr
        assert rep.stdout == rec.result.stdout
        assert server.connections == before
        return rec, rep

    def replay(
        self,
        code: str,
        recording: Recorded | Path,
        args: list[str] | None = None,
        level: str = "governance",
        env: dict[str, str] | None = None,
    ) -> AgentResult:
        """Run ``code`` in replay mode from ``recording`` at governance ``level``."""
        path = recording.path if isinstance(recording, Recorded) else recording
        full = {
            "AGENTTRACE_MODE": "replay",
            "AGENTTRACE_REPLAY_EVENTS_FILE": str(path),
            "AGENTTRACE_GOVERNANCE_LEVEL": level,
            **(env or {}),
        }
        return self.runner(code, args=args, env=full)


@pytest.fixture
def replayer(run_agent: AgentRunner) -> Replayer:
    """Record-then-replay helper bound to this test's tmp folder."""
    return Replayer(run_agent)
