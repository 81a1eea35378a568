"""Where a replay's load of a large recording goes, part by part.

    python -m tests.perf.load_parts                 # a 10,000-call recording, 3 rounds
    python -m tests.perf.load_parts --count 1000 --rounds 5
    python -m tests.perf.load_parts --baseline <commit>   # each part also timed for another commit, alternating

Records ``count`` calls with the replay scenario's worker (the benchmark's recording: distinct
URLs, one request body, 2 KB responses), then times each part of loading it in a fresh
interpreter of its own, round after round, and prints the median [min, max] of each:

- *parse*: ``orjson.loads`` of every line of the file, nothing else (the least any reader pays),
  garbage collection off as the loader pauses it;
- *load_events*: ``agenttrace.load_events(path)``, the event dicts;
- *events to exchanges*: what ``init(replay_events=...)`` then does before matching, building
  the exchange of every call event (``check_events``), garbage collection paused as in ``init``;
- *matcher*: the replay session's index of those exchanges;
- *from the file*: ``load_recording``, what ``init(replay_events_file=...)`` does before
  matching, with the process's minor page faults and system time over that part.

The import of agenttrace and the first run's start, which the benchmark's *load* column also
counts, are not parts here.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .harness import REPO, Context, Plan, _baseline_tree

PARTS = ("parse", "load_events", "events to exchanges", "matcher", "from the file")


def _child(part: str, path: str) -> dict[str, float]:
    """Measure one part in this (fresh) process."""
    if part == "parse":
        import gc

        import orjson

        gc.disable()  # as the loader pauses it: a collection per thousands of new dicts is not parsing

        with open(path, "rb") as handle:
            lines = [line for line in handle.read().split(b"\n") if line.strip()]
        start = time.perf_counter()
        parsed = [orjson.loads(line) for line in lines]
        seconds = time.perf_counter() - start
        assert parsed
        return {"seconds": seconds}
    import agenttrace

    try:
        from agenttrace._replay.loader import check_events, collector_paused, load_recording
        from agenttrace._replay.matcher import Matcher
    except ImportError:  # a --baseline tree from before the packages of agenttrace/ had their present names
        from agenttrace._replay._loader import (  # type: ignore[import-not-found,no-redef]
            check_events,
            collector_paused,
            load_recording,
        )
        from agenttrace._replay._matcher import Matcher  # type: ignore[import-not-found,no-redef]

    if part == "load_events":
        start = time.perf_counter()
        agenttrace.load_events(path)
        return {"seconds": time.perf_counter() - start}
    if part == "events to exchanges":
        events = agenttrace.load_events(path)
        with collector_paused():
            start = time.perf_counter()
            check_events(events, "init(replay_events=...)", keep_calls=False)
            return {"seconds": time.perf_counter() - start}
    if part == "matcher":
        _, exchanges = load_recording(path, path)
        with collector_paused():
            start = time.perf_counter()
            Matcher(exchanges)
            return {"seconds": time.perf_counter() - start}
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    load_recording(path, path)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "seconds": seconds,
        "minor_faults": after.ru_minflt - before.ru_minflt,
        "system_s": after.ru_stime - before.ru_stime,
    }


def _spread(values: list[float], scale: float, digits: int) -> str:
    cells = [f"{v * scale:,.{digits}f}" for v in (statistics.median(values), min(values), max(values))]
    return f"{cells[0]} [{cells[1]}, {cells[2]}]"


def main(argv: list[str] | None = None) -> int:
    """Record, then time each part of loading the recording in fresh processes; print a table."""
    parser = argparse.ArgumentParser(prog="python -m tests.perf.load_parts", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10000, help="recorded calls (default 10,000)")
    parser.add_argument("--rounds", type=int, default=3, help="processes per part (default 3)")
    parser.add_argument("--baseline", help="a git commit (or a folder holding an importable agenttrace) to time too")
    parser.add_argument("--child", nargs=2, metavar=("PART", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        sys.stdout.write(json.dumps(_child(*args.child)) + "\n")
        return 0
    scratch = Path(tempfile.mkdtemp(prefix="agenttrace-load-parts-"))
    ctx = Context(plan=Plan(), scratch=scratch, pin=True)
    recording = scratch / "recording.jsonl"
    try:
        ctx.base_url = ctx.start_server()
        spec = {"scenario": "replay-setup", "contender": "agenttrace", "count": args.count, "output": str(recording)}
        made = ctx.worker(spec)
        ctx.stop_servers()
        if "skipped" in made:
            sys.stderr.write(f"cannot record: {made['skipped']}\n")
            return 1
        trees: dict[str, dict[str, str] | None] = {"": None}
        if args.baseline:
            baseline = _baseline_tree(args.baseline, scratch)
            trees[" (baseline)"] = {**os.environ, "PYTHONPATH": str(baseline)}
        found: dict[str, list[dict[str, float]]] = {part + tree: [] for part in PARTS for tree in trees}
        for _ in range(args.rounds):
            for part in PARTS:  # the parts (and trees) alternate, so a busy moment spreads over all of them
                for tree, env in trees.items():
                    done = subprocess.run(
                        [sys.executable, "-m", "tests.perf.load_parts", "--child", part, str(recording)],
                        cwd=REPO,
                        env=env,
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    found[part + tree].append(json.loads(done.stdout.splitlines()[-1]))
    finally:
        ctx.stop_servers()
        shutil.rmtree(scratch, ignore_errors=True)
    size = made.get("trace_bytes", 0) / 2**20
    out = [
        f"{args.count:,}-call recording ({size:.0f} MiB), {args.rounds} fresh processes per part, median [min, max]:",
        "",
        "| part | ms | per call µs |",
        "|---|---|---|",
    ]
    for part, rows in found.items():
        seconds = [r["seconds"] for r in rows]
        out.append(f"| {part} | {_spread(seconds, 1e3, 0)} | {_spread(seconds, 1e6 / args.count, 1)} |")
    file_rows: list[dict[str, Any]] = found["from the file"]
    faults = [r["minor_faults"] for r in file_rows]
    system = [r["system_s"] for r in file_rows]
    out += [
        "",
        f"- from the file: {statistics.median(faults):,.0f} minor page faults, "
        f"{statistics.median(system) * 1e3:,.0f} ms of system time (medians).",
    ]
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
