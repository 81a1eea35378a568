"""The web UI in a real browser: headless Chromium (Debian's, which ``.ci/run`` installs) loads the
server's pages and prints the DOM it built; the test reads what a user would see. Payloads come
from the traced agent, so a hostile one must show as text and never run as script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.exporters.conftest import CLEAN_ENV
from tests.servers import TestServer

from .conftest import KEY, chromium_path
from .test_server import _run

HOSTILE = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"

AGENT = f"""
import sys, httpx, agenttrace

@agenttrace.run("web-run")
def main(url):
    with agenttrace.step("plan", type="llm", note={HOSTILE!r}):
        httpx.post(url + "/json?page=1", json={{"question": {HOSTILE!r}, "marker": "visible-marker-42"}})
    with agenttrace.step("lookup", type="tool"):
        httpx.get(url + "/status/503")
    with agenttrace.step("boom", type="tool"):
        raise RuntimeError("tool exploded")

try:
    main(sys.argv[1])
except RuntimeError:
    pass
"""


def _dom(browser: str, url: str, profile: Path) -> str:
    done = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=2000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_pages_show_the_run_as_a_tree_with_payloads_and_never_run_the_agents_text(
    start_server: Any, tmp_path: Path
) -> None:
    browser = chromium_path()
    if browser is None:
        pytest.skip("needs Chromium (Debian's chromium package; bash .ci/run installs it)")
    server = start_server("--database", f"sqlite:///{tmp_path / 'web.db'}")
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    env = {
        **CLEAN_ENV,
        "AGENTTRACE_API_KEY": KEY,
        "AGENTTRACE_API_URL": server.url,
        "AGENTTRACE_EXIT_UPLOAD": "wait",
        "AGENTTRACE_EXIT_TIMEOUT": "20",
        "AGENTTRACE_SPOOL_DIR": str(tmp_path / "spool"),
        "AGENTTRACE_QUIET": "1",
    }
    with TestServer() as upstream:
        done = _run([sys.executable, str(agent), upstream.url("")], env, tmp_path)
    assert done.returncode == 0, done.stderr
    [trace] = server.get("/api/traces").json()["traces"]

    index = _dom(browser, server.url + "/", tmp_path / "profile-index")
    assert "<title>AgentTrace: traces</title>" in index
    assert f'href="/traces/{trace["trace_id"]}">web-run</a>' in index
    assert index.count('class="trace-row"') == 1
    assert ">error</span>" in index  # the run raised

    page = _dom(browser, f"{server.url}/traces/{trace['trace_id']}", tmp_path / "profile-trace")
    assert "<title>AgentTrace: web-run</title>" in page  # no script of the agent's ran
    assert "pwned" not in page.split("</title>")[0]
    assert "<img" not in page.split("</style>")[1]  # the agent's markup is text, not elements
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt;" in page
    # The tree: the run, its three steps in order, each call under its step with its outcome.
    for text in ('id="run-name">web-run', ">plan</strong>", ">lookup</strong>", ">boom</strong>"):
        assert text in page, text
    assert page.index(">plan</strong>") < page.index(">lookup</strong>") < page.index(">boom</strong>")
    assert f"POST {upstream.url('/json?page=1')} → 200" in page
    assert f"GET {upstream.url('/status/503')} → 503" in page
    assert "tool exploded" in page  # the failed step's status message
    # The payloads: the request body as the agent sent it (JSON, pretty-printed) and the response.
    assert '"marker"</span>: <span class="json-value">"visible-marker-42"' in page  # a foldable JSON tree
    assert "request: POST" in page
    assert "response: 200" in page
    assert f'href="/api/traces/{trace["trace_id"]}/download"' in page
