"""Governance holds whatever else is loaded or started: foreign suppression, threads, child processes.

Each agent runs in a fresh interpreter; the loopback servers stay up during replay as tripwires
and their connection counters say what reached the network.
"""

from __future__ import annotations

import json

import pytest

from tests.servers import TestServer

from .conftest import Replayer

SUPPRESSED_AGENT = """
import json, sys, httpx, requests, agenttrace
from opentelemetry import context
from opentelemetry.instrumentation.utils import suppress_instrumentation

@agenttrace.run("suppressed")
def main(base):
    with suppress_instrumentation():  # what Logfire's instrument_openai does around each LLM call
        a = httpx.get(base + "/json?via=httpx").json()["id"]
    token = context.attach(context.set_value(context._SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        b = requests.get(base + "/json?via=requests", timeout=5).json()["id"]
    finally:
        context.detach(token)
    return [a, b]

print(json.dumps(main(sys.argv[1])))
"""

THREAD_AGENT = """
import json, sys, threading, httpx, agenttrace

@agenttrace.run("threaded")
def main(base):
    out = {}
    def work(name):
        out[name] = httpx.get(base + "/json?t=" + name).json()["id"]
    with agenttrace.step("fan-out"):
        threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return out

print(json.dumps(main(sys.argv[1]), sort_keys=True))
"""

POOL_AGENT = """
import json, multiprocessing, sys
from concurrent.futures import ProcessPoolExecutor
import requests, agenttrace

def fetch(url):
    return requests.get(url, timeout=5).status_code

@agenttrace.run("pooled")
def main(base, kind, method, query="i"):
    first = requests.get(base + "/json", timeout=5).json()["id"]
    urls = [base + f"/json?{query}={i}" for i in range(4)]
    ctx = multiprocessing.get_context(method)
    if kind == "pool":
        with ctx.Pool(2) as pool:
            return [first, pool.map(fetch, urls)]
    with ProcessPoolExecutor(2, mp_context=ctx) as executor:
        return [first, list(executor.map(fetch, urls))]

if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])))
"""


def _calls(path: object) -> list[dict[str, object]]:
    import agenttrace

    return [e for e in agenttrace.load_events(str(path)) if e["kind"] == "call"]


def test_foreign_suppression_is_recorded_and_served(replayer: Replayer, server: TestServer) -> None:
    """Calls under OpenTelemetry's suppress-instrumentation key are recorded, then served with no I/O."""
    rec = replayer.record(SUPPRESSED_AGENT, [server.base_url])
    urls = [str(c["request"]["url"]) for c in _calls(rec.path)]  # type: ignore[index]
    assert urls == [server.url("/json?via=httpx"), server.url("/json?via=requests")]
    before = server.connections
    rep = replayer.replay(SUPPRESSED_AGENT, rec, [server.base_url])
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout == rec.result.stdout
    assert "2 call(s) served, 0 missed, 0 leak(s)" in rep.stderr
    assert server.connections == before


def test_foreign_suppression_is_no_exemption_from_governance(replayer: Replayer, server: TestServer) -> None:
    """A call the recording lacks, made under a foreign suppression, still fails governance and reaches no server."""
    rec = replayer.record(SUPPRESSED_AGENT, [server.base_url])
    before = server.connections
    rep = replayer.replay(SUPPRESSED_AGENT.replace("via=requests", "via=other"), rec, [server.base_url])
    assert rep.returncode == 1
    assert "ReplayMismatchError: governance replay: urllib3 call GET" in rep.stderr
    assert server.connections == before


def test_thread_calls_belong_to_the_run_and_step(replayer: Replayer, server: TestServer) -> None:
    """A plain Thread started in a step records its calls in that run and step, and replay serves them."""
    rec = replayer.record(THREAD_AGENT, [server.base_url])
    calls = _calls(rec.path)
    assert len(calls) == 2
    assert all(c["step_path"] == ["fan-out"] for c in calls)
    assert sorted(int(str(c["ordinal"])) for c in calls) == [0, 1]
    before = server.connections
    rep = replayer.replay(THREAD_AGENT, rec, [server.base_url])
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout == rec.result.stdout
    assert "2 call(s) served, 0 missed, 0 leak(s), 0 recorded call(s) unused" in rep.stderr
    assert server.connections == before


