"""multiprocessing workers (fork and spawn) export their own spans: none lost, none sent twice.

A worker never starts a background uploader: at its exit it spools what is left and leaves the
files to its parent, whose exit hands the spool folder off (or to the next run).
"""

from __future__ import annotations

from collections import Counter

import pytest

from .conftest import KEY, SQUARE_WORKER, Agents, Receiver, wait_until

POOL = (
    SQUARE_WORKER
    + """
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
)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_export_their_own_spans_once(agents: Agents, receiver: Receiver, method: str) -> None:
    """A pool and plain Processes: every worker run and step arrives exactly once, and the parent's too."""
    env = {"AGENTTRACE_API_KEY": KEY, "AGENTTRACE_API_URL": receiver.url, "AGENTTRACE_EXIT_TIMEOUT": "20"}
    done = agents(POOL, env, args=(method,))
    assert done.returncode == 0, done.stderr
    assert "[0, 1, 4, 9, 16, 25]" in done.stdout
    expected = {"worker": 8, "square": 8, "parent": 1, "before-fork": 1}

    def names() -> Counter[str]:
        with receiver._lock:
            return Counter(s.name for r in receiver.requests for s in r.spans)

    # The parent's run ends just before its exit: its spans come from its background uploader.
    assert wait_until(lambda: all(names()[name] >= count for name, count in expected.items()), timeout=60)
    done.wait_for_uploader()
    ids = receiver.all_span_ids()
    assert len(ids) == len(set(ids)), "a span was sent twice"
    assert {name: names()[name] for name in expected} == expected
    assert "WARNING" not in done.stderr
    assert not done.spool_files()
