"""What leaves for other destinations, and what exit says about a backend that is not there.

The run's source code and installed distributions stay in AgentTrace's own files and backend
unless ``AGENTTRACE_EXPORT_RUN_METADATA`` is on (real OTLP/HTTP receivers on loopback); a short
agent whose backend URL refuses connections says so at exit, and one whose backend accepts but
never answers exits without waiting for it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.KIND

from .conftest import AGENT, KEY, Agents, Receiver, backend_and_collector_env, otlp_env, wait_until


def _run_span_keys(receiver: Receiver) -> set[str]:
    """Attribute keys of the run span the receiver got."""
    for request in receiver.requests:
        for span in request.spans:
            keys = {a.key for a in span.attributes}
            if any(a.key == S.KIND and a.value.string_value == "run" for a in span.attributes):
                return keys
    raise AssertionError("no run span received")


def test_run_metadata_stays_out_of_other_otlp_destinations(
    agents: Agents, receiver: Receiver, receiver2: Receiver
) -> None:
    """The collector gets the run without its source and distributions; the local file and the backend keep them."""
    env = backend_and_collector_env(receiver.url, receiver2.url)
    done = agents(AGENT, env)
    assert done.returncode == 0, done.stderr
    assert wait_until(lambda: len(receiver.accepted_span_ids()) == 6 and len(receiver2.accepted_span_ids()) == 6)
    done.wait_for_uploader()
    (local_run,) = [s for s in done.local_spans() if s.attributes.get(S.KIND) == "run"]
    assert S.RUN_SOURCE in local_run.attributes
    assert S.RUN_DISTRIBUTIONS in local_run.attributes
    backend = _run_span_keys(receiver)
    assert S.RUN_SOURCE in backend
    assert S.RUN_DISTRIBUTIONS in backend
    collector = _run_span_keys(receiver2)
    assert S.RUN_SOURCE not in collector
    assert S.RUN_DISTRIBUTIONS not in collector
    assert S.RUN_SOURCE_FILE in collector  # the rest of the run span is intact


def test_run_metadata_goes_to_otlp_when_asked(agents: Agents, receiver2: Receiver) -> None:
    """AGENTTRACE_EXPORT_RUN_METADATA=1 sends the run's source and distributions to the collector too."""
    env = {**otlp_env(receiver2.url), "AGENTTRACE_EXPORT_RUN_METADATA": "1"}
    done = agents(AGENT, env)
    assert done.returncode == 0, done.stderr
    assert wait_until(lambda: len(receiver2.accepted_span_ids()) == 6)
    done.wait_for_uploader()
    collector = _run_span_keys(receiver2)
    assert S.RUN_SOURCE in collector
    assert S.RUN_DISTRIBUTIONS in collector


def test_refused_backend_is_said_by_the_first_run(agents: Agents, dead_url: str) -> None:
    """A short agent whose backend URL refuses connections prints the warning at exit; the spans are spooled."""
    done = agents(AGENT, {"AGENTTRACE_API_KEY": KEY, "AGENTTRACE_API_URL": dead_url})
    assert done.returncode == 0, done.stderr
    line = f"could not send traces to the AgentTrace backend at {dead_url}/v1/traces (connection refused"
    assert line in done.stderr
    assert done.stderr.count("WARNING") == 1
    assert "sent on the next run or by `agenttrace upload`" in done.stderr
    assert done.spool_files() or done.uploader is not None  # handed to the spool (and its uploader)
    agents.end_uploaders(timeout=0)  # its retries against the dead URL are not this test's to wait for


@pytest.fixture
def silent_backend() -> Iterator[str]:
    """A URL whose server accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_slow_backend_costs_the_agent_nothing_at_exit(agents: Agents, silent_backend: str) -> None:
    """A backend that accepts and never answers: no warning, and exit does not wait for it."""
    env = {
        "AGENTTRACE_API_KEY": KEY,
        "AGENTTRACE_API_URL": silent_backend,
        "AGENTTRACE_EXPORT_TIMEOUT": "30",
        "AGENTTRACE_EXIT_TIMEOUT": "20",
    }
    start = time.monotonic()
    done = agents(AGENT, env)
    took = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr
    # Waiting for the backend would take the exit bound (20 s) or the export timeout (30 s).
    assert took < 15, took
    assert done.uploader is not None  # the spans went to the background uploader
    # What the uploader does with a backend that never answers is not this test's: ended now, not
    # waited for (it would wait out its export timeout).
    agents.end_uploaders(timeout=0)
