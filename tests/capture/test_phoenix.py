"""Opt-in: a recorded openai run exported to a real Arize Phoenix shows its calls as LLM spans.

Runs when Phoenix is there: ``AGENTTRACE_TEST_PHOENIX_URL`` names a running one (``phoenix serve``
listens on http://127.0.0.1:6006), or the ``phoenix`` command is on PATH (``pip install
arize-phoenix``, best in a virtualenv of its own: it brings its own OpenTelemetry versions) and the
test starts it on a free port. Skipped, saying so, otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agenttrace._demo.llm_server import FakeLLMServer
from tests.conftest import AgentRunner

AGENT = """
import json, sys, openai, agenttrace

@agenttrace.run("phoenix-agent")
def main(base):
    client = openai.OpenAI(base_url=base, api_key="sk-test", max_retries=0)
    plain = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}])
    usage = None
    for chunk in client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "stream"}], stream=True,
        stream_options={"include_usage": True},
    ):
        usage = chunk.usage or usage
    return [plain.usage.model_dump(), usage.model_dump()]

print(json.dumps(main(sys.argv[1])))
"""


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a real Phoenix: the one named by AGENTTRACE_TEST_PHOENIX_URL, or one started here."""
    given = os.environ.get("AGENTTRACE_TEST_PHOENIX_URL", "").rstrip("/")
    if given:
        yield given
        return
    command = shutil.which("phoenix")
    if command is None:
        pytest.skip(
            "Arize Phoenix is not installed (pip install arize-phoenix) and AGENTTRACE_TEST_PHOENIX_URL is unset"
        )
    port = _free_port()
    work = tmp_path_factory.mktemp("phoenix")
    env = {
        **os.environ,
        "PHOENIX_WORKING_DIR": str(work),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(_free_port()),
    }
    log = (work / "serve.log").open("wb")
    process = subprocess.Popen([command, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):  # its first start migrates a database: allow two minutes
            try:
                _get(f"{url}/v1/projects")
                break
            except OSError:
                if process.poll() is not None:
                    pytest.fail(f"phoenix serve exited ({process.returncode}); see {work / 'serve.log'}")
                time.sleep(0.5)
        else:
            pytest.fail(f"phoenix serve did not answer in two minutes; see {work / 'serve.log'}")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _spans(url: str, project: str) -> list[dict[str, Any]]:
    try:
        return list(_get(f"{url}/v1/projects/{project}/spans?limit=100")["data"])
    except OSError:
        return []  # the project appears with its first span


def test_openai_run_shows_as_llm_spans_in_phoenix(
    phoenix: str, run_agent: AgentRunner, llm: FakeLLMServer, tmp_path: Path
) -> None:
    """Phoenix shows each recorded LLM call as an LLM span with its model, token counts, input and output."""
    project = f"agenttrace-{uuid.uuid4().hex[:8]}"
    result = run_agent(
        AGENT,
        env={
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": phoenix,
            "OTEL_RESOURCE_ATTRIBUTES": f"openinference.project.name={project}",
            "AGENTTRACE_OPENINFERENCE": "1",
            "AGENTTRACE_QUIET": "1",
        },
        args=[llm.openai_base_url],
    )
    assert result.returncode == 0, result.stderr
    usages = json.loads(result.stdout)
    llm_spans: list[dict[str, Any]] = []
    for _ in range(60):  # Phoenix stores what it receives a moment later
        llm_spans = [s for s in _spans(phoenix, project) if s.get("span_kind") == "LLM"]
        if len(llm_spans) >= 2:
            break
        time.sleep(0.5)
    assert len(llm_spans) == 2, _spans(phoenix, project)
    by_tokens = sorted(llm_spans, key=lambda s: s["start_time"])
    for span, usage in zip(by_tokens, usages):
        attrs = span["attributes"]
        assert span["name"] == "chat gpt-4o-mini"
        assert attrs["llm.model_name"] == "gpt-4o-mini"
        assert attrs["llm.token_count.prompt"] == usage["prompt_tokens"]
        assert attrs["llm.token_count.completion"] == usage["completion_tokens"]
        assert attrs["llm.token_count.total"] == usage["total_tokens"]
        assert attrs["input.value"]
        assert attrs["output.value"]
        assert attrs["llm.output_messages.0.message.content"].startswith("You said:")
