"""A trace survives the death of its process: kill -9, SIGTERM, and folders shared between processes.

Each test runs a real agent in a subprocess against the loopback server, ends it from outside
(SIGKILL, SIGTERM) or runs a second process next to it, and checks what is on disk, what
``agenttrace show`` says about it, and what loading it for replay gives.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from agenttrace import ConfigurationError
from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.KIND
from agenttrace._format.files import read_spans
from agenttrace._replay.loader import load_recording
from tests.conftest import agenttrace_cli, run_command
from tests.servers import TestServer

from .conftest import CLEAN_ENV, wait_until

# Calls, then "ready", then a long sleep: the process is ended from outside while it sleeps.
# With "replay" as its argument it makes the same calls and exits (replay serves them).
AGENT = """
import sys, time
import httpx
import agenttrace

URL = sys.argv[1]
CALLS = int(sys.argv[2])

@agenttrace.run("long-agent")
def main():
    with httpx.Client() as client:
        for i in range(CALLS):
            print("GOT", client.post(URL, json={"i": i}).json()["body"], flush=True)
    if sys.argv[3:] != ["replay"]:
        print("ready", flush=True)
        time.sleep(120)

main()
"""


@pytest.fixture
def loopback() -> Iterator[TestServer]:
    """A loopback server of this test only (its request count starts at 0)."""
    with TestServer() as server:
        yield server


def _start(tmp_path: Path, code: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    script = tmp_path / f"agent_{len(list(tmp_path.glob('agent_*.py')))}.py"
    script.write_text(textwrap.dedent(code), encoding="utf-8")
    full_env = {**CLEAN_ENV, "AGENTTRACE_TRACE_DIR": str(tmp_path / "traces"), **(env or {})}
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=full_env,
        cwd=tmp_path,
        text=True,
    )


def _wait_ready(proc: subprocess.Popen[str]) -> list[str]:
    """Lines the agent printed up to "ready"."""
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        if line.strip() == "ready":
            return lines
        lines.append(line.strip())
    _, err = proc.communicate(timeout=30)
    raise AssertionError(f"the agent ended before it was ready:\n{err}")


def _show(*args: str) -> subprocess.CompletedProcess[str]:
    return agenttrace_cli("show", "--no-color", *args)


def _call_spans(path: Path) -> list[int]:
    """The ``i`` of each recorded POST, from its request body ([] while the file has no whole line yet)."""
    found = []
    try:
        spans = read_spans(path)
    except ConfigurationError:
        return []  # created a moment ago, its first line not written yet
    for span in spans:
        if span.attributes.get(S.KIND) != "call":
            continue
        for name, _, attrs in span.events:
            if name == S.EVENT_REQUEST:
                found.append(json.loads(str(attrs[S.BODY]))["i"])
    return sorted(found)


def test_kill_9_leaves_every_finished_call_on_disk(tmp_path: Path, loopback: TestServer) -> None:
    """After kill -9 the partial file holds the calls that ended; show says it was cut short; replay serves them."""
    proc = _start(tmp_path, AGENT, [loopback.url("/json"), "2"])
    try:
        _wait_ready(proc)
        traces = tmp_path / "traces"
        # Both calls reach the disk shortly after they end (the agent is asleep now, its run open).
        assert wait_until(lambda: any(_call_spans(p) == [0, 1] for p in traces.glob(".*.jsonl.partial-*")))
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    (partial,) = traces.glob(".*.jsonl.partial-*")
    assert list(traces.glob("*.jsonl")) == []  # no half-written <trace_id>.jsonl

    shown = _show(str(traces))  # the folder: finished runs, and the partial files
    assert shown.returncode == 0, shown.stderr
    assert "cut short: the process writing it died before its run ended" in shown.stdout
    assert shown.stdout.count("POST") == 2

    # Replay serves the recording up to the cut: no request reaches the server.
    before = len(loopback.requests)
    _, exchanges = load_recording(partial, "test")
    assert len(exchanges) == 2
    replay = _start(
        tmp_path,
        AGENT,
        [loopback.url("/json"), "2", "replay"],
        {"AGENTTRACE_MODE": "replay", "AGENTTRACE_REPLAY_EVENTS_FILE": str(partial)},
    )
    out, err = replay.communicate(timeout=60)
    assert replay.returncode == 0, err
    assert out.count("GOT") == 2
    assert len(loopback.requests) == before


def test_kill_9_mid_line_keeps_the_whole_lines(tmp_path: Path, loopback: TestServer) -> None:
    """A partial file whose last line a kill cut mid-write is read up to that line, with a warning naming it."""
    proc = _start(tmp_path, AGENT, [loopback.url("/json"), "3"])
    try:
        _wait_ready(proc)
        traces = tmp_path / "traces"
        assert wait_until(lambda: any(len(_call_spans(p)) == 3 for p in traces.glob(".*.jsonl.partial-*")))
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    (partial,) = traces.glob(".*.jsonl.partial-*")
    lines = partial.read_bytes().splitlines(keepends=True)
    whole = sum(1 for line in lines if b'"name":"POST"' in line)
    with partial.open("ab") as out:
        out.write(lines[-1][: len(lines[-1]) // 2])  # what a kill in the middle of a write leaves
    shown = _show(str(partial))
    assert shown.returncode == 0, shown.stderr
    assert f"line {len(lines) + 1}, its last, is incomplete" in shown.stderr
    assert str(partial) in shown.stderr
    _, exchanges = load_recording(partial, "test")
    assert len(exchanges) == 3
    assert whole >= 1


def _terminated(tmp_path: Path, code: str, args: list[str]) -> tuple[subprocess.Popen[str], str, str]:
    """Start the agent, send SIGTERM once it has made its first calls; the process and its output."""
    proc = _start(tmp_path, code, args)
    try:
        _wait_ready(proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    return proc, out, err


def test_sigterm_default_writes_everything_and_still_dies_of_sigterm(tmp_path: Path, loopback: TestServer) -> None:
    """SIGTERM's default action: every call is kept (<trace_id>.incomplete.jsonl); the process dies of SIGTERM."""
    proc, _, err = _terminated(tmp_path, AGENT, [loopback.url("/json"), "300"])
    assert proc.returncode == -signal.SIGTERM, err  # the signal's behaviour is unchanged
    traces = tmp_path / "traces"
    (kept,) = traces.glob("*.incomplete.jsonl")
    assert _call_spans(kept) == list(range(300))
    assert list(traces.glob(".*.partial-*")) == []
    shown = _show(str(kept))
    assert "cut short" in shown.stdout


