"""Local trace files, the embedded default: one OTLP JSON Lines file per run, written atomically."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from agenttrace.exporters import local
from agenttrace.exporters.processor import RunFileProcessor
from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

from agenttrace._format.files import read_spans
from tests.recording import hex_ids_to_base64

AGENT = """
import agenttrace

@agenttrace.run("support-agent")
def main():
    with agenttrace.step("search", type="tool_call", query="refund"):
        agenttrace.set_result({"hits": 2})
    with agenttrace.step("answer", type="thought"):
        pass
    return "ok"

print(main())
"""


def test_run_without_init_writes_one_file_named_by_trace_id(run_agent: Any) -> None:
    """With no init() and no API key, a run is written to <trace_id>.jsonl and stderr says where."""
    result = run_agent(AGENT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    (file,) = result.files()
    spans = read_spans(file)
    assert {s.trace_id for s in spans} == {file.stem}
    assert sorted(s.name for s in spans) == ["answer", "search", "support-agent"]
    assert f"trace written to traces/{file.name} (3 spans)" in result.stderr


def test_file_is_valid_otlp_json(run_agent: Any) -> None:
    """Every line parses as an OTLP TracesData (protobuf's own parser), with hex ids of the right size."""
    result = run_agent(AGENT)
    (file,) = result.files()
    lines = [line for line in file.read_text().splitlines() if line.strip()]
    assert lines
    count = 0
    for line in lines:
        document = json.loads(line)
        for span in document["resourceSpans"][0]["scopeSpans"][0]["spans"]:
            assert len(span["traceId"]) == 32
            assert len(span["spanId"]) == 16
        message = json_format.ParseDict(hex_ids_to_base64(document), TracesData())
        count += sum(len(ss.spans) for rs in message.resource_spans for ss in rs.scope_spans)
    assert count == 3


def test_quiet_silences_the_line(run_agent: Any) -> None:
    """AGENTTRACE_QUIET=1 silences the 'trace written to' line."""
    result = run_agent(AGENT, env={"AGENTTRACE_QUIET": "1"})
    assert result.returncode == 0
    assert "trace written" not in result.stderr
    assert len(result.files()) == 1


def test_trace_dir_setting(run_agent: Any, tmp_path: Path) -> None:
    """init(trace_dir=...) beats AGENTTRACE_TRACE_DIR."""
    target = tmp_path / "chosen"
    code = f"import agenttrace\nagenttrace.init(trace_dir={str(target)!r})\n" + AGENT
    result = run_agent(code)
    assert result.returncode == 0, result.stderr
    assert len(list(target.glob("*.jsonl"))) == 1
    assert result.files() == []


def test_nested_runs_share_one_file_and_concurrent_runs_get_their_own(run_agent: Any) -> None:
    """A run inside a run writes one file; runs in concurrent threads write one file each."""
    result = run_agent(
        """
        import threading, agenttrace

        @agenttrace.run("inner")
        def inner():
            with agenttrace.step("i"):
                pass

        @agenttrace.run("outer")
        def outer():
            inner()

        outer()
        threads = [threading.Thread(target=outer) for _ in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
        """
    )
    assert result.returncode == 0, result.stderr
    files = result.files()
    assert len(files) == 5
    for file in files:
        assert sorted(s.name for s in read_spans(file)) == ["i", "inner", "outer"]


def test_killed_mid_run_leaves_no_partial_trace_file(run_agent: Any, tmp_path: Path) -> None:
    """A process killed mid-run never leaves a half-written <trace_id>.jsonl."""
    script = tmp_path / "slow.py"
    script.write_text(
        "import sys, time, agenttrace\n"
        "@agenttrace.run\n"
        "def main():\n"
        "    for i in range(200):\n"
        "        with agenttrace.step(f's{i}', payload='x' * 20000):\n"
        "            pass\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(60)\n"
        "main()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTTRACE_")}
    env["AGENTTRACE_TRACE_DIR"] = str(tmp_path / "traces")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, env=env, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    traces = tmp_path / "traces"
    for _ in range(200):  # the writer thread streams spans out shortly after they end
        partials = list(traces.glob(".*.partial-*"))
        if partials and partials[0].stat().st_size > 2_500_000:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    assert list(traces.glob("*.jsonl")) == []
    (partial,) = traces.glob(".*.partial-*")  # the spans so far were streamed to the partial file
    trace_id = partial.name[1:33]
    # The next run in that folder keeps the interrupted run's spans where users will see them.
    nxt = run_agent("import agenttrace\nagenttrace.run(lambda: None)()\n")
    assert nxt.returncode == 0, nxt.stderr
    recovered = traces / f"{trace_id}.incomplete.jsonl"
    assert f"kept the spans of an interrupted run (its process died mid-run) in traces/{recovered.name}" in nxt.stderr
    assert len([s for s in read_spans(recovered) if s.name.startswith("s")]) >= 100
    assert list(traces.glob(".*.partial-*")) == []


