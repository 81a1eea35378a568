"""The pytest plugin against real pytest runs: a sample project (an agent using the openai SDK and
requests against loopback servers) is run with pytest in a subprocess, recorded with the servers
up, then replayed with the servers as tripwires (their connection counts must not move)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from agenttrace._demo.llm_server import FakeLLMServer
from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.KIND
from agenttrace._format.files import read_spans
from tests.servers import TestServer

pytest_plugins = ("pytester",)

AGENT = """
import os

import openai
import requests

PROMPT = "hello there"


def ask(prompt=PROMPT):
    client = openai.OpenAI(base_url=os.environ["LLM_URL"], api_key="sk-test", max_retries=0)
    reply = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": prompt}])
    tool = requests.get(os.environ["TOOL_URL"] + "/json?q=1", timeout=5).json()
    return reply.choices[0].message.content, tool["path"]


async def ask_async(prompt=PROMPT):
    client = openai.AsyncOpenAI(base_url=os.environ["LLM_URL"], api_key="sk-test", max_retries=0)
    reply = await client.chat.completions.create(model="demo", messages=[{"role": "user", "content": prompt}])
    return reply.choices[0].message.content


def ask_or_fallback():
    try:
        return ask()[0]
    except Exception:  # the agent's own safety net: a governance error must still fail the test
        return "fallback"
"""

TESTS = """
import pytest

import agent


@pytest.mark.agenttrace
def test_sync():
    text, path = agent.ask()
    assert "hello there" in text and path == "/json"


@pytest.mark.agenttrace
@pytest.mark.anyio
async def test_async():
    assert "hello there" in await agent.ask_async()


@pytest.mark.agenttrace
@pytest.mark.parametrize("word", ["alpha", "beta gamma/x"])
def test_param(word):
    assert word in agent.ask(word)[0]


@pytest.mark.agenttrace
def test_swallowed():
    assert agent.ask_or_fallback() != ""
