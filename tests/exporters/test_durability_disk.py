"""A trace folder that cannot be written: warned at the first failure, memory bounded, drops counted.

Real agents in subprocesses fetch large bodies from the loopback server while their trace folder
cannot be written (root ignores permission bits, so the folder's parent is a file, or the file
is /dev/full). Each reports, from inside, whether the warning came while its run was still going
and its own peak memory (``VmHWM``), which must stay well under the data the run recorded.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.KIND
from agenttrace._format.files import read_spans
from tests.conftest import run_command
from tests.servers import TestServer

from .conftest import CLEAN_ENV

CALLS = 80
SIZE = 4_000_000  # bytes per response: 320 MB recorded in all
_BOUND = 0.75  # of what was recorded: the agent's peak memory stays below it

# stderr is wrapped so the agent knows when AgentTrace's warning came: during the run or after.
AGENT = f"""
import resource, sys, time
import httpx

class Seen:
    def __init__(self, stream):
        self.stream, self.text = stream, ""
    def write(self, text):
        self.text += text
        return self.stream.write(text)
    def flush(self):
        self.stream.flush()

sys.stderr = Seen(sys.stderr)
import agenttrace

@agenttrace.run("big-agent")
def main(url):
    with httpx.Client() as client:
        for i in range({CALLS}):
            assert len(client.get(url).content) == {SIZE}
            if i == 2:
                deadline = time.monotonic() + 30  # a generous bound: the warning comes within ms
                while "could not write trace file" not in sys.stderr.text and time.monotonic() < deadline:
                    time.sleep(0.01)
                print("WARNED DURING RUN", "could not write trace file" in sys.stderr.text, flush=True)

main(sys.argv[1])
# VmHWM, not ru_maxrss: Linux carries the parent's resident size at fork into ru_maxrss across exec, so
# a large pytest process (after the server's memory tests) would be counted as this agent's peak.
with open("/proc/self/status") as status:
    print("MAXRSS_KB", [line.split()[1] for line in status if line.startswith("VmHWM:")][0], flush=True)
"""


def _run(tmp_path: Path, trace_dir: Path, url: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "agent.py"
    script.write_text(textwrap.dedent(AGENT), encoding="utf-8")
    env = {**CLEAN_ENV, "AGENTTRACE_TRACE_DIR": str(trace_dir)}
    return run_command(
        [sys.executable, str(script), url],
        cwd=tmp_path,
        env=env,
        timeout=300,
    )


def _maxrss_bytes(stdout: str) -> int:
    (line,) = [line for line in stdout.splitlines() if line.startswith("MAXRSS_KB")]
    return int(line.split()[1]) * 1024


@pytest.fixture
def big_server() -> TestServer:
    """A loopback server of this test only."""
    with TestServer() as server:
        yield server  # type: ignore[misc]


def test_unwritable_folder_warns_at_once_and_memory_stays_bounded(tmp_path: Path, big_server: TestServer) -> None:
    """A folder whose parent is a file: warned during the run, memory far below the 320 MB recorded, drops counted."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the trace folder's parent should be")
    done = _run(tmp_path, blocker / "traces", big_server.url(f"/big?size={SIZE}"))
    assert done.returncode == 0, done.stderr
    assert "WARNED DURING RUN True" in done.stdout
    assert done.stderr.count("WARNING: could not write trace file") == 1
    assert "spans of trace" in done.stderr
    assert "were dropped" in done.stderr
    # Recording any number of these calls peaks at 150 to 200 MB here (the agent, the capture, the
    # writer's bounded queue; the peak moves with the machine's load and the allocator), while
    # keeping the spans would take the whole 320 MB on top of the agent's own.
    assert _maxrss_bytes(done.stdout) < CALLS * SIZE * _BOUND, done.stdout


def test_file_size_limit_warns_at_once_and_memory_stays_bounded(tmp_path: Path, big_server: TestServer) -> None:
    """Writes that start failing mid-run (RLIMIT_FSIZE, as a full disk does): one warning at once, same memory bound."""
    code = textwrap.dedent(AGENT).replace(
        "import resource, sys, time\n",
        "import resource, signal, sys, time\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (6_000_000, resource.RLIM_INFINITY))\n",
        1,
    )
    script = tmp_path / "agent_fsize.py"
    script.write_text(code, encoding="utf-8")
    env = {**CLEAN_ENV, "AGENTTRACE_TRACE_DIR": str(tmp_path / "traces")}
    done = run_command(
        [sys.executable, str(script), big_server.url(f"/big?size={SIZE}")],
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "WARNED DURING RUN True" in done.stdout
    assert "File too large" in done.stderr
    assert done.stderr.count("WARNING: could not write trace file") == 1
    assert _maxrss_bytes(done.stdout) < CALLS * SIZE * _BOUND, done.stdout
    # What was written before the failure is kept, in sight, and reads up to where it broke off.
    (kept,) = (tmp_path / "traces").glob("*.incomplete.jsonl")
    assert f"the spans written before are in {kept}" in done.stderr
    assert any(s.attributes.get(S.KIND) == "call" for s in read_spans(kept))


def test_a_folder_without_file_locks_still_keeps_traces_and_spool_claims(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where flock fails (NFS without lockd; simulated, no such file system here), files are written unlocked."""
    import errno
    import fcntl

    from agenttrace.exporters import spool
    from agenttrace.exporters.local import TraceFile

    def no_locks(handle: Any, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    trace = TraceFile(tmp_path, 0xABC)
    handle = trace._open_partial()
    handle.write("{}\n")
    handle.close()
    assert list(tmp_path.glob(".*.partial-*")), "the partial file is written, without its lock"
    claimed = tmp_path / "batch.json.claimed-1"
    claimed.write_text("{}")
    assert spool._locked(claimed) == (True, None)  # no lock to read: the process id decides
