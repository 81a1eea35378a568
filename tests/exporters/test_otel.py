"""Standard OpenTelemetry set-ups: OTEL_* variables, a user's own provider, zero-code activation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import AGENT, KEY, Agents, Done, Receiver, backend_and_collector_env, otlp_env, wait_until

PLAIN = """
    import sys
    print("args", sys.argv[1:])
    if sys.argv[1:] == ["fail"]:
        raise RuntimeError("boom")
    sys.exit(3 if sys.argv[1:] == ["three"] else 0)
"""


def test_otlp_collector_alongside_the_backend(agents: Agents, receiver: Receiver, receiver2: Receiver) -> None:
    """OTEL_TRACES_EXPORTER=otlp adds a collector next to the backend; both get every span of the file."""
    env = backend_and_collector_env(receiver.url, receiver2.url)
    done = agents(AGENT, env)
    assert done.returncode == 0, done.stderr
    local = done.local_span_ids()
    # Handed off at exit: one uploader sends both destinations' spool folders.
    assert wait_until(lambda: receiver.accepted_span_ids() == local and receiver2.accepted_span_ids() == local)
    done.wait_for_uploader()
    assert not done.spool_files()
    assert receiver2.requests[0].path == "/v1/traces"
    assert "authorization" not in receiver2.requests[0].headers  # the key only goes to the backend
    events = [e for r in receiver2.requests for s in r.spans for e in s.events if e.name == "payload"]
    assert len(events) == 5
    assert all(a.value.string_value == "x" * 100 for e in events for a in e.attributes if a.key == "body")


def test_only_otlp_when_backend_and_files_are_off(agents: Agents, receiver: Receiver, receiver2: Receiver) -> None:
    """Backend and local files off, OTLP on: the collector gets the run, nothing else is written or sent."""
    env = {
        **otlp_env(receiver2.url),
        "AGENTTRACE_API_KEY": KEY,
        "AGENTTRACE_API_URL": receiver.url,
        "AGENTTRACE_BACKEND": "0",
        "AGENTTRACE_LOCAL_FILES": "0",
    }
    done = agents(AGENT, env)
    assert done.returncode == 0, done.stderr
    assert wait_until(lambda: len(receiver2.accepted_span_ids()) == 6)
    done.wait_for_uploader()
    assert receiver.requests == []
    assert not done.trace_dir.exists() or not list(done.trace_dir.iterdir())


def test_users_provider_gets_agenttrace_spans_in_its_own_trace(agents: Agents, receiver: Receiver) -> None:
    """A script's own provider and in-memory exporter: kept as is, and AgentTrace's spans join the user's trace."""
    code = """
        import json
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON

        memory = InMemorySpanExporter()
        provider = TracerProvider(sampler=ALWAYS_ON)
        provider.add_span_processor(SimpleSpanProcessor(memory))
        trace.set_tracer_provider(provider)

        import agenttrace

        @agenttrace.run("agent")
        def main():
            with agenttrace.step("think"):
                pass

        with trace.get_tracer("user").start_as_current_span("request") as parent:
            main()
        agenttrace.init()  # a second init() changes nothing about the user's set-up
        processors = provider._active_span_processor._span_processors
        print(json.dumps({
            "same_provider": trace.get_tracer_provider() is provider,
            "sampler_kept": provider.sampler is ALWAYS_ON,
            "user_processor_first": processors[0].span_exporter is memory,
            "processors": len(processors),
            "user_trace": format(parent.get_span_context().trace_id, "032x"),
            "spans": {s.name: format(s.context.trace_id, "032x") for s in memory.get_finished_spans()},
        }))
    """
    done = agents(code, {"AGENTTRACE_API_KEY": KEY, "AGENTTRACE_API_URL": receiver.url})
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["same_provider"]
    assert seen["sampler_kept"]
    assert seen["user_processor_first"]
    assert seen["processors"] == 3  # the user's, AgentTrace's local files, AgentTrace's export hub
    assert set(seen["spans"]) == {"request", "agent", "think"}
    assert set(seen["spans"].values()) == {seen["user_trace"]}
    assert wait_until(lambda: len(receiver.accepted_span_ids()) == 3)


# opentelemetry-distro is installed beside AgentTrace in the test environment: with several distros
# opentelemetry-instrument takes the first it finds, so these tests choose AgentTrace's (which
# brings its configurator), as docs/export.md tells users to.
CHOSEN = {"OTEL_PYTHON_DISTRO": "agenttrace"}


