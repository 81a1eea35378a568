"""multiprocessing workers (fork and spawn) export their own spans: none lost, none sent twice."""

from __future__ import annotations

import pytest

from .conftest import Agents, Receiver

KEY = "at_test_0123456789abcdef"
POOL = """
    import multiprocessing as mp
    import sys

    import agenttrace

    @agenttrace.run("worker")
    def work(i):
        with agenttrace.step("square", n=i):
            return i * i

    @agenttrace.run("parent")
    def main(method):
        with agenttrace.step("before-fork"):
            pass  # ends just before the fork: still queued in the parent when children are made
        context = mp.get_context(method)
        with context.Pool(3) as pool:
            results = pool.map(work, range(6))
        procs = [context.Process(target=work, args=(i,)) for i in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        return results

    if __name__ == "__main__":
        print(main(sys.argv[1]))
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_export_their_own_spans_once(agents: Agents, receiver: Receiver, method: str) -> None:
    """A pool and plain Processes: every worker run and step arrives exactly once, and the parent's too."""
    env = {"AGENTTRACE_API_KEY": KEY, "AGENTTRACE_API_URL": receiver.url, "AGENTTRACE_EXIT_TIMEOUT": "20"}
    done = agents(POOL, env, args=(method,))
    assert done.returncode == 0, done.stderr
    assert "[0, 1, 4, 9, 16, 25]" in done.stdout
    ids = receiver.all_span_ids()
    assert len(ids) == len(set(ids)), "a span was sent twice"
    names = sorted(s.name for r in receiver.requests for s in r.spans)
    assert names.count("worker") == 8
    assert names.count("square") == 8
    assert names.count("parent") == 1
    assert names.count("before-fork") == 1
    assert "WARNING" not in done.stderr
