"""The AgentTrace backend exporter against real receivers: delivery, failures, the spool, upload.

Short agents end before their lane's first upload: what they recorded is handed to the
background uploader at exit (the default). Tests of what the agent process itself does with an
answer (retries, 400, 413 in process, the exit bound) run with ``AGENTTRACE_EXIT_UPLOAD=wait``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .conftest import AGENT, KEY, Agents, Answer, Receiver, assert_one_spool_warning, wait_until


def value_of(value: Any) -> Any:
    """A protobuf ``AnyValue`` as the Python value the local trace file decodes to."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [value_of(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value_of(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


def backend_env(url: str, **extra: str) -> dict[str, str]:
    """Settings of an agent that sends to the backend at ``url`` and keeps local files to compare."""
    return {"AGENTTRACE_API_KEY": KEY, "AGENTTRACE_API_URL": url, "AGENTTRACE_LOCAL_FILES": "1", **extra}


WAIT = {"AGENTTRACE_EXIT_UPLOAD": "wait"}
# The agent lives on after its run: its lane tries the upload while it runs. A lane holds spans
# for OTEL_BSP_SCHEDULE_DELAY (5 s by default, as OpenTelemetry's BatchSpanProcessor) before a
# partial batch; EAGER makes that 50 ms, for the tests about what a lane does while the agent runs.
AGENT_THEN_IDLE = AGENT + "\n    import time\n    time.sleep(0.5)\n"
EAGER = {"OTEL_BSP_SCHEDULE_DELAY": "50"}


def test_backend_receives_every_span_of_the_local_file(agents: Agents, receiver: Receiver) -> None:
    """OTLP/HTTP protobuf, gzip, bearer key, /v1/traces: the same spans, attributes and events as the local file."""
    done = agents(AGENT, backend_env(receiver.url))
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr
    local = {s.span_id: s for s in done.local_spans()}
    assert len(local) == 6
    assert wait_until(lambda: receiver.accepted_span_ids() == set(local))
    done.wait_for_uploader()
    assert not done.spool_files()
    for request in receiver.requests:  # sent by the agent or, after it, by its background uploader
        assert request.path == "/v1/traces"
        assert request.headers["authorization"] == f"Bearer {KEY}"
        assert request.headers["content-encoding"] == "gzip"
        assert request.headers["content-type"] == "application/x-protobuf"
    for received in (s for r in receiver.requests for s in r.spans):
        mine = local[received.span_id.hex()]
        assert received.name == mine.name
        assert received.trace_id.hex() == mine.trace_id
        assert {a.key: value_of(a.value) for a in received.attributes} == mine.attributes
        assert [e.name for e in received.events] == [e[0] for e in mine.events]
        for event, (_, _, mine_attributes) in zip(received.events, mine.events, strict=True):
            values = {a.key: value_of(a.value) for a in event.attributes}
            assert values == mine_attributes


def test_dead_backend_does_not_hold_the_agent_and_upload_delivers(
    agents: Agents, receiver: Receiver, dead_url: str
) -> None:
    """API URL on a dead port: exit 0, one warning naming the failure and the spool; the background
    uploader tries and leaves the files; then upload sends all."""
    done = agents(AGENT_THEN_IDLE, backend_env(dead_url, AGENTTRACE_EXPORT_TIMEOUT="2", **EAGER), args=("3",))
    assert done.returncode == 0, done.stderr
    assert_one_spool_warning(done.stderr, done.spool_dir, "connection refused")
    assert done.uploader is not None  # handed off, although the backend looked dead: it may be back
    done.wait_for_uploader()
    assert done.spool_files()
    assert not done.claimed_files()  # the uploader gave its claims back when it failed

    uploaded = agents.upload(backend_env(receiver.url))
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    assert "sent 4 spans" in uploaded.stdout
    assert receiver.accepted_span_ids() == done.local_span_ids()
    assert not done.spool_files()


def test_next_run_sends_what_the_previous_one_spooled(agents: Agents, receiver: Receiver) -> None:
    """A 500 keeps the batch in the spool; the next run, with the backend healthy, delivers both runs."""
    receiver.answer = lambda _: Answer(500)
    first = agents(AGENT, backend_env(receiver.url, **WAIT), args=("2",))
    assert first.returncode == 0
    assert "HTTP 500" in first.stderr
    assert len(receiver.requests) == 1  # 500 is not retried (OTLP/HTTP retries 429, 502, 503, 504)
    assert first.uploader is None
    first_ids = first.local_span_ids()

    receiver.answer = lambda _: Answer(200)
    second = agents(AGENT, backend_env(receiver.url), args=("2",))
    assert second.returncode == 0
    assert "WARNING" not in second.stderr
    assert wait_until(lambda: receiver.accepted_span_ids() >= second.local_span_ids() | first_ids)
    second.wait_for_uploader()
    assert not second.spool_files()