def test_unwritable_trace_dir_warns_once_and_agent_succeeds(run_agent: Any, tmp_path: Path) -> None:
    """If the trace folder cannot be written, the agent still succeeds and one warning says why."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the folder should be")
    code = AGENT + "print(main())\n"
    result = run_agent(code, env={"AGENTTRACE_TRACE_DIR": str(blocker / "traces")})
    assert result.returncode == 0
    assert result.stdout.split() == ["ok", "ok"]
    assert result.stderr.count("WARNING: could not write trace file") == 1
    assert "the run itself is unaffected" in result.stderr


def test_user_provider_wrapper_is_joined_not_replaced(run_agent: Any) -> None:
    """A provider wrapper with add_span_processor (as Logfire's) is joined, and the user's exporter sees our spans."""
    result = run_agent(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        class Wrapper(trace.TracerProvider):
            def __init__(self):
                self.inner = TracerProvider()
            def get_tracer(self, *args, **kwargs):
                return self.inner.get_tracer(*args, **kwargs)
            def add_span_processor(self, processor):
                self.inner.add_span_processor(processor)

        exporter = InMemorySpanExporter()
        wrapper = Wrapper()
        wrapper.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(wrapper)

        import agenttrace

        @agenttrace.run("agent")
        def main():
            with agenttrace.step("s"):
                pass

        with trace.get_tracer("app").start_as_current_span("request"):
            main()
        assert trace.get_tracer_provider() is wrapper
        print(sorted(s.name for s in exporter.get_finished_spans()))
        print(len({s.context.trace_id for s in exporter.get_finished_spans()}))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["['agent', 'request', 's']", "1"]
    (file,) = result.files()
    assert sorted(s.name for s in read_spans(file)) == ["agent", "s"]


def test_show_prints_the_tree(run_agent: Any) -> None:
    """`agenttrace show FILE` prints runs and steps with types, results and errors."""
    result = run_agent(
        AGENT.replace("print(main())", "")
        + """
@agenttrace.run("failing")
def failing():
    with agenttrace.step("explode", type="tool_call"):
        raise ValueError("kaboom")
try:
    failing()
except ValueError:
    pass
main()
"""
    )
    assert result.returncode == 0, result.stderr
    outputs = []
    for file in result.files():
        shown = subprocess.run(
            [sys.executable, "-m", "agenttrace._cli", "show", str(file)], capture_output=True, text=True, check=False
        )
        assert shown.returncode == 0, shown.stderr
        outputs.append(shown.stdout)
    text = "\n".join(outputs)
    assert "run support-agent" in text
    assert "tool_call search" in text
    assert 'result={"hits":2}' in text
    assert "error explode" in text
    assert "ValueError: kaboom" in text


def test_show_refuses_bad_file_with_line(tmp_path: Path) -> None:
    """`agenttrace show` on a truncated file exits 2 naming the file and the line."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"resourceSpans": []}\n{"resourceSpans": [\n')
    shown = subprocess.run(
        [sys.executable, "-m", "agenttrace._cli", "show", str(bad)], capture_output=True, text=True, check=False
    )
    assert shown.returncode == 2
    assert f"trace file {bad}, line 2" in shown.stderr


def test_metadata_is_cached_not_a_subprocess(run_agent: Any) -> None:
    """Distributions are read once per process with importlib.metadata, never a subprocess."""
    result = run_agent(
        """
        import subprocess, agenttrace
        from agenttrace._core import run as _metadata
        calls = []
        real = subprocess.Popen.__init__
        def spy(self, *a, **k):
            calls.append(a)
            real(self, *a, **k)
        subprocess.Popen.__init__ = spy

        @agenttrace.run
        def main():
            pass
        for _ in range(3):
            main()
        print(len(calls), _metadata.distributions.cache_info().misses)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "1"]


def test_many_runs_leave_complete_files(run_agent: Any) -> None:
    """Fifty runs in one process leave fifty complete files, each with its own step."""
    result = run_agent(
        """
        import agenttrace
        @agenttrace.run
        def main(i):
            with agenttrace.step("s", i=i):
                pass
        for i in range(50):
            main(i)
        """,
        env={"AGENTTRACE_QUIET": "1"},
    )
    assert result.returncode == 0, result.stderr
    files = result.files()
    assert len(files) == 50
    seen = sorted(s.attributes["agenttrace.step.kwargs.i"] for f in files for s in read_spans(f) if s.name == "s")
    assert seen == list(range(50))


def test_fork_inside_a_run_writes_each_span_once(run_agent: Any) -> None:
    """A child forked mid-run never rewrites the parent's buffered spans: each span is in the file once."""
    result = run_agent(
        """
        import os, agenttrace

        @agenttrace.run("forking")
        def main():
            for i in range(60):
                with agenttrace.step(f"before-{i}", payload="x" * 20000):
                    pass
            with agenttrace.step("buffered"):
                pass
            pid = os.fork()
            with agenttrace.step("child" if pid == 0 else "parent"):
                pass
            if pid == 0:
                os._exit(0)  # as multiprocessing's forked workers leave
            os.waitpid(pid, 0)
            return pid

        main()
        """
    )
    assert result.returncode == 0, result.stderr
    (file,) = result.files()
    spans = read_spans(file)
    ids = [s.span_id for s in spans]
    assert len(ids) == len(set(ids))
    names = [s.name for s in spans]
    assert names.count("buffered") == 1
    assert names.count("before-0") == 1
    assert "parent" in names


def test_forked_pool_workers_commit_their_runs(run_agent: Any) -> None:
    """Runs inside forked multiprocessing workers are written to the parent's trace file, none lost."""
    result = run_agent(
        """
        import multiprocessing, agenttrace

        @agenttrace.run("work")
        def work(i):
            with agenttrace.step("inside-worker", i=i):
                return i * i

        @agenttrace.run("parent")
        def main():
            with multiprocessing.get_context("fork").Pool(3) as pool:
                return pool.map(work, range(6))

        if __name__ == "__main__":
            print(main())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[0, 1, 4, 9, 16, 25]"
    (file,) = result.files()
    spans = read_spans(file)
    names = sorted(s.name for s in spans)
    assert names == ["inside-worker"] * 6 + ["parent"] + ["work"] * 6
    assert len({s.span_id for s in spans}) == 13
    assert sorted(s.attributes["agenttrace.step.kwargs.i"] for s in spans if s.name == "inside-worker") == list(
        range(6)
    )


def test_show_socket_calls_succeed(run_agent: Any) -> None:
    """`agenttrace show` prints a successful raw DNS lookup as ok with its host, not as an error."""
    result = run_agent(
        """
        import socket, agenttrace
        @agenttrace.run
        def main():
            with agenttrace.step("raw"):
                socket.getaddrinfo("localhost", 80)
        main()
        """
    )
    assert result.returncode == 0, result.stderr
    (file,) = result.files()
    shown = subprocess.run(
        [sys.executable, "-m", "agenttrace._cli", "show", str(file)], capture_output=True, text=True, check=False
    )
    assert "dns localhost → ok" in shown.stdout
    assert "error" not in shown.stdout


def _second_span_after_idle(
    monkeypatch: Any, linger: float, written: list[tuple[float, Any]]
) -> tuple[Any, Any, float]:
    """A SpanWriter that wrote one span and went to its deep sleep, then got a second span with
    ``_LINGER`` set to ``linger``; its file logs every add. Returns the writer, the file and when
    the second span was submitted."""

    class File:
        def add(self, span: Any) -> None:
            written.append((time.monotonic(), span))

    monkeypatch.setattr(local, "_LINGER", 0.05)
    writer = local.SpanWriter()
    file = File()
    writer.submit(file, ReadableSpan(name="first"))  # type: ignore[arg-type]
    writer.flush(file)  # type: ignore[arg-type]
    deadline = time.monotonic() + 10
    while not writer._sleeping and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer._sleeping, "the writer never went to its deep sleep"
    monkeypatch.setattr(local, "_LINGER", linger)
    submitted = time.monotonic()
    writer.submit(file, ReadableSpan(name="second"))  # type: ignore[arg-type]
    return writer, file, submitted


def test_writer_waits_out_the_moment_after_a_call(monkeypatch: Any) -> None:
    """After a quiet spell, a span is encoded _LINGER later, not while its agent is still busy."""
    written: list[tuple[float, Any]] = []
    _, _, submitted = _second_span_after_idle(monkeypatch, 0.3, written)
    deadline = submitted + 10
    while len(written) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [span.name for _, span in written] == ["first", "second"]
    assert written[1][0] - submitted >= 0.3


def test_flush_cuts_the_writer_wait_short(monkeypatch: Any) -> None:
    """A run's end (flush) does not wait for the writer's linger."""
    written: list[tuple[float, Any]] = []
    writer, file, submitted = _second_span_after_idle(monkeypatch, 30.0, written)
    writer.flush(file)
    assert [span.name for _, span in written] == ["first", "second"]
    assert time.monotonic() - submitted < 10  # far under the 30 s linger


def test_a_run_being_committed_is_still_secured(tmp_path: Path) -> None:
    """force_flush (and SIGTERM's handler) wait for the spans of a run whose file is being committed."""
    # A pool worker's run ends in its exit hooks, and Pool.terminate()'s SIGTERM often comes while
    # that run's spans still wait for the trace writer (a worker starved on a loaded machine): the
    # handler must write them, not find nothing open and let the process die without them.
    processor = RunFileProcessor()
    processor.folder = tmp_path
    processor.quiet = True
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")
    run = tracer.start_span("run")
    trace_id = run.get_span_context().trace_id
    processor.open_trace(trace_id)
    file = processor._open[trace_id][0]
    with file._lock:  # the writer thread stalls on this file's next span
        tracer.start_span("call", context=trace.set_span_in_context(run)).end()
        run.end()
        closing = threading.Thread(target=processor.close_trace, args=(trace_id,))
        closing.start()
        deadline = time.monotonic() + 10
        while trace_id in processor._open and time.monotonic() < deadline:
            time.sleep(0.01)
        assert trace_id not in processor._open
        # Both spans still wait for the writer: not on disk, whatever force_flush could claim.
        assert processor.force_flush(200) is False
    closing.join(30)
    assert processor.force_flush(10_000) is True
    (committed,) = tmp_path.glob("*.jsonl")
    assert sorted(s.name for s in read_spans(committed)) == ["call", "run"]
    assert list(tmp_path.glob(".*.partial-*")) == []
    provider.shutdown()