WORKERS = [("pool", "fork"), ("pool", "spawn"), ("pool", "forkserver"), ("executor", "spawn"), ("executor", "fork")]


@pytest.mark.parametrize(("kind", "method"), WORKERS)
def test_worker_processes_record_into_the_run_and_replay(
    replayer: Replayer, server: TestServer, kind: str, method: str
) -> None:
    """Workers started inside a run (fork, spawn, forkserver) record into its trace; replay serves them there."""
    rec = replayer.record(POOL_AGENT, [server.base_url, kind, method])
    assert json.loads(rec.result.stdout)[1] == [200, 200, 200, 200]
    assert list(rec.path.parent.glob(".*partial*")) == []  # the workers' files were taken into the trace's
    queries = sorted(str(e["request"]["url"]).rpartition("/")[2] for e in _calls(rec.path))
    assert queries == ["json", "json?i=0", "json?i=1", "json?i=2", "json?i=3"]
    before = server.connections
    rep = replayer.replay(POOL_AGENT, rec, [server.base_url, kind, method])
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout == rec.result.stdout
    assert "5 call(s) served, 0 missed, 0 leak(s), 0 recorded call(s) unused" in rep.stderr
    assert server.connections == before


KILLED_WORKER_AGENT = """
import json, multiprocessing, os, signal, sys
import requests, agenttrace

def crash(url):
    requests.get(url, timeout=5)
    os.kill(os.getpid(), signal.SIGKILL)  # nothing of the worker's exit runs

def sigterm_is_default():
    return signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

@agenttrace.run("killed")
def main(base):
    ctx = multiprocessing.get_context("spawn")
    worker = ctx.Process(target=crash, args=(base + "/json?i=9",))
    worker.start()
    worker.join()
    with ctx.Pool(1) as pool:
        default = pool.apply(sigterm_is_default)
    return [worker.exitcode, default]

if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
"""


def test_a_spawned_worker_killed_after_a_call_keeps_it(replayer: Replayer, server: TestServer) -> None:
    """A spawned worker writes each span as it ends and keeps SIGTERM's default action, as a forked one:
    Pool.terminate()'s signal always ends it, and a kill loses nothing that had ended."""
    rec = replayer.record(KILLED_WORKER_AGENT, [server.base_url])
    assert json.loads(rec.result.stdout) == [-9, True]
    assert [str(e["request"]["url"]).rpartition("/")[2] for e in _calls(rec.path)] == ["json?i=9"]


@pytest.mark.parametrize(("kind", "method"), [("pool", "spawn"), ("pool", "forkserver"), ("executor", "fork")])
def test_worker_processes_never_reach_the_network_in_governance(
    replayer: Replayer, server: TestServer, kind: str, method: str
) -> None:
    """Workers of a governance replay replay too: calls the recording lacks fail there, none goes out."""
    rec = replayer.record(POOL_AGENT, [server.base_url, kind, method])
    before = server.connections
    rep = replayer.replay(POOL_AGENT, rec, [server.base_url, kind, method, "changed"])
    assert server.connections == before
    assert rep.returncode == 1
    # The worker's violation reaches the parent's report, naming the child process.
    assert "ReplayMismatchError: governance replay: urllib3 call GET" in rep.stderr
    assert "(in child process " in rep.stderr


def test_workers_leaks_count_in_the_parent_in_relaxed(replayer: Replayer, server: TestServer) -> None:
    """In relaxed replay a spawn worker's unrecorded calls go through and the parent's report lists them."""
    rec = replayer.record(POOL_AGENT, [server.base_url, "pool", "spawn"])
    rep = replayer.replay(POOL_AGENT, rec, [server.base_url, "pool", "spawn", "changed"], level="relaxed")
    assert rep.returncode == 0, rep.stderr
    assert "1 call(s) served, 4 missed" in rep.stderr
    assert rep.stderr.count("(in child process ") >= 4 or "more missed" in rep.stderr


FORK_AGENT = """
import json, multiprocessing, sys
import requests, agenttrace

@agenttrace.run("worker-run")
def fetch(url):
    return requests.get(url, timeout=5).json()["query"]

@agenttrace.run("forking")
def main(base):
    first = requests.get(base + "/json", timeout=5).json()["query"]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        return [first, pool.map(fetch, [base + f"/json?i={i}" for i in range(4)])]

if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
"""