"""

NAMES = ("test_sync", "test_async-asyncio", "test_param-alpha", "test_param-beta-gamma-x", "test_swallowed")


def _plugin_args() -> list[str]:
    """``-p agenttrace.pytest_plugin`` until the entry point registers it (then loading it twice fails)."""
    registered = any(ep.value == "agenttrace.pytest_plugin" for ep in importlib.metadata.entry_points(group="pytest11"))
    return [] if registered else ["-p", "agenttrace.pytest_plugin"]


class Servers:
    """The loopback LLM and tool servers; ``hits()`` counts what reached them."""

    def __init__(self, llm: FakeLLMServer, tool: TestServer) -> None:
        self.llm = llm
        self.tool = tool

    def hits(self) -> int:
        return self.llm.calls + self.tool.connections


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    """A fake OpenAI server and the tool server, on 127.0.0.1, for the whole module."""
    with FakeLLMServer() as llm, TestServer() as tool:
        yield Servers(llm, tool)


class Project:
    """A sample project in a tmp dir, run with pytest in a subprocess."""

    def __init__(self, pytester: pytest.Pytester, servers: Servers) -> None:
        self.pytester = pytester
        self.servers = servers
        self.root = pytester.path
        pytester.makeini("[pytest]\npythonpath = .\naddopts = -p no:cacheprovider\n")
        (self.root / "agent.py").write_text(textwrap.dedent(AGENT), encoding="utf-8")
        (self.root / "tests").mkdir()
        self.write_tests(TESTS)

    def write_tests(self, text: str, name: str = "test_agent.py") -> None:
        (self.root / "tests" / name).write_text(textwrap.dedent(text), encoding="utf-8")

    def recording(self, name: str, module: str = "test_agent") -> Path:
        return self.root / "tests" / "recordings" / module / f"{name}.jsonl"

    def run(self, *args: str) -> pytest.RunResult:
        return self.pytester.runpytest_subprocess(*_plugin_args(), *args, "tests", timeout=120)


@pytest.fixture
def project(pytester: pytest.Pytester, servers: Servers, monkeypatch: pytest.MonkeyPatch) -> Project:
    """The sample project, with the servers' URLs in the environment and no AGENTTRACE_* variable set."""
    for key in list(os.environ):
        if key.startswith(("AGENTTRACE_", "OTEL_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("LLM_URL", servers.llm.openai_base_url)
    monkeypatch.setenv("TOOL_URL", servers.tool.url(""))
    return Project(pytester, servers)


def test_records_where_promised_then_replays_with_zero_connections(project: Project) -> None:
    """A first run records one file per test at recordings/<module>/<test>.jsonl; a second replays offline."""
    project.run().assert_outcomes(passed=5)
    for name in NAMES:
        path = project.recording(name)
        assert path.is_file(), name
        spans = read_spans(path)
        assert sum(s.attributes.get(S.KIND) == "call" for s in spans) >= 1
        lines = path.read_text(encoding="utf-8").splitlines()
        assert len(lines) == len(spans)  # one span per line: reviewable in a pull request
    before = project.servers.hits()
    result = project.run("-rA")
    result.assert_outcomes(passed=5)
    assert project.servers.hits() == before
    result.stdout.fnmatch_lines(["*replayed*test_sync.jsonl (governance): 2 call(s) served, 0 missed*"])


def test_changed_prompt_fails_with_the_json_path_even_when_swallowed(project: Project) -> None:
    """A changed prompt fails replay with the differing JSON path, also where the agent caught the error."""
    project.run().assert_outcomes(passed=5)
    agent = project.root / "agent.py"
    agent.write_text(agent.read_text().replace('PROMPT = "hello there"', 'PROMPT = "hello there!"'))
    before = project.servers.hits()
    result = project.run()
    result.assert_outcomes(passed=2, failed=3)  # test_sync, test_async and test_swallowed use PROMPT
    assert project.servers.hits() == before
    assert 'body $.messages[0].content: recorded "hello there", called "hello there!"' in result.stdout.str()
    assert "ReplayMismatchError" in result.stdout.str()
    assert "FAILED tests/test_agent.py::test_swallowed" in result.stdout.str()
    assert "caught by the agent's code" in result.stdout.str()


def test_record_mode_none_fails_naming_the_missing_file(project: Project) -> None:
    """`none` replays only: a deleted recording fails its test naming the file and the command that records it."""
    project.run().assert_outcomes(passed=5)
    missing = project.recording("test_sync")
    missing.unlink()
    before = project.servers.hits()
    result = project.run("--agenttrace-record-mode=none")
    result.assert_outcomes(passed=4, failed=1)
    assert project.servers.hits() == before
    assert not missing.exists()
    text = result.stdout.str()
    assert str(missing) in text
    assert "--agenttrace-record-mode=once" in text


def test_record_mode_all_records_again(project: Project) -> None:
    """`all` makes the real calls again and replaces each recording."""
    project.run().assert_outcomes(passed=5)
    first = read_spans(project.recording("test_sync"))[0].trace_id
    before = project.servers.hits()
    project.run("--agenttrace-record-mode=all").assert_outcomes(passed=5)
    assert project.servers.hits() > before
    assert read_spans(project.recording("test_sync"))[0].trace_id != first


def test_new_episodes_records_what_is_new_into_the_same_file(project: Project) -> None:
    """`new_episodes` serves the recorded call, makes and records the new one; then `none` replays both."""
    project.write_tests(
        """
        import pytest
        import agent

        @pytest.mark.agenttrace
        def test_grow():
            agent.ask("first")
        """,
        "test_agent.py",
    )
    project.run().assert_outcomes(passed=1)
    path = project.recording("test_grow")
    calls = sum(s.attributes.get(S.KIND) == "call" for s in read_spans(path))
    project.write_tests(
        """
        import pytest
        import agent

        @pytest.mark.agenttrace
        def test_grow():
            agent.ask("first")
            agent.ask("second")
        """,
        "test_agent.py",
    )
    project.run("--agenttrace-record-mode=none").assert_outcomes(failed=1)
    llm_before = project.servers.llm.calls
    project.run("--agenttrace-record-mode=new_episodes").assert_outcomes(passed=1)
    assert project.servers.llm.calls == llm_before + 1  # only the new call reached the server
    spans = read_spans(path)
    assert sum(s.attributes.get(S.KIND) == "call" for s in spans) > calls
    before = project.servers.hits()
    project.run("--agenttrace-record-mode=none").assert_outcomes(passed=1)
    assert project.servers.hits() == before


def test_failed_test_writes_no_recording_unless_kept(project: Project) -> None:
    """A recording is written only when the test passed, or with --agenttrace-keep-failed."""
    project.write_tests(
        """
        import pytest
        import agent

        @pytest.mark.agenttrace
        def test_fails():
            agent.ask()
            assert False, "the test's own failure"
        """
    )
    project.run().assert_outcomes(failed=1)
    assert not project.recording("test_fails").exists()
    project.run("--agenttrace-keep-failed").assert_outcomes(failed=1)
    assert project.recording("test_fails").is_file()


def test_fixture_gives_path_mode_and_report(project: Project) -> None:
    """agenttrace_recording gives the path, the mode in effect and the live replay report (served, unused)."""
    project.write_tests(
        """
        import pytest
        import agent

        def test_report(agenttrace_recording):
            assert agenttrace_recording.path.name == "test_report.jsonl"
            assert agenttrace_recording.record_mode == "once"
            agent.ask()
            if agenttrace_recording.replaying:
                report = agenttrace_recording.report
                assert report.served == 2, report
                assert report.missed == [] and report.unused == [], report
                print("REPLAYED", report.served)
            else:
                assert agenttrace_recording.mode == "record"
                print("RECORDED")
        """
    )
    project.run("-s").stdout.fnmatch_lines(["*RECORDED*"])
    project.run("-s").stdout.fnmatch_lines(["*REPLAYED 2*"])


def test_unused_calls_are_listed_and_can_fail_the_test(project: Project) -> None:
    """Recorded calls the test no longer makes are listed in the report; fail_on_unused makes them fail it."""
    project.write_tests(
        """
        import os
        import pytest
        import agent

        @pytest.mark.agenttrace
        def test_fewer():
            if not os.environ.get("SKIP_TOOL"):
                agent.ask()
            else:
                agent.ask.__globals__["openai"].OpenAI(
                    base_url=os.environ["LLM_URL"], api_key="sk-test", max_retries=0
                ).chat.completions.create(model="demo", messages=[{"role": "user", "content": "hello there"}])

        @pytest.mark.agenttrace(fail_on_unused=True, path="recordings/test_agent/test_fewer.jsonl")
        def test_fewer_strict():
            test_fewer()
        """
    )
    project.run("-k", "not strict").assert_outcomes(passed=1)
    os.environ["SKIP_TOOL"] = "1"
    try:
        result = project.run("-rA")
    finally:
        del os.environ["SKIP_TOOL"]
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*unused: GET http://127.0.0.1:*/json?q=1*"])
    assert "FAILED tests/test_agent.py::test_fewer_strict" in result.stdout.str()


def test_match_rules_ignore_a_timestamp(project: Project) -> None:
    """ignore=["$.metadata.sent_at", "header:x-sent-at", "query:ts"] lets a clock value change between runs."""
    project.write_tests(
        """
        import os, time
        import pytest, requests

        def call():
            now = str(time.monotonic_ns())  # differs between runs (the wall clock replays as recorded)
            requests.post(
                os.environ["TOOL_URL"] + "/json?ts=" + now,
                json={"q": "weather", "metadata": {"sent_at": now}},
                headers={"x-sent-at": now},
                timeout=5,
            ).raise_for_status()

        @pytest.mark.agenttrace(ignore=["$.metadata.sent_at", "header:x-sent-at", "query:ts"])
        def test_ignored():
            call()

        @pytest.mark.agenttrace
        def test_compared():
            call()
        """
    )
    project.run().assert_outcomes(passed=2)
    before = project.servers.hits()
    result = project.run()
    result.assert_outcomes(passed=1, failed=1)
    assert project.servers.hits() == before
    assert "FAILED tests/test_agent.py::test_compared" in result.stdout.str()


def test_subprocess_and_thread_agents_are_recorded_and_replayed(project: Project) -> None:
    """A Python subprocess (with the test's match rules) and a thread are recorded into the test's file and replayed."""
    (project.root / "sub_agent.py").write_text(
        "import os, time, requests\n"
        "url = os.environ['TOOL_URL'] + f'/json?s=1&ts={time.time_ns()}'\n"
        "print(requests.get(url, timeout=5).json()['path'])\n"
    )
    project.write_tests(
        """
        import os, subprocess, sys, threading
        import pytest, requests

        @pytest.mark.agenttrace(ignore=["query:ts"])  # the subprocess gets the rules too
        def test_subprocess():
            done = subprocess.run([sys.executable, "sub_agent.py"], capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
            assert done.stdout.strip() == "/json"

        @pytest.mark.agenttrace
        def test_thread():
            out = []
            url = os.environ["TOOL_URL"] + "/json?t=1"
            worker = threading.Thread(target=lambda: out.append(requests.get(url, timeout=5).json()["path"]))
            worker.start()
            worker.join()
            assert out == ["/json"]
        """
    )
    project.run().assert_outcomes(passed=2)
    runs = [s.name for s in read_spans(project.recording("test_subprocess")) if s.attributes.get(S.KIND) == "run"]
    assert sorted(runs) == ["sub_agent.py", "test_subprocess"]
    before = project.servers.hits()
    project.run().assert_outcomes(passed=2)
    assert project.servers.hits() == before


@pytest.mark.skipif(importlib.util.find_spec("xdist") is None, reason="pytest-xdist is not installed")
def test_xdist_workers_record_and_replay(project: Project) -> None:
    """With -n 2 each worker writes its own tests' recordings, and replays them offline."""
    project.run("-n", "2").assert_outcomes(passed=5)
    assert all(project.recording(name).is_file() for name in NAMES)
    before = project.servers.hits()
    project.run("-n", "2").assert_outcomes(passed=5)
    assert project.servers.hits() == before


@pytest.mark.skipif(importlib.util.find_spec("pytest_asyncio") is None, reason="pytest-asyncio is not installed")
def test_pytest_asyncio_tests(project: Project) -> None:
    """An async test under pytest-asyncio is recorded and replayed like a sync one."""
    project.pytester.makeini(
        "[pytest]\npythonpath = .\naddopts = -p no:cacheprovider\nasyncio_default_fixture_loop_scope = function\n"
    )
    project.write_tests(
        """
        import pytest
        import agent

        @pytest.mark.agenttrace
        @pytest.mark.asyncio
        async def test_aio():
            assert "hello there" in await agent.ask_async()
        """
    )
    project.run().assert_outcomes(passed=1)
    assert project.recording("test_aio").is_file()
    before = project.servers.hits()
    project.run().assert_outcomes(passed=1)
    assert project.servers.hits() == before


def test_unmarked_tests_are_untouched(project: Project) -> None:
    """A test that asks for nothing gets no recording and makes its real calls."""
    project.write_tests(
        """
        import agent

        def test_plain():
            agent.ask()
        """
    )
    before = project.servers.hits()
    project.run().assert_outcomes(passed=1)
    assert project.servers.hits() == before + 2
    assert not (project.root / "tests" / "recordings").exists()


def test_recordings_dir_ini_option(project: Project) -> None:
    """agenttrace_recordings_dir moves the root of the recordings (module folder, then test file)."""
    project.pytester.makeini(
        "[pytest]\npythonpath = .\naddopts = -p no:cacheprovider\nagenttrace_recordings_dir = cassettes\n"
    )
    project.run("-k", "test_sync").assert_outcomes(passed=1, deselected=4)
    assert (project.root / "cassettes" / "test_agent" / "test_sync.jsonl").is_file()


def test_diff_of_a_recording_and_its_replay_is_equal(project: Project) -> None:
    """agenttrace diff REPLAY_TRACE finds the recording the replay names and finds them equal (exit 0)."""
    project.run("-k", "test_sync").assert_outcomes(passed=1, deselected=4)
    replays = project.root / "replays"
    os.environ["AGENTTRACE_TRACE_DIR"] = str(replays)
    try:
        project.run("-k", "test_sync", "--agenttrace-write-replay-traces").assert_outcomes(passed=1, deselected=4)
    finally:
        del os.environ["AGENTTRACE_TRACE_DIR"]
    (replay,) = replays.glob("*.jsonl")
    done = _agenttrace("diff", str(replay))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "equal" in done.stdout


def _agenttrace(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agenttrace._cli", *args], capture_output=True, text=True, check=False, timeout=60
    )


def test_relaxed_per_test_lets_a_new_call_through(project: Project) -> None:
    """governance_level="relaxed" on the marker makes a call the recording lacks for real, with a warning."""
    project.write_tests(
        """
        import pytest
        import agent

        PROMPT = "first"

        @pytest.mark.agenttrace(governance_level="relaxed")
        def test_relaxed():
            agent.ask(PROMPT)
        """
    )
    project.run().assert_outcomes(passed=1)
    tests = project.root / "tests" / "test_agent.py"
    tests.write_text(tests.read_text().replace('PROMPT = "first"', 'PROMPT = "changed"'))
    llm_before = project.servers.llm.calls
    result = project.run("-rA")
    result.assert_outcomes(passed=1)
    assert project.servers.llm.calls == llm_before + 1
    assert "making the real call (relaxed)" in result.stdout.str()


def test_marker_on_a_class_and_closest_arguments_win(project: Project) -> None:
    """A class marker marks its tests (recorded as <Class>.<test>); a test's own marker arguments win."""
    project.write_tests(
        """
        import pytest
        import agent

        @pytest.mark.agenttrace(record_mode="none")
        class TestAgent:
            @pytest.mark.agenttrace(record_mode="once")
            def test_recorded(self):
                agent.ask()

            def test_replay_only(self):
                agent.ask()
        """
    )
    result = project.run()
    result.assert_outcomes(passed=1, failed=1)
    assert project.recording("TestAgent.test_recorded").is_file()
    assert "FAILED tests/test_agent.py::TestAgent::test_replay_only" in result.stdout.str()
    assert str(project.recording("TestAgent.test_replay_only")) in result.stdout.str()


def test_marker_live_sends_the_llm_calls_and_serves_the_tools(project: Project) -> None:
    """`live="llm"`: a replaying test asks the LLM again, its tool call is served; `live_from` takes a step."""
    project.write_tests(
        """
        import pytest
        import agent

        @pytest.mark.agenttrace(live="llm")
        def test_llm_live():
            text, path = agent.ask()
            assert "hello there" in text and path == "/json"
        """,
        "test_agent.py",
    )
    project.run().assert_outcomes(passed=1)  # records
    llm_before, tool_before = project.servers.llm.calls, project.servers.tool.connections
    project.run("--agenttrace-record-mode=none").assert_outcomes(passed=1)
    assert project.servers.llm.calls == llm_before + 1  # the LLM call went live
    assert project.servers.tool.connections == tool_before  # the tool call was served
    project.write_tests(
        """
        import pytest
        import agent

        @pytest.mark.agenttrace(live_from="#x")
        def test_llm_live():
            agent.ask()
        """,
        "test_agent.py",
    )
    bad = project.run("--agenttrace-record-mode=none")
    assert "live_from: '#x': expected STEP, STEP#N or #N" in "\n".join(bad.outlines + bad.errlines)


def test_tests_sharing_a_recording_see_an_edit_made_between_them(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tests replaying one file load it once; an edit in between (size and mtime kept) is read and refused."""
    project.write_tests(
        """
        import os, re
        import pytest
        import agent

        shared = pytest.mark.agenttrace(path="recordings/shared.jsonl")

        @shared
        def test_first():
            assert agent.ask()[1] == "/json"

        @shared
        def test_second():
            assert agent.ask()[1] == "/json"
            if os.environ.get("EDIT_AFTER_SECOND"):  # the tool's response id, by hand, keeping size and mtime
                path = os.path.join(os.path.dirname(__file__), "recordings", "shared.jsonl")
                before = os.stat(path)
                with open(path, encoding="utf-8") as handle:
                    text = handle.read()
                edited = re.sub(r'(\\\\"id\\\\": \\\\")[0-9a-f]{32}', lambda m: m.group(1) + "f" * 32, text)
                assert edited != text
                with open(path, "w", encoding="utf-8") as handle:
                    handle.write(edited)
                os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))

        @shared
        def test_third():
            assert agent.ask()[1] == "/json"
        """
    )
    project.run("-k", "test_first").assert_outcomes(passed=1)  # records
    before = project.servers.hits()
    project.run("-rA").assert_outcomes(passed=3)  # the second and third replay what the first loaded
    monkeypatch.setenv("EDIT_AFTER_SECOND", "1")
    result = project.run("-rA")
    result.assert_outcomes(passed=2, failed=1)
    assert "FAILED tests/test_agent.py::test_third" in result.stdout.str()
    assert "does not match its" in result.stdout.str()
    assert project.servers.hits() == before
