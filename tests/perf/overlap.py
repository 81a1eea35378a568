"""Does the trace writer's work fall on the agent's wait for its next first chunk?

    python -m tests.perf.overlap                     # this tree
    python -m tests.perf.overlap --baseline <commit>  # and another commit, alternating

Runs the stream scenario's worker (SSE streams back to back inside one ``@agenttrace.run``, a
fresh process per round, pinned as the benchmark pins its clients) with ``log_encodings``: the
worker logs when the trace writer encodes a span (``TraceFile.add``) and when each timed stream
waits for its first chunk. This prints how many of those waits overlapped an encoding, and how
long an encoding took: the contention the stream scenario's timings only show as noise, counted.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from .harness import SSE_CHUNKS, SSE_GAP_MS, Context, Plan, _baseline_tree


def main(argv: list[str] | None = None) -> int:
    """Run the stream worker for this tree (and a baseline), alternating; print what overlapped."""
    parser = argparse.ArgumentParser(prog="python -m tests.perf.overlap", description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="also measure another commit's AgentTrace (git revision or folder)")
    parser.add_argument("--streams", type=int, default=10, help="timed streams per process (default 10)")
    parser.add_argument("--rounds", type=int, default=5, help="processes per tree (default 5)")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="agenttrace-overlap-"))
    ctx = Context(plan=Plan(), scratch=scratch, pin=True)
    names = ["agenttrace"]
    if args.baseline:
        ctx.baseline = _baseline_tree(args.baseline, scratch)
        names.append("agenttrace-baseline")
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    try:
        ctx.base_url = ctx.start_server()
        for _ in range(args.rounds):
            for name in names:
                spec = {
                    "scenario": "stream",
                    "contender": name,
                    "warmup": 1,
                    "calls": args.streams,
                    "chunks": SSE_CHUNKS,
                    "gap_ms": SSE_GAP_MS,
                    "log_encodings": True,
                }
                result = ctx.worker(spec)
                if "skipped" in result:
                    raise SystemExit(f"{name}: {result['skipped']}")
                results[name].append(result)
    finally:
        ctx.stop_servers()
        shutil.rmtree(scratch, ignore_errors=True)
    print("| tree | timed first-chunk waits that overlapped an encoding | median encoding ms |")
    print("|---|---|---|")
    for name, rounds in results.items():
        label = "this tree" if name == "agenttrace" else f"baseline {args.baseline}"
        hit = sum(int(r["overlapped"]) for r in rounds)
        encode = statistics.median(float(r["encode_ms"]) for r in rounds)
        print(f"| {label} | {hit} of {args.streams * len(rounds)} | {encode:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
