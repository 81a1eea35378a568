"""Process exit hands undelivered traces to a detached background uploader (AGENTTRACE_EXIT_UPLOAD=background).

Real receivers and real processes: the agent, the uploader it starts at exit, ``agenttrace upload``.
"""

from __future__ import annotations

import pytest

from .conftest import AGENT, SQUARE_WORKER, Agents, Answer, Receiver, assert_one_spool_warning, wait_until
from .test_backend import AGENT_THEN_IDLE, EAGER, KEY, WAIT, backend_env


def test_nothing_pending_at_exit_starts_no_uploader(agents: Agents, receiver: Receiver) -> None:
    """A healthy backend that had every span before exit: no process is started, nothing is spooled."""
    done = agents(AGENT_THEN_IDLE, backend_env(receiver.url, **EAGER))
    assert done.returncode == 0, done.stderr
    assert done.uploader is None
    assert receiver.accepted_span_ids() == done.local_span_ids()
    assert not done.spool_files()


def test_short_agent_sends_nothing_while_it_runs_and_each_span_arrives_once(agents: Agents, receiver: Receiver) -> None:
    """The default schedule (5 s): a short agent's spans are all queued at exit, none in flight.

    Exit hands them off without a network wait and without a batch abandoned in flight, so the
    slow receiver gets every span exactly once, from the background uploader.
    """
    receiver.answer = lambda _: Answer(200, delay=1)
    done = agents(AGENT, backend_env(receiver.url))
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr
    assert done.uploader is not None
    assert [r for r in receiver.requests if r.at < done.ended_at] == []  # nothing was sent by the agent
    assert wait_until(lambda: receiver.accepted_span_ids() == done.local_span_ids(), timeout=30)
    done.wait_for_uploader()
    received = receiver.all_span_ids()
    assert len(received) == len(set(received)) == len(done.local_span_ids())


def test_the_uploader_process_never_starts_another(agents: Agents, receiver: Receiver) -> None:
    """In a process marked as the background uploader, exit waits the bound and spools, as in wait mode."""
    receiver.answer = lambda _: Answer(200, delay=2)
    done = agents(AGENT, backend_env(receiver.url, _AGENTTRACE_UPLOADER="1"))
    assert done.returncode == 0, done.stderr
    assert done.uploader is None
    assert "no answer within the exit bound" in done.stderr
    assert done.spool_files()


def test_uploader_that_cannot_start_leaves_the_spool_and_says_so(agents: Agents, receiver: Receiver) -> None:
    """The interpreter to start is gone (exec fails): one warning; the spans wait in the spool for upload."""
    code = AGENT + "\n    sys.executable = '/nonexistent/bin/python3'\n"
    done = agents(code, backend_env(receiver.url))
    assert done.returncode == 0, done.stderr
    assert done.uploader is None
    assert_one_spool_warning(done.stderr, done.spool_dir, "the background upload could not start")
    assert receiver.requests == []  # exit did not send either
    assert [p.suffix for p in done.spool_files()] == [".json"]
    uploaded = agents.upload(backend_env(receiver.url))
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    assert receiver.accepted_span_ids() == done.local_span_ids()
    assert not done.spool_files()


def test_uploader_and_upload_at_once_send_each_span_once(agents: Agents, receiver: Receiver, dead_url: str) -> None:
    """Spool files of four runs, an agent handing them off at exit and `agenttrace upload` at the same time.

    Each file is claimed by one of them: after the agent exited, no span reaches the receiver twice.
    """
    for _ in range(4):  # each run's spans are spooled at a wait-mode exit (the backend dead)
        spooled = agents(AGENT, backend_env(dead_url, **WAIT), args=("2",))
        assert spooled.returncode == 0
    assert len(spooled.spool_files()) == 4
    assert not spooled.claimed_files()  # a file a run was sending at exit was given back
    receiver.answer = lambda _: Answer(200, delay=0.3)  # slow enough for both senders to overlap
    done = agents(AGENT, backend_env(receiver.url), args=("2",))
    assert done.returncode == 0, done.stderr
    assert done.uploader is not None
    uploaded = agents.upload(backend_env(receiver.url))
    assert "Traceback" not in uploaded.stderr
    local = done.local_span_ids()  # the five runs' trace files
    assert len(local) == 15
    assert wait_until(lambda: receiver.accepted_span_ids() == local, timeout=60)
    done.wait_for_uploader()
    assert not done.spool_files()
    # The agent itself may have been sending a spool file when it exited (its backlog drain): that
    # request arrived before its exit, and its file was handed off too (at least once).
    after_exit = [s.span_id.hex() for r in receiver.requests if r.at >= done.ended_at for s in r.spans]
    assert len(after_exit) == len(set(after_exit)), "the uploader and upload sent the same span"


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_leave_their_spool_to_the_parent(agents: Agents, method: str) -> None:
    """In a multiprocessing worker, exit spools without starting an uploader; the parent is the one that hands off."""
    code = """
        import multiprocessing as mp
        import sys

        import agenttrace.exporters.exit as export

        def plan(_):
            return export._exit_plan()

        if __name__ == "__main__":
            with mp.get_context(sys.argv[1]).Pool(1) as pool:
                print(pool.map(plan, [0])[0], export._exit_plan())
    """
    done = agents(code, args=(method,))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["leave", "spawn"]


def test_slow_workers_lose_nothing(agents: Agents, receiver: Receiver) -> None:
    """Workers whose uploads outlast the bound spool them; the parent's uploader delivers them after it."""
    code = (
        SQUARE_WORKER
        + """
    if __name__ == "__main__":
        procs = [mp.get_context("spawn").Process(target=work, args=(i,)) for i in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        work(9)
    """
    )
    receiver.answer = lambda _: Answer(200, delay=1)
    env = {"AGENTTRACE_API_KEY": KEY, "AGENTTRACE_API_URL": receiver.url, "AGENTTRACE_EXIT_TIMEOUT": "0.2"}
    done = agents(code, env)
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr

    def names() -> list[str]:
        with receiver._lock:
            return [s.name for r in receiver.requests if r.status == 200 for s in r.spans]

    assert wait_until(lambda: names().count("worker") >= 3 and names().count("square") >= 3, timeout=60)
    done.wait_for_uploader()
    assert not done.spool_files()
