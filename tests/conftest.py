"""Fixtures shared by the whole suite: agents run as real subprocesses, and an in-memory provider.

The OpenTelemetry global tracer provider can be set once per process, so behaviour that depends
on a fresh process (provider creation, init() from the environment, exit) is tested by running
small agent scripts with ``sys.executable``; in-process tests share one SDK provider whose
in-memory exporter the ``spans`` fixture clears before each test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agenttrace
from agenttrace._core import errors as _warn
from agenttrace._demo.llm_server import FakeLLMServer
from agenttrace._format.files import SpanRecord, read_spans
from tests.recording import Recorder
from tests.servers import TestServer

_EXPORTER = InMemorySpanExporter()
_PROVIDER = TracerProvider()
_PROVIDER.add_span_processor(SimpleSpanProcessor(_EXPORTER))
trace.set_tracer_provider(_PROVIDER)

# Variables that would change what a test agent does if the developer has them set.
_CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTTRACE_", "OTEL_"))}


def run_command(
    command: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` to its end in ``cwd`` with ``env`` (the suite's clean environment if None), capturing text."""
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=_CLEAN_ENV if env is None else env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def spans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """In-process: AgentTrace initialised into tmp_path, the shared in-memory exporter cleared."""
    for key in list(os.environ):
        if key.startswith("AGENTTRACE_"):
            monkeypatch.delenv(key)
    agenttrace.init(trace_dir=str(tmp_path / "traces"), quiet=True)
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


@dataclass
class AgentResult:
    """What a subprocess agent did: exit code, output, and the trace files it left."""

    returncode: int
    stdout: str
    stderr: str
    trace_dir: Path

    def files(self) -> list[Path]:
        """Trace files written, oldest first."""
        return sorted(self.trace_dir.glob("*.jsonl"), key=lambda p: p.stat().st_mtime_ns)

    def spans(self) -> list[SpanRecord]:
        """Every span of every trace file."""
        return [s for f in self.files() for s in read_spans(f)]


class AgentRunner:
    """Runs agent scripts in fresh interpreters, with AgentTrace's trace folder in tmp_path."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.trace_dir = tmp_path / "traces"
        self._count = 0

    def __call__(
        self, code: str, env: dict[str, str] | None = None, args: list[str] | None = None, timeout: float = 60
    ) -> AgentResult:
        self._count += 1
        script = self.tmp_path / f"agent_{self._count}.py"
        script.write_text(textwrap.dedent(code), encoding="utf-8")
        full_env = {**_CLEAN_ENV, "AGENTTRACE_TRACE_DIR": str(self.trace_dir), **(env or {})}
        done = run_command(
            [sys.executable, str(script), *(args or [])],
            cwd=self.tmp_path,
            env=full_env,
            timeout=timeout,
        )
        return AgentResult(done.returncode, done.stdout, done.stderr, self.trace_dir)


@pytest.fixture
def run_agent(tmp_path: Path) -> AgentRunner:
    """Run an agent script (source text) in a subprocess; returns its AgentResult."""
    return AgentRunner(tmp_path)


def agenttrace_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The ``agenttrace`` command (``python -m agenttrace._cli``) run to its end, text output captured."""
    return run_command([sys.executable, "-m", "agenttrace._cli", *args], cwd=Path.cwd(), timeout=timeout)


# --- loopback servers and a recorder (the instrumentor and capture tests) --------------------------


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[Recorder]:
    """A recorder writing trace files under tmp_path."""
    agenttrace.init(trace_dir=str(tmp_path), quiet=True, local_files=True)
    _warn._reset_for_tests()
    return Recorder(tmp_path)


@pytest.fixture(scope="session")
def server() -> Iterator[TestServer]:
    """The shared loopback HTTP server (tests/servers.py)."""
    with TestServer() as s:
        yield s


@pytest.fixture
def fresh_server() -> Iterator[TestServer]:
    """A loopback server of this test only (its request and connection counts start at 0)."""
    with TestServer() as s:
        yield s


@pytest.fixture(scope="session")
def llm() -> Iterator[FakeLLMServer]:
    """The bundled fake LLM server."""
    with FakeLLMServer() as s:
        yield s
