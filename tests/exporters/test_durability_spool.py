"""Spool claims shared between processes: a live claim is never released by another process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from agenttrace.exporters.spool import Spool

from .conftest import CLEAN_ENV

# Claims the spool's one file and holds it; its process id is made to look like one that no
# longer exists (as a process of another container, or another PID 1, looks from here).
HOLDER = """
import os, sys, time
from pathlib import Path
from agenttrace.exporters.spool import Spool

os.getpid = lambda: int(sys.argv[2])
spool = Spool(Path(sys.argv[1]), "agenttrace", 1 << 30)
(path,) = spool.pending()
assert spool.claim(path) is not None
print("claimed", flush=True)
time.sleep(120)
"""


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_live_claim_is_kept_whatever_its_pid_says(tmp_path: Path) -> None:
    """Another process's live claim stays claimed even when its pid looks dead here; once it dies, it is released."""
    spool = Spool(tmp_path, "agenttrace", 1 << 30)
    assert spool.put(b"\x0a\x00", 1)
    script = tmp_path / "holder.py"
    script.write_text(textwrap.dedent(HOLDER), encoding="utf-8")
    dead = _dead_pid()
    holder = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path), str(dead)], stdout=subprocess.PIPE, text=True, env=CLEAN_ENV
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "claimed"
        (claimed,) = spool.folder.glob(f"*.claimed-{dead}")
        assert spool.pending() == []  # not released: its claimer lives
        assert claimed.exists()
    finally:
        holder.kill()
        holder.communicate(timeout=30)
    (released,) = spool.pending()  # its claimer is gone: the next reader gives it back
    assert not claimed.exists()
    again = spool.claim(released)
    assert again is not None
    spool.release(again)
