"""Export tests: real OTLP/HTTP receivers on 127.0.0.1 and agents run as subprocesses.

A :class:`Receiver` is a small threaded HTTP server that decodes every
``ExportTraceServiceRequest`` it is sent (gzip or not) with ``opentelemetry-proto`` and answers
as the test tells it: 200, an error status with headers, after a delay, or 413 above a size.
Agents are scripts run with ``sys.executable`` in a clean environment (no ``AGENTTRACE_*``,
``OTEL_*`` or proxy variables from the developer's shell), the trace and spool folders in
``tmp_path``.

At exit an agent hands what it has not delivered to a detached background uploader
(``AGENTTRACE_EXIT_UPLOAD=background``, the default). Scripts that start with
:data:`REPORT_UPLOADER` print that process's pid (``UPLOADER <pid>`` or ``UPLOADER None``) as
their last line, so a test can wait for it (:meth:`Done.wait_for_uploader`); the fixture waits
for every uploader its agents started (and ends it, by pid, if it outlives the bound) so that
none outlives its test.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agenttrace._format.files import read_spans

KEY = "at_test_0123456789abcdef"  # the API key the exporter tests send

_DROP = ("AGENTTRACE_", "OTEL_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(_DROP)}
CLEAN_ENV["NO_PROXY"] = CLEAN_ENV["no_proxy"] = "127.0.0.1,localhost"
BIN = Path(sys.executable).parent


@dataclass
class Answer:
    """How the receiver answers one request."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Received:
    """One request as the receiver decoded it."""

    path: str
    headers: dict[str, str]
    request: ExportTraceServiceRequest
    status: int
    at: float

    @property
    def spans(self) -> list[Any]:
        """The request's spans."""
        return [s for rs in self.request.resource_spans for ss in rs.scope_spans for s in ss.spans]


class Receiver:
    """An OTLP/HTTP receiver on 127.0.0.1; ``answer`` decides each response."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.answered = 0
        self.answer: Callable[[Received], Answer] = lambda _: Answer()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                got = Received(
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    ExportTraceServiceRequest.FromString(body),
                    0,
                    time.monotonic(),
                )
                answer = receiver.answer(got)
                got.status = answer.status
                with receiver._lock:
                    receiver.requests.append(got)
                if answer.delay:
                    time.sleep(answer.delay)
                self.send_response(answer.status)
                for key, value in answer.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with receiver._lock:
                    receiver.answered += 1

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def accepted_span_ids(self) -> set[str]:
        """Hex ids of the spans of every request answered 2xx."""
        with self._lock:
            return {s.span_id.hex() for r in self.requests if 200 <= r.status < 300 for s in r.spans}

    def all_span_ids(self) -> list[str]:
        """Hex ids of every span received, duplicates kept."""
        with self._lock:
            return [s.span_id.hex() for r in self.requests for s in r.spans]

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A live OTLP/HTTP receiver answering 200 until told otherwise."""
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def receiver2() -> Iterator[Receiver]:
    """A second receiver, for two destinations at once."""
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def dead_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (a port just released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def process_gone(pid: int) -> bool:
    """True when ``pid`` has exited (a zombie not reaped yet counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state in ("Z", "X")
    return False


@dataclass
class Done:
    """A finished agent process and the folders it used."""

    returncode: int
    stdout: str
    stderr: str
    trace_dir: Path
    spool_dir: Path
    ended_at: float = 0.0  # time.monotonic() when the process had exited

    @property
    def uploader(self) -> int | None:
        """Pid of the background uploader the agent started at exit (scripts with REPORT_UPLOADER)."""
        found = re.findall(r"^UPLOADER (\d+|None)$", self.stdout, re.MULTILINE)
        assert found, f"the script does not report its uploader:\n{self.stdout}"
        return None if found[-1] == "None" else int(found[-1])

    def wait_for_uploader(self, timeout: float = 60.0) -> None:
        """Wait until the background uploader (if one was started) has exited."""
        pid = self.uploader
        if pid is not None:
            assert wait_until(lambda: process_gone(pid), timeout), f"uploader {pid} still running"

    def local_span_ids(self) -> set[str]:
        """Span ids of every local trace file."""
        return {s.span_id for f in sorted(self.trace_dir.glob("*.jsonl")) for s in read_spans(f)}

    def local_spans(self) -> list[Any]:
        """Every span of every local trace file."""
        return [s for f in sorted(self.trace_dir.glob("*.jsonl")) for s in read_spans(f)]

    def spool_files(self) -> list[Path]:
        """Files waiting in the spool (protobuf or OTLP JSON, claimed or not)."""
        return sorted(
            p for kind in ("pb", "json") for p in self.spool_dir.rglob(f"*.{kind}*") if not p.name.startswith(".")
        )

    def claimed_files(self) -> list[Path]:
        """Spool files some process is sending right now."""
        return [p for p in self.spool_files() if ".claimed-" in p.name]


class Agents:
    """Runs agent scripts (or commands) in fresh interpreters with folders in tmp_path."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.trace_dir = tmp_path / "traces"
        self.spool_dir = tmp_path / "spool"
        self._count = 0
        self.uploaders: list[int] = []

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The clean environment plus AgentTrace's folders and ``extra``."""
        return {
            **CLEAN_ENV,
            "AGENTTRACE_TRACE_DIR": str(self.trace_dir),
            "AGENTTRACE_SPOOL_DIR": str(self.spool_dir),
            "AGENTTRACE_QUIET": "1",
            **(extra or {}),
        }

    def script(self, code: str) -> Path:
        """Write ``code`` to a new script file and return its path."""
        self._count += 1
        path = self.tmp_path / f"agent_{self._count}.py"
        path.write_text(textwrap.dedent(code), encoding="utf-8")
        return path

    def __call__(
        self,
        code: str,
        env: dict[str, str] | None = None,
        *,
        prefix: tuple[str, ...] = (),
        args: tuple[str, ...] = (),
        timeout: float = 60,
    ) -> Done:
        """Run ``code`` as a script (after ``prefix``, e.g. ``agenttrace-instrument``)."""
        script = self.script(code)
        return self.command([*prefix, sys.executable, str(script), *args], env, timeout=timeout)

    def command(self, argv: list[str], env: dict[str, str] | None = None, *, timeout: float = 60) -> Done:
        """Run any command with the agents' environment."""
        argv = [shutil.which(argv[0], path=str(BIN)) or argv[0], *argv[1:]]
        done = subprocess.run(
            argv, capture_output=True, text=True, env=self.env(env), cwd=self.tmp_path, timeout=timeout, check=False
        )
        result = Done(done.returncode, done.stdout, done.stderr, self.trace_dir, self.spool_dir, time.monotonic())
        self.uploaders += [int(pid) for pid in re.findall(r"^UPLOADER (\d+)$", done.stdout, re.MULTILINE)]
        return result

    def upload(self, env: dict[str, str]) -> Done:
        """``agenttrace upload`` with this test's spool."""
        return self.command(["agenttrace", "upload"], env)

    def end_uploaders(self, timeout: float = 60.0) -> None:
        """Wait for the background uploaders the agents started; end (by pid) any still running after ``timeout``."""
        for pid in self.uploaders:
            if not wait_until(lambda pid=pid: process_gone(pid), timeout):
                with contextlib.suppress(OSError):
                    os.kill(pid, getattr(signal, "SIGKILL", signal.SIGTERM))


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Agents]:
    """Run agent scripts in subprocesses; trace and spool folders in tmp_path."""
    runner = Agents(tmp_path)
    yield runner
    runner.end_uploaders()