def test_slow_backend_is_handed_off_at_exit(agents: Agents, receiver: Receiver) -> None:
    """A receiver that answers after 2 s: exit does not wait for it; the background uploader delivers every span once.

    ``AGENTTRACE_EXIT_TIMEOUT=30``: an exit that waited on the network would wait for the answer.
    """
    receiver.answer = lambda _: Answer(200, delay=2)
    done = agents(AGENT, backend_env(receiver.url, AGENTTRACE_EXIT_TIMEOUT="30"))
    answered_at_exit = receiver.answered
    assert done.returncode == 0, done.stderr
    assert answered_at_exit == 0  # the process ended before the receiver answered anything
    assert "WARNING" not in done.stderr  # slow is not failed: nothing to say
    assert done.uploader is not None
    local = done.local_span_ids()
    assert len(local) == 6
    assert wait_until(lambda: receiver.accepted_span_ids() == local, timeout=60)
    done.wait_for_uploader()
    assert not done.spool_files()
    # Exactly once from the uploader. A batch the agent had already sent when it exited (its lane
    # does not wait 50 ms for more spans once exit began, but a starved machine can delay the exit)
    # may arrive twice: the at-least-once edge the docs describe.
    before_exit = [r for r in receiver.requests if r.at < done.ended_at]
    after_exit = [s.span_id.hex() for r in receiver.requests if r.at >= done.ended_at for s in r.spans]
    assert len(after_exit) == len(set(after_exit)), "the uploader sent a span twice"
    if not before_exit:
        assert sorted(after_exit) == sorted(local)


def test_wait_mode_waits_the_exit_bound_then_spools(agents: Agents, receiver: Receiver) -> None:
    """AGENTTRACE_EXIT_UPLOAD=wait and a receiver answering after 5 s: exit waits the bound, spools, starts nothing."""
    receiver.answer = lambda _: Answer(200, delay=5)
    done = agents(AGENT, backend_env(receiver.url, **WAIT))
    answered_at_exit = receiver.answered
    assert done.returncode == 0, done.stderr
    assert answered_at_exit == 0  # the process ended while its upload was still unanswered
    assert "no answer within the exit bound" in done.stderr
    assert done.uploader is None
    assert [p.suffix for p in done.spool_files()] == [".pb"]
    healthy = Receiver()
    try:
        uploaded = agents.upload(backend_env(healthy.url))
        assert uploaded.returncode == 0, uploaded.stdout
        # At-least-once: the sleeper got the bytes too, the spool re-sends them; ids are the key.
        assert healthy.accepted_span_ids() == done.local_span_ids()
    finally:
        healthy.close()


def test_503_with_retry_after_is_retried_after_that_delay(agents: Agents, receiver: Receiver) -> None:
    """503 + Retry-After: 1 is retried (by the OTLP library's policy) no sooner than asked, then delivered."""
    answers = iter([Answer(503, {"Retry-After": "1"})])
    receiver.answer = lambda _: next(answers, Answer(200))
    done = agents(AGENT, backend_env(receiver.url, AGENTTRACE_EXIT_TIMEOUT="20", **WAIT))
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr
    assert [r.status for r in receiver.requests] == [503, 200]
    assert receiver.requests[1].at - receiver.requests[0].at >= 0.9
    assert receiver.accepted_span_ids() == done.local_span_ids()
    assert not done.spool_files()


def test_503_beyond_the_exit_bound_is_spooled_then_uploaded(agents: Agents, receiver: Receiver) -> None:
    """503s until the agent is gone: one warning, the batch spooled, every span delivered by upload later."""
    receiver.answer = lambda _: Answer(503, {"Retry-After": "30"})
    done = agents(AGENT, backend_env(receiver.url, **WAIT))
    assert done.returncode == 0
    assert done.stderr.count("WARNING") == 1, done.stderr
    assert "HTTP 503" in done.stderr or "exit bound" in done.stderr
    receiver.answer = lambda _: Answer(200)
    assert agents.upload(backend_env(receiver.url)).returncode == 0
    assert receiver.accepted_span_ids() == done.local_span_ids()