AGENT_WITH_HANDLER = (
    """
import signal, sys
def on_term(signum, frame):
    print("agent handler", flush=True)
    sys.exit(7)
signal.signal(signal.SIGTERM, on_term)
"""
    + AGENT
)


def test_sigterm_chains_to_the_agents_handler(tmp_path: Path, loopback: TestServer) -> None:
    """The agent's own SIGTERM handler still runs (and decides the exit); the run ends normally with every call."""
    proc, out, err = _terminated(tmp_path, AGENT_WITH_HANDLER, [loopback.url("/json"), "50"])
    assert proc.returncode == 7, err
    assert "agent handler" in out
    (file,) = (tmp_path / "traces").glob("*.jsonl")
    assert _call_spans(file) == list(range(50))
    run = next(s for s in read_spans(file) if s.attributes.get(S.KIND) == "run")
    assert run.status_code == 2  # the run ended with the agent's SystemExit


def test_sigterm_ignored_stays_ignored(tmp_path: Path, loopback: TestServer) -> None:
    """An agent that ignores SIGTERM keeps ignoring it: AgentTrace installs nothing over SIG_IGN."""
    code = "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + AGENT.replace(
        "time.sleep(120)", "time.sleep(1.5)"
    )
    proc = _start(tmp_path, code, [loopback.url("/json"), "1"])
    _wait_ready(proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert len(list((tmp_path / "traces").glob("*.jsonl"))) == 1


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_live_partial_file_of_another_process_is_never_claimed(tmp_path: Path, loopback: TestServer) -> None:
    """Two processes sharing a folder: a live run's file is not taken whatever its name's pid says; a dead one's is."""
    # The first agent's files carry the pid of a process that no longer exists, as a process of
    # another container (or another PID 1) looks from here.
    dead = _dead_pid()
    code = f"import os\nos.getpid = lambda: {dead}\n" + AGENT
    first = _start(tmp_path, code, [loopback.url("/json"), "3"])
    traces = tmp_path / "traces"
    try:
        _wait_ready(first)
        assert wait_until(lambda: any(len(_call_spans(p)) == 3 for p in traces.glob(".*.jsonl.partial-*")))
        (live,) = traces.glob(".*.jsonl.partial-*")
        assert f".partial-{dead}-" in live.name
        second = _start(tmp_path, "import agenttrace\nagenttrace.run(lambda: None)()\n", [])
        _, err = second.communicate(timeout=60)
        assert second.returncode == 0, err
        assert "interrupted run" not in err
        assert live.exists()  # still the first agent's
        assert list(traces.glob("*.incomplete.jsonl")) == []
    finally:
        first.kill()
        first.communicate(timeout=30)
    # Now its writer is gone: the next run keeps its spans in sight.
    third = _start(tmp_path, "import agenttrace\nagenttrace.run(lambda: None)()\n", [])
    _, err = third.communicate(timeout=60)
    assert "kept the spans of an interrupted run" in err
    (recovered,) = traces.glob("*.incomplete.jsonl")
    assert _call_spans(recovered) == [0, 1, 2]


def test_show_says_a_live_partial_file_is_still_being_written(tmp_path: Path, loopback: TestServer) -> None:
    """agenttrace show on a run in progress says so, and shows its calls so far."""
    proc = _start(tmp_path, AGENT, [loopback.url("/json"), "2"])
    traces = tmp_path / "traces"
    try:
        _wait_ready(proc)
        assert wait_until(lambda: any(len(_call_spans(p)) == 2 for p in traces.glob(".*.jsonl.partial-*")))
        shown = _show(str(traces))
        assert "still being written: its run has not ended" in shown.stdout
        assert shown.stdout.count("POST") == 2
    finally:
        proc.kill()
        proc.communicate(timeout=30)


PID_1_AGENT = """
import os, signal, sys, httpx, agenttrace

@agenttrace.run("pid-one")
def main(url):
    httpx.get(url)
    os.kill(os.getpid(), signal.SIGTERM)  # PID 1: the default action is ignored, the process goes on
    for _ in range(3):
        httpx.get(url)
    return os.getpid()

print("pid", main(sys.argv[1]))
"""


def test_sigterm_to_pid_1_keeps_recording(tmp_path: Path, loopback: TestServer) -> None:
    """A container's PID 1 survives a default-action SIGTERM: its later calls are still recorded, in one file."""
    import shutil

    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        pytest.skip("a PID namespace needs unshare(1) and root")
    script = tmp_path / "pid_one.py"
    script.write_text(PID_1_AGENT, encoding="utf-8")
    done = run_command(
        [unshare, "--pid", "--fork", sys.executable, str(script), loopback.url("/json")],
        cwd=tmp_path,
        env={**CLEAN_ENV, "AGENTTRACE_TRACE_DIR": str(tmp_path / "traces")},
        timeout=120,
    )
    if "unshare failed" in done.stderr:
        pytest.skip(f"no PID namespace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert "pid 1" in done.stdout
    (trace,) = (tmp_path / "traces").glob("*.jsonl")
    assert ".incomplete." not in trace.name
    calls = [span for span in read_spans(trace) if span.attributes.get(S.KIND) == "call"]
    assert len(calls) == 4


# Draws entropy before each call (a uuid4 and the global generator) and prints what it drew.
AGENT_WITH_DRAWS = """
import random, sys, time, uuid
import httpx
import agenttrace

URL = sys.argv[1]
CALLS = int(sys.argv[2])

@agenttrace.run("drawing-agent")
def main():
    with httpx.Client() as client:
        for i in range(CALLS):
            token = uuid.uuid4().hex
            pick = random.random()
            answer = client.post(URL, json={"i": i, "token": token}).json()["body"]
            print("GOT", token, pick, answer, flush=True)
    if sys.argv[3:] != ["replay"]:
        print("ready", flush=True)
        time.sleep(120)

main()
"""


def test_kill_9_keeps_the_draws_and_governance_replays_the_cut_file(tmp_path: Path, loopback: TestServer) -> None:
    """A run killed mid-way keeps the random draws its recorded calls depended on: a governance replay serves them."""
    proc = _start(tmp_path, AGENT_WITH_DRAWS, [loopback.url("/json"), "3"])
    try:
        recorded = _wait_ready(proc)
        traces = tmp_path / "traces"
        assert wait_until(lambda: any(len(_call_spans(p)) == 3 for p in traces.glob(".*.jsonl.partial-*")))
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    (partial,) = traces.glob(".*.jsonl.partial-*")
    assert not any(s.attributes.get(S.KIND) == "run" for s in read_spans(partial))  # the run span never ended

    before = len(loopback.requests)
    replay = _start(
        tmp_path,
        AGENT_WITH_DRAWS,
        [loopback.url("/json"), "3", "replay"],
        {
            "AGENTTRACE_MODE": "replay",
            "AGENTTRACE_GOVERNANCE_LEVEL": "governance",
            "AGENTTRACE_REPLAY_EVENTS_FILE": str(partial),
        },
    )
    out, err = replay.communicate(timeout=60)
    assert replay.returncode == 0, err
    assert out.splitlines() == [line.rstrip("\n") for line in recorded]  # the same uuids, picks and answers
    assert len(recorded) == 3
    assert len(loopback.requests) == before


# A worker process that makes one call and is then killed with SIGKILL, mid-run (after the
# 200 ms within which a finished call reaches the disk; a forked worker writes it at once).
AGENT_WITH_KILLED_WORKER = """
import multiprocessing, os, signal, sys, time
import httpx
import agenttrace

def work(url):
    print("WORKER", httpx.get(url).json()["query"], flush=True)
    time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGKILL)

@agenttrace.run("killed-worker")
def main(url, method):
    process = multiprocessing.get_context(method).Process(target=work, args=(url + "?from=worker",))
    process.start()
    process.join()
    print("PARENT", httpx.get(url + "?from=parent").json()["query"], process.exitcode, flush=True)

if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_worker_killed_mid_run_is_taken_into_the_trace(tmp_path: Path, loopback: TestServer, method: str) -> None:
    """A worker killed with SIGKILL leaves its spans for the parent's run, which takes them into the trace file."""
    proc = _start(tmp_path, AGENT_WITH_KILLED_WORKER, [loopback.url("/json"), method])
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "WORKER {'from': 'worker'}" in out
    assert "PARENT {'from': 'parent'} -9" in out  # the worker died of SIGKILL
    traces = tmp_path / "traces"
    (trace,) = traces.glob("*.jsonl")
    assert list(traces.glob(".*partial*")) == []
    assert list(traces.glob("*.incomplete.jsonl")) == []
    urls = sorted(
        str(attrs[S.HTTP_URL]).rpartition("?")[2]
        for span in read_spans(trace)
        for name, _, attrs in span.events
        if name == S.EVENT_REQUEST
    )
    assert urls == ["from=parent", "from=worker"]