def test_traces_exporter_entry_point_in_a_users_setup(agents: Agents, receiver: Receiver, receiver2: Receiver) -> None:
    """OTEL_TRACES_EXPORTER=otlp,agenttrace under opentelemetry-instrument: each destination gets each span once."""
    env = {
        **otlp_env(receiver2.url, OTEL_TRACES_EXPORTER="otlp,agenttrace"),
        "AGENTTRACE_API_KEY": KEY,
        "AGENTTRACE_API_URL": receiver.url,
    }
    done = agents(AGENT, {**env, **CHOSEN}, prefix=("opentelemetry-instrument",))
    assert done.returncode == 0, done.stderr
    # The process run ends at exit: handed off with the rest (one uploader for both folders).
    assert wait_until(lambda: len(receiver.accepted_span_ids()) == 7 and len(receiver2.accepted_span_ids()) == 7)
    assert wait_until(lambda: not done.spool_files())
    backend = receiver.all_span_ids()
    assert len(backend) == len(set(backend))  # init() did not add a second backend exporter
    assert set(backend) == receiver2.accepted_span_ids()
    assert len(set(backend)) == 7  # the process run, the script's run and its five steps


def test_agenttrace_instrument_records_an_unmodified_script(agents: Agents) -> None:
    """`agenttrace-instrument python plain.py` makes one run named after the script; exit code passes through."""
    done = agents(PLAIN, prefix=("agenttrace-instrument",), args=("three",))
    assert done.returncode == 3
    assert "args ['three']" in done.stdout
    (run,) = done.local_spans()
    assert run.name == "agent_1.py"
    assert run.attributes["agenttrace.run.status"] == "ok"


def test_agenttrace_instrument_records_the_uncaught_exception(agents: Agents) -> None:
    """An uncaught exception ends the process run with status error, and the traceback still prints."""
    done = agents(PLAIN, prefix=("agenttrace-instrument",), args=("fail",))
    assert done.returncode == 1
    assert "RuntimeError: boom" in done.stderr
    (run,) = done.local_spans()
    assert run.attributes["agenttrace.run.status"] == "error"


def test_opentelemetry_instrument_activates_agenttrace(agents: Agents, receiver2: Receiver) -> None:
    """`opentelemetry-instrument` with AgentTrace's distro chosen brings its configurator: local run file and OTLP."""
    env = {**otlp_env(receiver2.url), **CHOSEN}
    done = agents(PLAIN, env, prefix=("opentelemetry-instrument",), args=("x",))
    assert done.returncode == 0, done.stderr
    (run,) = done.local_spans()
    assert run.name == "agent_1.py"
    assert wait_until(lambda: receiver2.accepted_span_ids() == {run.span_id})


def test_exporter_traffic_is_never_recorded(agents: Agents, receiver: Receiver) -> None:
    """With OTel's requests/urllib3 instrumentors active, the upload itself produces no span."""
    env = {"AGENTTRACE_API_KEY": KEY, "AGENTTRACE_API_URL": receiver.url, **CHOSEN}
    done = agents(AGENT, env, prefix=("opentelemetry-instrument",))
    assert done.returncode == 0, done.stderr
    # Neither the agent's upload nor its background uploader's (started with -I: no
    # sitecustomize, so not instrumented) is recorded.
    assert wait_until(lambda: len(receiver.accepted_span_ids()) == 7 and not done.spool_files())
    names = [s.name for r in receiver.requests for s in r.spans]
    assert len(names) == 7
    assert not [n for n in names if n.startswith(("POST", "HTTP"))]


def agenttrace_client_spans(done: Done) -> list[Any]:
    """CLIENT spans recorded by AgentTrace's instrumentors (not OpenTelemetry's own)."""
    return [s for s in done.local_spans() if s.kind == 3 and s.scope.startswith("agenttrace")]


URLLIB3_CALL = """
    import sys
    import urllib3
    urllib3.PoolManager().request("POST", sys.argv[1] + "/not-traces", body=b"")
"""


def test_agenttrace_instrumentors_record_under_opentelemetry_instrument(agents: Agents, receiver: Receiver) -> None:
    """Under opentelemetry-instrument, the script's urllib3 call is a CLIENT span of the process run."""
    done = agents(URLLIB3_CALL, CHOSEN, prefix=("opentelemetry-instrument",), args=(receiver.url,))
    assert done.returncode == 0, done.stderr
    assert len(agenttrace_client_spans(done)) == 1
    assert "already instrumented" not in done.stderr


@pytest.mark.parametrize(
    ("disabled", "recorded"),
    [("agenttrace_urllib3", ["socket"]), ("agenttrace_urllib3, agenttrace_socket", [])],
)
def test_disabled_instrumentations_apply_to_agenttrace_instrumentors(
    agents: Agents, receiver: Receiver, disabled: str, recorded: list[str]
) -> None:
    """OTEL_PYTHON_DISABLED_INSTRUMENTATIONS turns ours off by entry-point name, during runs too."""
    env = {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": disabled, **CHOSEN}
    done = agents(URLLIB3_CALL, env, prefix=("opentelemetry-instrument",), args=(receiver.url,))
    assert done.returncode == 0, done.stderr
    libraries = {s.attributes.get("agenttrace.call.library") for s in agenttrace_client_spans(done)}
    assert libraries == set(recorded)