def test_rejected_key_is_said_once_and_kept(agents: Agents, receiver: Receiver) -> None:
    """401 on every batch of two runs: one plain warning without the key; upload works once accepted."""
    receiver.answer = lambda _: Answer(401)
    two_runs = "main(2)\n    time.sleep(3)\n    main(2)"
    code = AGENT.replace("main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)", two_runs)
    code = code.replace("import sys", "import sys, time")
    done = agents(code, backend_env(receiver.url, **EAGER))
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("WARNING") == 1, done.stderr
    assert "rejected the API key (HTTP 401" in done.stderr
    assert "AGENTTRACE_API_KEY" in done.stderr
    assert KEY not in done.stderr
    done.wait_for_uploader()  # the second run was handed off at exit: refused again, left in the spool
    receiver.answer = lambda _: Answer(200)
    assert agents.upload(backend_env(receiver.url)).returncode == 0
    assert receiver.accepted_span_ids() == done.local_span_ids()


def test_413_splits_the_batch_until_it_fits(agents: Agents, receiver: Receiver) -> None:
    """A receiver taking at most 2 spans per request gets every span, in halves, nothing spooled."""
    receiver.answer = lambda got: Answer(413 if len(got.spans) > 2 else 200)
    done = agents(AGENT, backend_env(receiver.url, AGENTTRACE_EXIT_TIMEOUT="20", **WAIT), args=("10",))
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr
    assert receiver.accepted_span_ids() == done.local_span_ids()
    assert len(done.local_span_ids()) == 11
    assert not done.spool_files()


def test_413_splits_in_the_background_uploader(agents: Agents, receiver: Receiver) -> None:
    """Handed off at exit, the batch is split by the uploader the same way: every span, nothing left."""
    receiver.answer = lambda got: Answer(413 if len(got.spans) > 2 else 200)
    done = agents(AGENT, backend_env(receiver.url), args=("10",))
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr
    assert wait_until(lambda: receiver.accepted_span_ids() == done.local_span_ids())
    assert len(done.local_span_ids()) == 11
    done.wait_for_uploader()
    assert not done.spool_files()


def test_400_is_not_retried_and_the_drop_is_said(agents: Agents, receiver: Receiver) -> None:
    """400 means the batch will never be accepted: one request, no spool, a warning counting the drop."""
    receiver.answer = lambda _: Answer(400)
    # A generous exit bound: on a loaded machine the answer may take longer than the default 0.5 s,
    # and the batch is then spooled at exit (correctly) before the 400 comes.
    done = agents(AGENT, backend_env(receiver.url, AGENTTRACE_EXIT_TIMEOUT="10", **WAIT), args=("2",))
    assert done.returncode == 0
    assert len(receiver.requests) == 1
    assert "refused 3 spans for good (HTTP 400" in done.stderr
    assert not done.spool_files()


def test_spool_size_bound_drops_and_counts(agents: Agents, dead_url: str) -> None:
    """With a tiny spool bound, what does not fit is dropped, said at once and counted at exit."""
    done = agents(AGENT, backend_env(dead_url, AGENTTRACE_SPOOL_MAX_BYTES="100"))
    assert done.returncode == 0
    assert "reached its size bound of 100 bytes" in done.stderr
    assert "6 spans were dropped in this process: the spool could not keep them" in done.stderr
    assert not done.spool_files()


def test_unwritable_spool_is_named_as_such(agents: Agents, dead_url: str, tmp_path: Path) -> None:
    """A spool folder that cannot be written is said to be unwritable (not full), and the agent succeeds."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done = agents(AGENT, backend_env(dead_url, AGENTTRACE_SPOOL_DIR=str(blocker / "spool")))
    assert done.returncode == 0
    assert f"could not write to the spool folder {blocker / 'spool'}" in done.stderr
    assert "cannot be written" in done.stderr
    assert "is full" not in done.stderr


def test_backend_off_and_local_files_only(agents: Agents, receiver: Receiver) -> None:
    """AGENTTRACE_BACKEND=0 with a key set sends nothing and starts no export thread."""
    code = AGENT + "\n    import threading\n    print(sorted(t.name for t in threading.enumerate()))\n"
    done = agents(code, backend_env(receiver.url, AGENTTRACE_BACKEND="0"))
    assert done.returncode == 0, done.stderr
    assert "agenttrace-export" not in done.stdout
    assert receiver.requests == []
    assert len(done.local_span_ids()) == 6
