"""`agenttrace demo` records the bundled agent, stops its server, and replays it identically."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.conftest import _CLEAN_ENV, run_command


def test_demo_command_shows_identical_outputs(tmp_path: Path) -> None:
    """The demo exits 0 and says the recorded and replayed outputs are identical."""
    done = run_command(
        [sys.executable, "-m", "agenttrace._cli", "demo", "--trace-dir", str(tmp_path / "traces")],
        cwd=tmp_path,
        env=_CLEAN_ENV,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4. identical" in done.stdout
    assert len(list((tmp_path / "traces").glob("*.jsonl"))) == 2  # the recording and the replay's own trace
