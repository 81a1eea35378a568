"""Profile one AgentTrace contender with pyinstrument: where does its added cost go?

Run from the repository root::

    python -m tests.perf.profile record-httpx      # the calls of scenario 1, httpx
    python -m tests.perf.profile record-requests
    python -m tests.perf.profile stream
    python -m tests.perf.profile replay            # per-call replay, 10,000-call recording
    python -m tests.perf.profile replay-untraced   # the same, replay's own trace not written (pytest plugin)
    python -m tests.perf.profile replay-load       # load_events() + init(mode="replay"), 10,000 calls
    python -m tests.perf.profile replay-load-file  # init(mode="replay", replay_events_file=...), 10,000 calls

It starts the loopback server, runs the same worker the harness runs with pyinstrument around
the measured part (a 0.2 ms sampling interval: the figures it prints are inflated by the
profiler, read the shares, not the totals), prints the call tree and writes it, with an HTML
version, to ``tests/perf/results/profile-<what>.txt``. For a sampling view from outside the
process, ``py-spy record -o out.svg -- python tests/perf/worker.py '<spec>'`` takes the same
spec (the harness logs every spec it runs in ``tests/perf/results/logs/`` when one fails).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from .harness import HERE, Context, Plan

__all__ = ["main"]

TARGETS = ("record-httpx", "record-requests", "stream", "replay", "replay-untraced", "replay-load", "replay-load-file")


def main(argv: list[str] | None = None) -> int:
    """Profile one target and print the pyinstrument call tree."""
    parser = argparse.ArgumentParser(prog="python -m tests.perf.profile", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=TARGETS)
    parser.add_argument("--calls", type=int, default=3000, help="calls profiled (record, replay)")
    parser.add_argument("--count", type=int, default=10000, help="recorded calls (replay, replay-load[-file])")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="agenttrace-profile-"))
    ctx = Context(plan=Plan(), scratch=scratch, pin=True, logs=args.out / "logs")
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"profile-{args.what}.txt"
    try:
        ctx.base_url = ctx.start_server()
        spec: dict[str, Any] = {"contender": "agenttrace", "profile": str(target)}
        if args.what.startswith("record-"):
            spec |= {"scenario": "record", "lib": args.what.removeprefix("record-"), "warmup": 200, "calls": args.calls}
        elif args.what == "stream":
            spec |= {"scenario": "stream", "warmup": 1, "calls": 10, "chunks": 20, "gap_ms": 20}
        else:
            recording = scratch / "recording.jsonl"
            made = ctx.worker(
                {"scenario": "replay-setup", "contender": "agenttrace", "count": args.count, "output": str(recording)}
            )
            if "skipped" in made:
                sys.stderr.write(f"cannot record: {made['skipped']}\n")
                return 1
            spec |= {
                "scenario": "replay",
                "contender": {"replay-load-file": "agenttrace-file", "replay-untraced": "agenttrace-untraced"}.get(
                    args.what, "agenttrace"
                ),
                "count": args.count,
                "recording": str(recording),
                "sample": min(args.calls, int(args.count * 0.8)),
                "warmup": 10,
                "profile_part": "load" if args.what.startswith("replay-load") else "calls",
            }
        result = ctx.worker(spec)
    finally:
        ctx.stop_servers()
        shutil.rmtree(scratch, ignore_errors=True)
    sys.stdout.write(json.dumps({k: v for k, v in result.items() if k != "stderr"}) + "\n")
    if target.exists():
        sys.stdout.write(target.read_text())
    return 0 if "skipped" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
