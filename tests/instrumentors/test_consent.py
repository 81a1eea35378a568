"""Being installed is not consent: under another distro's ``opentelemetry-instrument`` AgentTrace captures nothing.

Each test runs a real ``opentelemetry-instrument`` (with ``opentelemetry-distro`` installed beside
AgentTrace) on a script that POSTs a secret with httpx to a loopback server, with the console
span exporter, and reads what was exported from the process's output.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.conftest import run_command
from tests.servers import TestServer

BIN = Path(sys.executable).parent
SECRET = "secret_prompt"

SCRIPT = """
import sys

import httpx

import agenttrace


def call():
    httpx.post(sys.argv[1], json={"secret_prompt": "tell no one"}, timeout=10)


from agenttrace.instrumentors.httpx.adapter import adapter_for

# The premise: opentelemetry-instrument turned AgentTrace's httpx instrumentor on.
print("agenttrace-patched", adapter_for("httpx", "httpx", None).installed, flush=True)
how = sys.argv[2]
if how == "init":
    agenttrace.init()
    call()
elif how == "run":
    agenttrace.run("agent")(call)()
else:
    call()
"""


def _instrument(tmp_path: Path, url: str, how: str, distro: str) -> tuple[str, str]:
    script = tmp_path / "service.py"
    script.write_text(SCRIPT, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTTRACE_", "OTEL_"))}
    env.update(
        OTEL_PYTHON_DISTRO=distro,
        OTEL_TRACES_EXPORTER="console",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        AGENTTRACE_TRACE_DIR=str(tmp_path / "traces"),
    )
    done = run_command(
        [str(BIN / "opentelemetry-instrument"), sys.executable, str(script), url, how], cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "agenttrace-patched True" in done.stdout
    return done.stdout, done.stderr


def test_another_distro_exports_no_payload(tmp_path: Path, server: TestServer) -> None:
    """OTEL_PYTHON_DISTRO=distro, no init(), no run: no body, no AgentTrace span, no trace file; the call went out."""
    before = len(server.requests)
    stdout, stderr = _instrument(tmp_path, server.url("/status/200"), "plain", "distro")
    assert server.requests[before:] == [("POST", "/status/200")]
    assert '"name": "POST"' in stdout  # OpenTelemetry's own httpx span: the console exporter works
    assert SECRET not in stdout + stderr
    assert "agenttrace.kind" not in stdout
    assert not (tmp_path / "traces").exists()


@pytest.mark.parametrize(
    ("how", "distro"),
    [
        ("plain", "agenttrace"),  # AgentTrace's distro (and so its configurator and process run)
        ("init", "distro"),  # another distro, but the code calls agenttrace.init()
        ("run", "distro"),  # another distro, but the call is inside a run
    ],
)
def test_choosing_agenttrace_still_captures(tmp_path: Path, server: TestServer, how: str, distro: str) -> None:
    """AgentTrace chosen (its distro, init() in the code, or a run): the request body is exported."""
    stdout, _ = _instrument(tmp_path, server.url("/status/200"), how, distro)
    assert SECRET in stdout
    assert "agenttrace.kind" in stdout


def test_agenttraces_configurator_picked_by_default_for_another_distro_does_only_the_sdk(tmp_path: Path) -> None:
    """Run as the first configurator found while another distro was chosen: the SDK set-up, no init(), no run."""
    probe = """
import agenttrace._core.runtime as r
from agenttrace._cli.instrument import AgentTraceConfigurator
from opentelemetry import trace

AgentTraceConfigurator().configure()
provider = trace.get_tracer_provider()
processors = provider._active_span_processor._span_processors  # the SDK's, read only to check
print("chosen", r.runtime.chosen, "settings", r.runtime.settings, [type(p).__name__ for p in processors])
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTTRACE_", "OTEL_"))}
    env.update(OTEL_TRACES_EXPORTER="console", OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none")
    done = run_command([sys.executable, "-c", probe], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["chosen", "False", "settings", "None", "['BatchSpanProcessor']"]