def wait_until(check: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll ``check`` until it holds or ``timeout`` passes (a generous bound, not a measurement)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


# First in a script: registered before agenttrace is imported, so it runs after AgentTrace's
# exit (atexit runs last-registered first) and prints the pid of the uploader it started.
REPORT_UPLOADER = """
    import atexit as _atexit, sys as _sys
    _atexit.register(
        lambda: print(
            "UPLOADER", getattr(_sys.modules.get("agenttrace.exporters.exit"), "handed_off_to", None), flush=True
        )
    )
"""

# A multiprocessing agent's worker: a run with one step, the head of the scripts that start workers.
SQUARE_WORKER = (
    REPORT_UPLOADER
    + """
    import multiprocessing as mp
    import sys

    import agenttrace

    @agenttrace.run("worker")
    def work(i):
        with agenttrace.step("square", n=i):
            return i * i
"""
)

AGENT = (
    REPORT_UPLOADER
    + """
    import agenttrace
    from opentelemetry import trace

    @agenttrace.run("support-agent")
    def main(n):
        for i in range(n):
            with agenttrace.step(f"step-{i}", type="tool_call", sku=f"A{i}"):
                trace.get_current_span().add_event("payload", {"body": "x" * 100, "index": i})
                agenttrace.set_result({"i": i})
        return n

    import sys
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
"""
)


def assert_one_spool_warning(stderr: str, spool_dir: Path, reason: str) -> None:
    """``stderr`` holds exactly one warning, giving ``reason`` and naming the spool and `agenttrace upload`; no key."""
    warnings = [line for line in stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, stderr
    assert reason in warnings[0]
    assert str(spool_dir / "agenttrace") in warnings[0]
    assert "agenttrace upload" in warnings[0]
    assert KEY not in stderr


def otlp_env(url: str, **extra: str) -> dict[str, str]:
    """OTLP/HTTP to ``url`` by the standard variables."""
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": url,
        **extra,
    }


def backend_and_collector_env(backend_url: str, collector_url: str) -> dict[str, str]:
    """The AgentTrace backend at ``backend_url``, an OTLP collector at ``collector_url``, local files on."""
    return {
        **otlp_env(collector_url),
        "AGENTTRACE_API_KEY": KEY,
        "AGENTTRACE_API_URL": backend_url,
        "AGENTTRACE_LOCAL_FILES": "1",
    }