def test_forked_workers_with_their_own_run_leave_nothing_unused(replayer: Replayer, server: TestServer) -> None:
    """Forked workers' calls (their own @run) are served in the workers; the parent reports none unused."""
    rec = replayer.record(FORK_AGENT, [server.base_url])
    assert len(_calls(rec.path)) == 5
    before = server.connections
    rep = replayer.replay(FORK_AGENT, rec, [server.base_url], level="relaxed")
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout == rec.result.stdout
    assert "replay report for run 'forking'" in rep.stderr
    assert "5 call(s) served, 0 missed" in rep.stderr
    assert "0 recorded call(s) unused" in rep.stderr
    assert server.connections == before


CODE_REPLAY_POOL = """
import json, multiprocessing, os, sys
import requests, agenttrace

def fetch(url):
    return requests.get(url, timeout=5).status_code

@agenttrace.run("pooled")
def main(base, query):
    first = requests.get(base + "/json", timeout=5).json()["id"]
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return [first, pool.map(fetch, [base + f"/json?{query}=0"])]

if __name__ == "__main__":
    recording = os.environ.pop("RECORDING", None)
    if recording:
        agenttrace.init(mode="replay", replay_events=agenttrace.load_events(recording), governance_level="governance")
    print(json.dumps(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "i")))
"""


def test_workers_of_a_replay_configured_in_code_are_governed(replayer: Replayer, server: TestServer) -> None:
    """init(replay_events=...) in code: spawn workers get the events through a file and stay off the network."""
    rec = replayer.record(CODE_REPLAY_POOL, [server.base_url])
    before = server.connections
    same = replayer.runner(CODE_REPLAY_POOL, args=[server.base_url], env={"RECORDING": str(rec.path)})
    assert same.returncode == 0, same.stderr
    assert same.stdout == rec.result.stdout
    changed = replayer.runner(CODE_REPLAY_POOL, args=[server.base_url, "j"], env={"RECORDING": str(rec.path)})
    assert server.connections == before
    assert changed.returncode == 1
    assert "(in child process " in changed.stderr
    assert "urllib3 call GET " + server.url("/json?j=0") + " not in the recording" in changed.stderr


LATER_CHILD_AGENT = """
import json, multiprocessing, subprocess, sys
from concurrent.futures import ProcessPoolExecutor
import requests, agenttrace

def fetch(url):
    return requests.get(url, timeout=5).json()["query"]

EXECUTOR = None

@agenttrace.run("mixed")
def main(base, shape):
    global EXECUTOR
    if shape == "pool-then-child":  # the workers end, then a Python child of the run starts (and recovers)
        with multiprocessing.get_context("fork").Pool(2) as pool:
            found = pool.map(fetch, [base + f"/json?w={i}" for i in range(2)])
        subprocess.run([sys.executable, "-c", "print('helper')"], check=True, capture_output=True)
    else:  # workers that outlive the run: an executor made in the run, shut down after it
        EXECUTOR = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork"))
        found = list(EXECUTOR.map(fetch, [base + f"/json?w={i}" for i in range(2)]))
    return [requests.get(base + "/json?parent=1", timeout=5).json()["query"], found]

if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])))
    if EXECUTOR is not None:
        EXECUTOR.shutdown()
"""


@pytest.mark.parametrize("shape", ["pool-then-child", "outliving-executor"])
def test_workers_calls_are_kept_whatever_comes_after(replayer: Replayer, server: TestServer, shape: str) -> None:
    """A later Python child does not take the ended workers' files; workers outliving the run still add theirs."""
    rec = replayer.record(LATER_CHILD_AGENT, [server.base_url, shape])
    assert "interrupted run" not in rec.result.stderr
    assert list(rec.path.parent.glob("*.incomplete.jsonl")) == []
    queries = sorted(str(e["request"]["url"]).rpartition("?")[2] for e in _calls(rec.path))
    assert queries == ["parent=1", "w=0", "w=1"]
    before = server.connections
    rep = replayer.replay(LATER_CHILD_AGENT, rec, [server.base_url, shape])
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout == rec.result.stdout
    assert server.connections == before
