"""Instructions per call, counted by valgrind: the benchmark's ratios without the machine's noise.

Run from the repository root (needs ``valgrind``: ``apt-get install valgrind``)::

    python -m tests.perf.instructions                 # record (httpx, requests) and replay
    python -m tests.perf.instructions --only replay   # or --only record
    python -m tests.perf.instructions --baseline <commit>

Wall-clock figures on a shared 2-core machine swing by 2x from one minute to the next; the
number of instructions a process executes does not depend on what else the machine does. Each
contender runs the same worker as ``python -m tests.perf`` under ``valgrind --tool=callgrind``
(every thread of the client process counted; the loopback server runs outside valgrind), twice
with different numbers of calls: instructions per call = the difference / the difference in calls,
so start-up, imports and loading cancel out. ``PYTHONHASHSEED=0`` makes the runs repeatable.

Two counts per contender: the process's main thread (the agent's: what stands between its
request and its response) and all its threads (AgentTrace's trace writer and OpenTelemetry's
batch processor encode spans on threads of their own, while the agent waits on the socket).

Instructions are not time: they do not see cache misses, GIL hand-offs between threads or time
spent waiting on the socket. They do show how much work each contender adds per call, and the
two AgentTrace ablations (replay run's spans not written; no span at all) split AgentTrace's
replay cost into the SDK's span, the trace file, and the rest.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .harness import HERE, RESULT_MARK, WORKER, Context, Plan, _baseline_tree, _clean_env
from .worker import Skip, check_recorded

__all__ = ["main"]

_COLLECTED = re.compile(r"Collected : (\d+)")


def _count(ctx: Context, spec: dict[str, Any], env: dict[str, str] | None = None) -> tuple[int, int]:
    """Instructions executed by one worker process running ``spec``: (its main thread, all threads)."""
    ctx.runs += 1
    scratch = ctx.scratch / f"i{ctx.runs:04d}"
    scratch.mkdir(parents=True)
    spec = {"scratch": str(scratch), "base_url": ctx.base_url, "check_outside": True, **spec}
    full_env = {**_clean_env(), "AGENTTRACE_TRACE_DIR": str(scratch / "traces"), "AGENTTRACE_QUIET": "1"}
    full_env["PYTHONHASHSEED"] = "0"
    full_env.update(env or {})
    out = scratch / "callgrind.out"
    argv = ["valgrind", "--tool=callgrind", "--separate-threads=yes", f"--callgrind-out-file={out}"]
    done = subprocess.run(  # noqa: PLW1510 - checked below
        [*argv, sys.executable, str(WORKER), json.dumps(spec)],
        cwd=scratch,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    result = next(
        (json.loads(line[len(RESULT_MARK) :]) for line in done.stdout.splitlines() if line.startswith(RESULT_MARK)),
        None,
    )
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or result is None or "skipped" in result or found is None:
        reason = (result or {}).get("skipped") or done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{spec['contender']}: {reason}")
    if "trace_dir" in result:  # what the worker leaves to us (see AgentTraceContender.check)
        try:
            check_recorded(Path(result["trace_dir"]), spec.get("warmup", 0) + spec.get("calls", 1))
        except Skip as exc:
            raise RuntimeError(f"{spec['contender']}: {exc}") from None
    # One file per thread, callgrind.out-01 for the main thread (the agent's, here).
    main = sum(_summary(path) for path in scratch.glob("callgrind.out-01"))
    shutil.rmtree(scratch, ignore_errors=True)
    return main, int(found.group(1))


def _summary(path: Path) -> int:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    return 0


def _per_call(
    ctx: Context,
    pool: ThreadPoolExecutor,
    spec: dict[str, Any],
    key: str,
    low: int,
    high: int,
    env: dict[str, str] | None,
) -> Callable[[], tuple[float, float]]:
    a = pool.submit(_count, ctx, {**spec, key: low}, env)
    b = pool.submit(_count, ctx, {**spec, key: high}, env)

    def per_call() -> tuple[float, float]:
        (main_a, all_a), (main_b, all_b) = a.result(), b.result()
        return (main_b - main_a) / (high - low), (all_b - all_a) / (high - low)

    return per_call


def main(argv: list[str] | None = None) -> int:
    """Count instructions per call for each contender and print a Markdown table."""
    parser = argparse.ArgumentParser(prog="python -m tests.perf.instructions", description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("record", "replay"))
    parser.add_argument("--baseline", help="also count another commit's AgentTrace (git revision)")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        sys.stderr.write("valgrind is not installed (apt-get install valgrind)\n")
        return 1
    scratch = Path(tempfile.mkdtemp(prefix="agenttrace-instructions-"))
    ctx = Context(plan=Plan(), scratch=scratch, pin=False, logs=HERE / "results" / "logs")
    baseline_env = None
    trees = [HERE.parents[1] / name for name in ("agenttrace", "instrumentors", "exporters", "tests")]
    if args.baseline:
        ctx.baseline = _baseline_tree(args.baseline, scratch)
        baseline_env = {"PYTHONPATH": str(ctx.baseline)}
        trees.append(ctx.baseline)
    # Compile every module first: a process that finds no bytecode compiles the sources it
    # imports, and the counts would hold the compiler (fresh baseline trees have none).
    subprocess.run([sys.executable, "-m", "compileall", "-q", *map(str, trees)], check=False, capture_output=True)
    rows: list[
        tuple[str, str, Callable[[], tuple[float, float]], str]
    ] = []  # (scenario, contender, per-call thunk, floor key)
    try:
        ctx.base_url = ctx.start_server()
        with ThreadPoolExecutor(2) as pool:  # two valgrind processes at a time, one per core
            if args.only in (None, "record"):
                for lib, peers in (("httpx", ["otel-httpx"]), ("requests", ["otel-requests", "otel-urllib3"])):
                    names = ["none", *peers, "agenttrace"] + (["agenttrace-baseline"] if args.baseline else [])
                    for name in names:
                        spec = {"scenario": "record", "lib": lib, "contender": name, "warmup": 50}
                        env = baseline_env if name.endswith("-baseline") else None
                        rows.append((f"record {lib}", name, _per_call(ctx, pool, spec, "calls", 100, 400, env), "none"))
            if args.only in (None, "replay"):
                count = 1000
                recordings = {}
                for kind in ("mock", "agenttrace"):
                    out = scratch / f"recording-{kind}"
                    made = ctx.worker(
                        {"scenario": "replay-setup", "contender": kind, "count": count, "output": str(out)}
                    )
                    if "skipped" in made:
                        raise RuntimeError(f"cannot record for {kind}: {made['skipped']}")
                    recordings[kind] = made["path"]
                contenders: list[tuple[str, str, str | None, dict[str, str] | None]] = [
                    ("httpx.MockTransport (floor)", "mock", None, None),
                    ("floor + one bare SDK span per call", "mock-span", None, None),
                    ("floor + OpenTelemetry's httpx instrumentation", "mock-otel", None, None),
                    ("AgentTrace replay", "agenttrace", None, None),
                    ("AgentTrace replay, from the file", "agenttrace-file", None, None),
                    ("AgentTrace replay, spans not written (no-file)", "agenttrace", "no-file", None),
                    ("AgentTrace replay, no span at all (no-span)", "agenttrace", "no-span", None),
                ]
                if args.baseline:
                    contenders.append(("AgentTrace replay (baseline tree)", "agenttrace-baseline", None, baseline_env))
                for label, kind, ablate, env in contenders:
                    source = "mock" if kind.startswith("mock") else "agenttrace"
                    spec = {
                        "scenario": "replay",
                        "contender": kind,
                        "count": count,
                        "recording": recordings[source],
                        "warmup": 10,
                    }
                    if ablate:
                        spec["ablate"] = ablate
                    rows.append(
                        (
                            "replay, 1,000 recorded",
                            label,
                            _per_call(ctx, pool, spec, "sample", 100, 500, env),
                            "httpx.MockTransport (floor)",
                        )
                    )
            table = _table([(scenario, name, thunk(), floor) for scenario, name, thunk, floor in rows])
    finally:
        ctx.stop_servers()
        shutil.rmtree(scratch, ignore_errors=True)
    sys.stdout.write(table)
    out = HERE / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "instructions.md").write_text(table)
    return 0


def _table(rows: list[tuple[str, str, tuple[float, float], str]]) -> str:
    floors = {(scenario, name): value for scenario, name, value, _ in rows}
    lines = [
        "| scenario | contender | agent's thread, per call | added | x floor "
        "| all threads, per call | added | x floor |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for scenario, name, value, floor_name in rows:
        floor = floors.get((scenario, floor_name))
        cells = [scenario, name]
        for part in (0, 1):
            cells.append(f"{value[part] / 1000:,.0f} k")
            if floor is None or name == floor_name:
                cells += ["—", "1.00" if name == floor_name else "—"]
            else:
                cells += [f"{(value[part] - floor[part]) / 1000:,.0f} k", f"{value[part] / floor[part]:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
