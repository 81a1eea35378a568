"""The benchmark harness of issue 6: scenarios, contenders, rounds, targets.

Run from the repository root::

    python -m tests.perf            # full run, about 9 minutes on 2 cores
    python -m tests.perf --quick    # fewer rounds and calls, about 2-3 minutes
    python -m tests.perf --scenario record --scenario import

Each contender runs in its own fresh interpreter (``worker.py``), one after another, and the
contenders of a scenario are interleaved round by round (the order rotates each round), so a
slow minute on a shared machine touches every contender of that round alike. Figures are
medians over rounds; comparisons are paired per round (see ``report.py``). The Markdown goes
to ``tests/perf/results/latest.md`` (and the raw figures to ``latest.json``) and is printed.

The harness installs nothing: what it needs is the ``bench`` extra
(``pip install -e '.[bench]'``); a contender whose package or AgentTrace layer is missing is
reported as skipped with the reason.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from .listing import scenario_listing
from .report import Paired, Rounds, Section, Target, fmt, fmt_paired, paired, skipped_row
from .server_ingest import scenario_ingest

__all__ = ["main"]

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
WORKER = HERE / "worker.py"
SERVER = HERE / "server.py"
RESULT_MARK = "PERF-RESULT "
SCENARIO_NAMES = ("record", "stream", "replay", "pytest", "export", "memory", "import", "ingest")
OPT_IN_SCENARIOS = ("listing",)  # run only when named with --scenario: each takes minutes of set-up

Result = dict[str, Any]


@dataclass(frozen=True)
class Plan:
    """How much of each scenario to run; ``--quick`` trades rounds and calls for time."""

    record_rounds: int = 11
    record_warmup: int = 200
    record_calls: int = 1000
    stream_rounds: int = 7
    stream_calls: int = 5
    replay_rounds: int = 5
    replay_counts: tuple[int, ...] = (100, 1000, 10000)
    replay_sample: int = 200
    replay_vcr_sample_10k: int = 30
    pytest_sessions: int = 3
    pytest_tests: int = 5
    pytest_calls: int = 1000
    export_rounds: int = 7
    export_calls: int = 200
    memory_rounds: int = 3
    memory_calls: int = 500
    import_rounds: int = 30


QUICK = Plan(
    record_rounds=3,
    record_warmup=100,
    record_calls=300,
    stream_rounds=3,
    stream_calls=3,
    replay_rounds=2,
    replay_sample=100,
    replay_vcr_sample_10k=12,
    pytest_sessions=1,
    pytest_tests=3,
    export_rounds=3,
    memory_rounds=1,
    import_rounds=10,
)

SSE_CHUNKS = 20
SSE_GAP_MS = 20
BACKEND_DELAY_S = 2.0


@dataclass
class Context:
    """What every scenario shares: the servers, the scratch folder, the plan, the options."""

    plan: Plan
    scratch: Path
    pin: bool
    base_url: str = ""
    backend_url: str = ""
    servers: list[subprocess.Popen[str]] = field(default_factory=list)
    logs: Path = HERE / "results" / "logs"
    runs: int = 0
    load_start: str = ""
    keep: bool = False  # keep each worker's scratch folder (trace files, cassettes)
    baseline: Path | None = None  # another AgentTrace tree, measured as "agenttrace-baseline"
    distinct_bodies: bool = False  # replay: every call sends a request body of its own

    # -- processes ----------------------------------------------------------------------------

    def _cpus(self) -> tuple[set[int], set[int]] | None:
        """(client CPUs, server CPUs) when pinning applies: the server gets a core of its own."""
        if not self.pin or not hasattr(os, "sched_getaffinity"):
            return None
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return None
        return set(cpus[:-1]), {cpus[-1]}

    def start_server(self, trace_delay: float = 0.0) -> str:
        """Start one loopback server process; return its base URL."""
        cpus = self._cpus()
        proc = subprocess.Popen(
            [sys.executable, str(SERVER), "--trace-delay", str(trace_delay)],
            stdout=subprocess.PIPE,
            text=True,
            env=_clean_env(),
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus[1])) if cpus else None,  # noqa: PLW1509 - only sets CPU affinity
        )
        self.servers.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"benchmark server did not start: {line!r}")
        return f"http://127.0.0.1:{int(line.split()[1])}"

    def stop_servers(self) -> None:
        for proc in self.servers:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.servers.clear()

    def stats(self, base_url: str) -> dict[str, int]:
        """Requests served so far by the server at ``base_url``, per route."""
        with urllib.request.urlopen(base_url + "/stats", timeout=10) as response:
            data: dict[str, int] = json.loads(response.read())
        return data

    def worker(self, spec: dict[str, Any], env: dict[str, str] | None = None, timeout: float = 900) -> Result:
        """Run one contender in a fresh interpreter; its result, with ``wall_s`` of the process."""
        self.runs += 1
        scratch = self.scratch / f"w{self.runs:04d}"
        scratch.mkdir(parents=True)
        spec = {"scratch": str(scratch), "base_url": self.base_url, **spec}
        if str(spec["contender"]).endswith("-baseline") and self.baseline is not None:
            env = {**(env or {}), "PYTHONPATH": str(self.baseline)}
        cpus = self._cpus()
        try:
            return self._spawn([sys.executable, str(WORKER), json.dumps(spec)], scratch, env, timeout, spec, cpus)
        finally:
            if not self.keep:
                # The memory scenario leaves 500 MiB of trace per run: free it as we go.
                shutil.rmtree(scratch, ignore_errors=True)

    def python_c(self, code: str, timeout: float = 120) -> Result:
        """Run ``python -c code`` in a fresh interpreter and parse its PERF-RESULT line."""
        self.runs += 1
        scratch = self.scratch / f"w{self.runs:04d}"
        scratch.mkdir(parents=True)
        return self._spawn([sys.executable, "-c", code], scratch, None, timeout, {"code": code}, self._cpus())

    def _spawn(
        self,
        argv: list[str],
        cwd: Path,
        env: dict[str, str] | None,
        timeout: float,
        spec: dict[str, Any],
        cpus: tuple[set[int], set[int]] | None,
    ) -> Result:
        full_env = _clean_env()
        # The scratch folder is also the trace folder, so a run's files never land in the repo.
        full_env["AGENTTRACE_TRACE_DIR"] = str(cwd / "traces")
        full_env["AGENTTRACE_QUIET"] = "1"
        full_env.update(env or {})
        start = time.perf_counter()
        try:
            proc = subprocess.run(  # noqa: PLW1510 - the return code is read below
                argv,
                cwd=cwd,
                env=full_env,
                capture_output=True,
                text=True,
                timeout=timeout,
                preexec_fn=(lambda: os.sched_setaffinity(0, cpus[0])) if cpus else None,
            )
        except subprocess.TimeoutExpired:
            return {"skipped": f"timed out after {timeout:.0f} s", "wall_s": timeout}
        wall = time.perf_counter() - start
        result: Result | None = None
        for line in proc.stdout.splitlines():
            if line.startswith(RESULT_MARK):
                result = json.loads(line[len(RESULT_MARK) :])
        if result is None or proc.returncode != 0 or "skipped" in result:
            self.logs.mkdir(parents=True, exist_ok=True)
            log = self.logs / f"{cwd.name}.log"
            log.write_text(
                f"spec: {json.dumps(spec)}\nexit: {proc.returncode}\n"
                f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
            )
        if result is None:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            result = {"skipped": f"worker exited {proc.returncode}: {tail[:200]}"}
        if "profile" in spec and proc.stderr:
            result["stderr"] = proc.stderr[-2000:]
        result["wall_s"] = wall
        return result


def _clean_env() -> dict[str, str]:
    # A developer's own AGENTTRACE_* or OTEL_* settings must not leak into a contender.
    # PYTHONDONTWRITEBYTECODE goes too: pip writes bytecode when it installs a wheel, so a user
    # never pays for compiling AgentTrace's modules at import; measuring with it set would
    # charge the editable checkout's compile time to `import agenttrace`.
    dropped = ("AGENTTRACE_", "OTEL_", "PERF_", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    if "PERF_OTEL_PROCESSOR" in os.environ:
        env["PERF_OTEL_PROCESSOR"] = os.environ["PERF_OTEL_PROCESSOR"]
    return env


def interleave(
    ctx: Context,
    contenders: Mapping[str, Callable[[], Result]],
    rounds: int,
    label: str,
) -> dict[str, Rounds]:
    """Run every contender once per round, rotating the order.

    A contender that reports a reason to skip (a peer not installed, a layer not built) is
    dropped for the remaining rounds. One that crashed is tried again next round: the tree is
    edited while the harness runs, and one bad moment must not erase a contender. If it never
    succeeds it is reported as skipped with the last reason; rounds it lost are counted.
    """
    out = {name: Rounds(name) for name in contenders}
    names = list(contenders)
    for index in range(rounds):
        shift = index % len(names)
        order = names[shift:] + names[:shift]
        for name in order:
            rounds_of = out[name]
            if rounds_of.skipped is not None:
                rounds_of.by_round.append(None)
                continue
            result = contenders[name]()
            reason = result.get("skipped")
            if reason is None:
                rounds_of.by_round.append(result)
                continue
            rounds_of.by_round.append(None)
            if str(reason).startswith(_CRASHES):
                rounds_of.failures.append(str(reason))
            else:
                rounds_of.skipped = str(reason)
        _progress(f"{label}: round {index + 1}/{rounds} done")
    for rounds_of in out.values():
        if rounds_of.skipped is None and all(r is None for r in rounds_of.by_round):
            rounds_of.skipped = rounds_of.failures[-1] if rounds_of.failures else "never ran"
    return out


_CRASHES = ("failed:", "worker exited", "timed out")


def failure_notes(results: dict[str, Rounds]) -> list[str]:
    """One note per contender that lost some (not all) rounds to a crash."""
    return [
        f"{r.name}: {len(r.failures)} of {len(r.by_round)} rounds failed and are left out ({r.failures[-1]})"
        for r in results.values()
        if r.failures and r.skipped is None
    ]


def _job(run: Callable[[Any], Result], argument: Any) -> Callable[[], Result]:
    """``run(argument)`` as a job for :func:`interleave` (binds now, unlike a lambda in a loop)."""
    return functools.partial(run, argument)


def _progress(text: str) -> None:
    sys.stderr.write(f"[perf {time.strftime('%H:%M:%S')}] {text}\n")
    sys.stderr.flush()


def _added(key: str) -> Callable[[Result, Result | None], float | None]:
    def fn(a: Result, base: Result | None) -> float | None:
        return None if base is None else float(a[key]) - float(base[key])

    return fn


def _best_round_ratio(key: str, a: Rounds, b: Rounds, baseline: Rounds) -> float | None:
    """(min a - min baseline) / (min b - min baseline) over rounds: a cross-check that noise cannot inflate."""
    low = [min(r.values(key)) if r.values(key) else None for r in (a, b, baseline)]
    if low[0] is None or low[1] is None or low[2] is None or low[1] <= low[2]:
        return None
    return (low[0] - low[2]) / (low[1] - low[2])


def _agreed(target: Target, paired_ratio: Paired | None, best: float | None) -> str:
    """The verdict when both estimators give it; otherwise say the machine was too noisy to call."""
    first, second = target.verdict(paired_ratio), target.verdict(best)
    if best is not None and best < 0:
        # AgentTrace's fastest round beat the fastest bare client: the noise exceeds the cost.
        return f"unclear (too noisy): paired {first.strip('*')}, best-round negative"
    if best is None or first == second:
        return first
    return f"unclear (too noisy): paired {first.strip('*')}, best-round {second.strip('*')}"


def _ratio_of_added(key: str, baseline: Rounds) -> Callable[[Rounds, Rounds], Paired | None]:
    """Per round: (a - none) / (b - none), the ratio of two contenders' added costs."""

    def fn(a: Rounds, b: Rounds) -> Paired | None:
        values: list[float] = []
        for index, left in enumerate(a.by_round):
            right = b.by_round[index] if index < len(b.by_round) else None
            base = baseline.by_round[index] if index < len(baseline.by_round) else None
            if left is None or right is None or base is None:
                continue
            denominator = float(right[key]) - float(base[key])
            if denominator <= 0:
                continue  # the other contender was not measurably slower than none this round
            values.append((float(left[key]) - float(base[key])) / denominator)
        if not values:
            return None
        return Paired(statistics.median(values), min(values), max(values), len(values))

    return fn


# ---------------------------------------------------------------------------------------------
# 1. Record cost per call


def scenario_record(ctx: Context) -> Section:
    plan = ctx.plan
    section = Section(
        "1. Record cost per call",
        f"Sequential POSTs to the loopback server, 1 KB JSON request, 2 KB JSON response, one keep-alive "
        f"connection; {plan.record_calls} timed calls after {plan.record_warmup} warm-up calls per process, "
        f"{plan.record_rounds} rounds. *added* = contender minus `none` in the same round (median of rounds, "
        "range in brackets); the targets compare the medians per call, as issue 6 states them, and the means "
        "are shown beside them because a periodic stall on the caller's thread moves the mean, not the median. "
        "OTel contenders: SDK `TracerProvider` + `BatchSpanProcessor` to an exporter that discards "
        "(no bodies captured). vcrpy: a new cassette, `record_mode=all`; *teardown* is the cassette "
        "save. AgentTrace: every call inside one `@agenttrace.run`, local trace files (the default); "
        "*teardown* is the end of the run (file commit).",
    )
    ours = ["agenttrace", "agenttrace-baseline"] if ctx.baseline else ["agenttrace"]
    libs = {
        "httpx": ["none", "otel-httpx", "vcrpy", *ours],
        "requests": ["none", "otel-requests", "otel-urllib3", "vcrpy", *ours],
    }
    reference = {
        ("httpx", "none"): "250 µs",
        ("httpx", "otel-httpx"): "+136 µs",
        ("httpx", "vcrpy"): "+137 µs",
        ("requests", "none"): "366 µs",
        ("requests", "otel-urllib3"): "+122 µs",
        ("requests", "vcrpy"): "+467 µs",
    }
    targets: list[list[str]] = []
    for lib, names in libs.items():
        specs = {
            name: _job(
                ctx.worker,
                {
                    "scenario": "record",
                    "lib": lib,
                    "contender": name,
                    "warmup": plan.record_warmup,
                    "calls": plan.record_calls,
                },
            )
            for name in names
        }
        results = interleave(ctx, specs, plan.record_rounds, f"record {lib}")
        section.data[lib] = {n: r.__dict__ for n, r in results.items()}
        section.notes.extend(failure_notes(results))
        none = results["none"]
        header = [
            "contender",
            "µs/call",
            "added µs/call",
            "issue's figure",
            "mean µs/call",
            "added mean",
            "teardown",
            "captured",
        ]
        rows: list[list[str]] = []
        for name, rounds in results.items():
            if rounds.skipped is not None:
                rows.append(skipped_row(rounds, len(header)))
                continue
            added = paired(rounds, none, _added("us_per_call")) if name != "none" else None
            # The mean shows what the median hides: a stall every few hundred calls (a batch
            # written out on the caller's thread) that the total run time still pays.
            added_mean = paired(rounds, none, _added("mean_us")) if name != "none" else None
            teardown = rounds.median("teardown_s")
            captured = {
                "none": "—",
                "vcrpy": "full payloads (buffered)",
                "agenttrace": f"{rounds.first('calls_with_response_payload')} responses in trace file",
                "agenttrace-baseline": f"{rounds.first('calls_with_response_payload')} responses in trace file",
            }.get(name, "spans, no bodies")
            rows.append(
                [
                    name,
                    fmt(rounds.median("us_per_call")),
                    fmt_paired(added, 0) if added else "—",
                    reference.get((lib, name), "—"),
                    fmt(rounds.median("mean_us")),
                    fmt_paired(added_mean, 0) if added_mean else "—",
                    fmt(teardown * 1000, 1, " ms") if teardown else "—",
                    captured,
                ]
            )
        section.table([f"{lib}: {h}" if i == 0 else h for i, h in enumerate(header)], rows)
        agent = results["agenttrace"]
        if "agenttrace-baseline" in results and not agent.skipped and not results["agenttrace-baseline"].skipped:
            before = results["agenttrace-baseline"]
            change = _ratio_of_added("us_per_call", none)(agent, before)
            best = _best_round_ratio("us_per_call", agent, before, none)
            targets.append(
                [
                    f"{lib}: AgentTrace added, now / baseline",
                    fmt_paired(change),
                    "—",
                    fmt(best, 2),
                    "—",
                    "(before/after)",
                ]
            )
        for other in [n for n in names if n.startswith("otel-")] + ["vcrpy"]:
            limit = 0.2 if other == "vcrpy" else 0.5  # issue 21's targets
            if other == "vcrpy" and lib != "requests":
                continue
            target = Target(f"≤ {limit}", limit)
            if agent.skipped or results[other].skipped:
                reason = agent.skipped or results[other].skipped
                targets.append(
                    [f"{lib}: AgentTrace added / {other} added", f"skipped: {reason}", "—", target.text, "—"]
                )
                continue
            ratio = _ratio_of_added("us_per_call", none)(agent, results[other])
            # Cross-check: the ratio of the two median added costs, less sensitive to a round
            # where the peer's added cost was close to zero (a per-round ratio then explodes).
            mine = paired(agent, none, _added("us_per_call"))
            theirs = paired(results[other], none, _added("us_per_call"))
            of_medians = mine.median / theirs.median if mine and theirs and theirs.median > 0 else None
            best = _best_round_ratio("us_per_call", agent, results[other], none)
            targets.append(
                [
                    f"{lib}: AgentTrace added / {other} added",
                    fmt_paired(ratio),
                    fmt(of_medians, 2),
                    fmt(best, 2),
                    target.text,
                    _agreed(target, ratio, best),
                ]
            )
    section.table(
        [
            "target",
            "per-round ratio: median [min, max]",
            "ratio of median added",
            "best-round ratio",
            "target",
            "result",
        ],
        targets,
    )
    section.notes.append(
        "*best-round ratio*: (fastest round of AgentTrace - fastest of `none`) / (fastest of the peer - fastest "
        "of `none`). Load from other processes only ever adds time, so each contender's fastest round is its "
        "least disturbed one. The result says pass or miss only when this and the paired median agree."
    )
    return section


# ---------------------------------------------------------------------------------------------
# 2. Streams


def scenario_stream(ctx: Context) -> Section:
    plan = ctx.plan
    section = Section(
        "2. Stream recording",
        f"httpx `client.stream()` of an SSE response of {SSE_CHUNKS} events sent {SSE_GAP_MS} ms apart (first at "
        f"once); time from the request to the first and to the last chunk; {plan.stream_calls} timed streams per "
        f"process after one warm-up, {plan.stream_rounds} rounds; *added* paired per round against `none`.",
    )
    names = ["none", "otel-httpx", "vcrpy", "agenttrace"] + (["agenttrace-baseline"] if ctx.baseline else [])
    specs = {
        name: _job(
            ctx.worker,
            {
                "scenario": "stream",
                "contender": name,
                "warmup": 1,
                "calls": plan.stream_calls,
                "chunks": SSE_CHUNKS,
                "gap_ms": SSE_GAP_MS,
            },
        )
        for name in names
    }
    results = interleave(ctx, specs, plan.stream_rounds, "stream")
    section.data = {n: r.__dict__ for n, r in results.items()}
    section.notes.extend(failure_notes(results))
    none = results["none"]
    header = ["contender", "first chunk ms", "added to first ms", "last chunk ms", "added to last ms", "target (first)"]
    rows: list[list[str]] = []
    target = Target("< 1 ms", 1.0, strict=True)
    for name, rounds in results.items():
        if rounds.skipped is not None:
            rows.append(skipped_row(rounds, len(header)))
            continue
        first = paired(rounds, none, _added("ttfc_ms")) if name != "none" else None
        last = paired(rounds, none, _added("ttlc_ms")) if name != "none" else None
        verdict = "—"
        if name == "agenttrace":
            verdict = f"{target.text}: {target.verdict(first)}"
        elif name == "vcrpy":
            verdict = "issue's figure: +380 ms"
        rows.append(
            [
                name,
                fmt(rounds.median("ttfc_ms"), 2),
                fmt_paired(first, 2),
                fmt(rounds.median("ttlc_ms"), 1),
                fmt_paired(last, 2),
                verdict,
            ]
        )
    section.table(header, rows)
    before = results.get("agenttrace-baseline")
    if before is not None and not before.skipped and not results["agenttrace"].skipped:
        change = paired(results["agenttrace"], before, _added("ttfc_ms"))
        section.notes.append(
            "AgentTrace's first chunk, this tree minus the baseline tree, paired per round: "
            f"{fmt_paired(change, 2)} ms (negative: this tree is faster)."
        )
    if results["agenttrace"].skipped:
        reason = results["agenttrace"].skipped
        section.notes.append(f"AgentTrace target (< 1 ms added to first chunk): not measured ({reason}).")
    return section


# ---------------------------------------------------------------------------------------------
# 3. Replay


def scenario_replay(ctx: Context) -> Section:
    plan = ctx.plan
    section = Section(
        "3. Replay cost per call",
        "A recording of N distinct calls (`POST /json?i=k`, 1 KB request, 2 KB response) served back to httpx; "
        + (
            "every call sends a request body of its own (the id in the message, `--distinct-bodies`), as an "
            "agent's calls to one endpoint do; "
            if ctx.distinct_bodies
            else "every call sends the same request body; "
        )
        + f"the median over {plan.replay_sample} calls spread evenly over the recording (fewer for vcrpy at 10,000, "
        f"see notes), after 10 warm-up calls, {plan.replay_rounds} rounds. *load* is everything before the first "
        "call can be served: `json.load` + dict for the floor, `use_cassette().__enter__` for vcrpy, "
        '`load_events()` + `init(mode="replay")` + run start for AgentTrace, `init(mode="replay", '
        "replay_events_file=...)` + run start for AgentTrace from the file (the same recording, its calls built "
        "straight from the spans). *floor + OpenTelemetry's httpx instrumentation* serves the floor's recording "
        "through OpenTelemetry's own httpx transport wrapper (`SyncOpenTelemetryTransport` around the same "
        "MockTransport; SDK provider, batch processor, an exporter that discards; no bodies): what OpenTelemetry's "
        "own tracing adds to each served call; *floor + one bare SDK span* wraps it in a minimal transport that "
        "opens one SDK span per call with the method, URL and status and nothing else: the least that tracing each "
        "served call can cost. Every served body is checked for the right id, and the server's request "
        "counter must not move (no real I/O).",
    )
    # No baseline-tree variant of "agenttrace-file": an older tree may not build exchanges from the file.
    kinds = ["mock", "mock-span", "mock-otel", "vcrpy", "agenttrace", "agenttrace-file", "agenttrace-untraced"] + (
        ["agenttrace-baseline"] if ctx.baseline else []
    )
    recordings: dict[tuple[str, int], str] = {}
    setup_skips: dict[str, str] = {}
    for kind in kinds:
        if kind in _REPLAY_SOURCE:
            continue  # replays another contender's recording (mapped below)
        for count in plan.replay_counts:
            if kind in setup_skips:
                continue
            suffix = "yaml" if kind == "vcrpy" else "jsonl" if kind.startswith("agenttrace") else "json"
            out = ctx.scratch / "recordings" / f"{kind}-{count}.{suffix}"
            spec = {
                "scenario": "replay-setup",
                "contender": kind,
                "count": count,
                "output": str(out),
                "distinct_bodies": ctx.distinct_bodies,
            }
            result = ctx.worker(spec)
            if str(result.get("skipped", "")).startswith(_CRASHES):
                result = ctx.worker(spec)  # once more: the tree may have been mid-edit
            if "skipped" in result:
                setup_skips[kind] = f"recording failed: {result['skipped']}"
            else:
                recordings[(kind, count)] = str(out)
                section.data.setdefault("setup", {})[f"{kind}-{count}"] = result
        _progress(f"replay: recordings of {kind} ready")
    for kind, source in _REPLAY_SOURCE.items():
        if kind not in kinds:
            continue
        if source in setup_skips:
            setup_skips[kind] = setup_skips[source]
        for count in plan.replay_counts:
            if (source, count) in recordings:
                recordings[(kind, count)] = recordings[(source, count)]
    header = ["N", "contender", "µs/call", "x floor (paired)", "load", "target"]
    rows: list[list[str]] = []
    splits: list[str] = []
    traced = Target("≤ 1.1x (floor + one bare SDK span)", 1.1)
    untraced = Target("≤ 1.2x floor", 1.2)
    load_target = Target("< 0.5 s", 0.5, strict=True)
    held_target = Target("≤ 2x the file", 2.0)
    for count in plan.replay_counts:
        specs: dict[str, Callable[[], Result]] = {}
        for kind in kinds:
            sample = min(plan.replay_sample, int(count * 0.8))
            if kind == "vcrpy" and count >= 10000:
                sample = plan.replay_vcr_sample_10k  # vcrpy: a full sample takes minutes
            if kind in setup_skips:
                specs[kind] = functools.partial(dict, skipped=setup_skips[kind])
                continue
            spec = {
                "scenario": "replay",
                "contender": kind,
                "count": count,
                "recording": recordings[(kind, count)],
                "sample": sample,
                "warmup": 10,
                "distinct_bodies": ctx.distinct_bodies,
            }
            specs[kind] = functools.partial(_no_io, ctx, spec)
        results = interleave(ctx, specs, plan.replay_rounds, f"replay N={count}")
        section.data[str(count)] = {n: r.__dict__ for n, r in results.items()}
        section.notes.extend(f"N={count:,}: {note}" for note in failure_notes(results))
        floor = results["mock"]
        for kind, rounds in results.items():
            label = _REPLAY_LABELS[kind]
            if rounds.skipped is not None:
                rows.append([f"{count:,}", label, f"skipped: {rounds.skipped}", "—", "—", "—"])
                continue
            ratio = paired(rounds, floor, _ratio("us_per_call"))
            load = rounds.median("load_s")
            verdict = "—"
            if kind in ("agenttrace", "agenttrace-file"):
                spanned = results.get("mock-span")
                over_span = None if spanned is None else paired(rounds, spanned, _ratio("us_per_call"))
                verdict = f"{fmt_paired(over_span, 2)} {traced.text}: {traced.verdict(over_span)}"
                if count >= 10000:
                    verdict += f"; load {load_target.text}: {load_target.verdict(load)}"
                    verdict += _held(rounds, held_target)
            elif kind == "agenttrace-untraced":
                verdict = f"{untraced.text}: {untraced.verdict(ratio)}"
                if count >= 10000:
                    verdict += _held(rounds, held_target)
            elif kind == "vcrpy":
                verdict = {100: "issue: 1.6 ms", 1000: "issue: 11 ms", 10000: "issue: 116 ms, 1,350x"}.get(count, "—")
            elif kind == "mock":
                verdict = "issue: 85 µs"
            elif kind in ("mock-otel", "mock-span"):
                verdict = "— (a span per served call)"
            rows.append(
                [
                    f"{count:,}",
                    label,
                    fmt(rounds.median("us_per_call")),
                    fmt_paired(ratio, 2) if kind != "mock" else "1",
                    _seconds(load),
                    verdict,
                ]
            )
            if count == max(plan.replay_counts) and kind in ("agenttrace", "agenttrace-file"):
                split = _load_split(rounds, kind)
                if split:
                    splits.append(f"{label}: {_seconds(load)} = {split}")
    section.table(header, rows)
    if splits:
        section.notes.append(
            f"Where the load goes at N={max(plan.replay_counts):,} (medians over rounds, so the parts need not add up "
            "exactly): " + "; ".join(splits) + ". The import and the first run's start (instrumentors, the "
            "distribution list) are paid once per process whatever the recording's size."
        )
    section.notes.append(
        "vcrpy's cassettes are built from one interaction vcrpy records, cloned per id and written by vcrpy's own "
        "serializer: recording them call by call is quadratic in vcrpy (each new request is matched against all "
        "recorded ones; 10,000 calls took 685 s to record on this machine)."
    )
    return section


def _held(rounds: Rounds, target: Target) -> str:
    """``; memory held X MiB = Y x the file ...``: the resident set the loaded recording added, by the file's size."""
    held, size = rounds.median("held_bytes"), rounds.median("file_bytes")
    if held is None or not size:
        return ""  # a tree whose worker does not measure it
    ratio = float(held) / float(size)
    return (
        f"; memory held {float(held) / 2**20:,.0f} MiB = {ratio:.2f}x the {float(size) / 2**20:,.0f} MiB file "
        f"({target.text}): {target.verdict(ratio)}"
    )


def _load_split(rounds: Rounds, kind: str) -> str:
    """``import a + load_events() b + init() c + first run's start d`` of an AgentTrace replay's load."""
    parts = {key: rounds.median(key) for key in ("import_s", "load_events_s", "init_s", "run_start_s")}
    if any(value is None for value in parts.values()):
        return ""  # a tree whose worker did not report the parts
    imported, loading, init, start = (
        float(parts[k] or 0) for k in ("import_s", "load_events_s", "init_s", "run_start_s")
    )
    if kind == "agenttrace-file":  # its init_s runs from the same start, so it holds the import
        pieces = [("import of agenttrace", imported), ("init()", init - imported)]
    else:  # load_events_s holds the import
        pieces = [("import of agenttrace", imported), ("load_events()", loading - imported), ("init()", init)]
    pieces.append(("first run's start", start))
    return " + ".join(f"{name} {value:.2f} s" for name, value in pieces)


_REPLAY_LABELS = {
    "mock": "httpx.MockTransport (floor)",
    "mock-span": "floor + one bare SDK span per call",
    "mock-otel": "floor + OpenTelemetry's httpx instrumentation (a span per call, no bodies)",
    "vcrpy": "vcrpy playback",
    "agenttrace": "AgentTrace replay",
    "agenttrace-file": "AgentTrace replay, from the file (`replay_events_file`)",
    "agenttrace-untraced": "AgentTrace replay, untraced (its own trace not written: the pytest plugin's default)",
    "agenttrace-baseline": "AgentTrace replay (baseline tree)",
}

# Contenders that replay another contender's recording instead of making their own.
_REPLAY_SOURCE = {
    "agenttrace-file": "agenttrace",
    "agenttrace-untraced": "agenttrace",
    "mock-otel": "mock",
    "mock-span": "mock",
}


def _ratio(key: str) -> Callable[[Result, Result | None], float | None]:
    def fn(a: Result, base: Result | None) -> float | None:
        return None if base is None else float(a[key]) / float(base[key])

    return fn


def _no_io(ctx: Context, spec: dict[str, Any]) -> Result:
    """A replay worker, failed as 'skipped' if the loopback server saw any request meanwhile."""
    before = ctx.stats(ctx.base_url).get("json", 0)
    result = ctx.worker(spec)
    after = ctx.stats(ctx.base_url).get("json", 0)
    if "skipped" not in result and after != before:
        return {"skipped": f"{after - before} calls reached the real server during replay"}
    return result


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value * 1000:,.1f} ms" if value < 1 else f"{value:,.2f} s"


# ---------------------------------------------------------------------------------------------
# 4. Export


def scenario_export(ctx: Context) -> Section:
    plan = ctx.plan
    section = Section(
        "4. Export with a slow backend",
        f"An agent process making {plan.export_calls} httpx calls inside one `@agenttrace.run`. *local*: "
        "the default (no API key, local trace files). *backend*: `AGENTTRACE_API_KEY=at_test_x`, "
        f"`AGENTTRACE_API_URL` = a loopback OTLP receiver that answers after {BACKEND_DELAY_S:.0f} s. *process* "
        "is the wall time of the whole `python agent.py` (start to exit, what the user waits for), *run* "
        f"the decorated function; {plan.export_rounds} rounds, ratio paired per round.",
    )
    if not ctx.backend_url:
        ctx.backend_url = ctx.start_server(trace_delay=BACKEND_DELAY_S)
    received: dict[int, int] = {}

    def backend() -> Result:
        before = ctx.stats(ctx.backend_url).get("traces", 0)
        # The spool outlives the worker's scratch folder: exit may hand the spans to a background
        # uploader that sends them after the process is gone (docs/export.md, "Process exit").
        spool = ctx.scratch / f"spool-{len(received)}"
        result = ctx.worker(
            {"scenario": "export", "contender": "backend", "calls": plan.export_calls},
            env={
                "AGENTTRACE_API_KEY": "at_test_x",
                "AGENTTRACE_API_URL": ctx.backend_url,
                "AGENTTRACE_SPOOL_DIR": str(spool),
            },
        )
        ended = time.perf_counter()
        uploads = 0
        while time.perf_counter() - ended < 20:  # an upload is counted when its body arrives
            uploads = ctx.stats(ctx.backend_url).get("traces", 0) - before
            if uploads:
                break
            time.sleep(0.05)
        if uploads:
            result["delivered_after_exit_s"] = time.perf_counter() - ended
        time.sleep(0.5)  # a second upload of the same spans (a duplicate) would arrive by now
        result["uploads"] = ctx.stats(ctx.backend_url).get("traces", 0) - before
        received[len(received)] = int(result["uploads"])
        if "skipped" not in result and result["uploads"] == 0:
            return {"skipped": "no upload reached the backend within 20 s of the process's exit"}
        return result

    specs = {
        "local": _job(ctx.worker, {"scenario": "export", "contender": "local", "calls": plan.export_calls}),
        "backend": backend,
    }
    results = interleave(ctx, specs, plan.export_rounds, "export")
    section.data = {n: r.__dict__ for n, r in results.items()}
    section.notes.extend(failure_notes(results))
    local = results["local"]
    target = Target("≤ +50 ms over local files", 0.05)  # issue 21: whole process, run start to exit
    header = [
        "contender",
        "process s",
        "process / local",
        "run s",
        "run / local",
        "uploads received",
        "first upload after exit s",
        "target",
    ]
    rows: list[list[str]] = []
    for name, rounds in results.items():
        if rounds.skipped is not None:
            rows.append(skipped_row(rounds, len(header)))
            continue
        process = paired(rounds, local, _ratio("wall_s"))
        run = paired(rounds, local, _ratio("run_s"))
        verdict = "—"
        if name == "backend":
            added = paired(rounds, local, _added("wall_s"))
            verdict = f"process +{fmt_paired(added, 3)} s, {target.text}: {target.verdict(added)}"
        rows.append(
            [
                name,
                fmt(rounds.median("wall_s"), 3),
                fmt_paired(process, 3) if name != "local" else "1",
                fmt(rounds.median("run_s"), 3),
                fmt_paired(run, 3) if name != "local" else "1",
                fmt(rounds.median("uploads")) if name == "backend" else "—",
                fmt(rounds.median("delivered_after_exit_s"), 2) if name == "backend" else "—",
                verdict,
            ]
        )
    section.table(header, rows)
    return section


# ---------------------------------------------------------------------------------------------
# 3b. A marked pytest test that replays


def scenario_pytest(ctx: Context) -> Section:
    plan = ctx.plan
    count = plan.pytest_calls
    section = Section(
        "3b. A marked pytest test replaying its calls",
        f"One pytest session (a fresh `python -m pytest` with the plugin the package installs) runs "
        f"{plan.pytest_tests} pairs of tests, each making the same {count:,} calls of scenario 3 with httpx: "
        "`@pytest.mark.agenttrace` replaying its recording (record mode `once`, governance, replay's own trace "
        "not written: the plugin's defaults), and the same test on `httpx.MockTransport` serving the same bytes "
        "(its handler's table loaded from a JSON file inside the test, as the recording is). A test's cost is "
        "its setup + call + teardown as pytest reports them; the pair's order alternates, the ratio is paired "
        "per pair. Each session starts with one more pair, not counted (the first marked test of a session "
        f"also pays the first run's one-time start); {plan.pytest_sessions} session(s) of each kind. The "
        "recording is made first by the plugin itself (the marked test with the server up); during the sessions "
        "the server's request counter must not move. Two kinds of session: each marked test replays a copy of "
        "its own (a suite with a recording per test: every test loads and checks its file, as the MockTransport "
        "test loads its table: the figure the target is about), or all replay one file (a shared `path=`, "
        "re-runs: the plugin keeps the last recording it loaded while the file is unchanged, so only the first "
        "test loads it).",
    )
    mock_table = ctx.scratch / "pytest" / "mock.json"
    recording = ctx.scratch / "pytest" / "recording.jsonl"
    made = ctx.worker({"scenario": "replay-setup", "contender": "mock", "count": count, "output": str(mock_table)})
    base = {
        "scenario": "pytest-replay",
        "contender": "agenttrace",
        "count": count,
        "mock_table": str(mock_table),
        "recording": str(recording),
        "rounds": plan.pytest_tests,
    }
    if "skipped" not in made:
        made = ctx.worker({**base, "record": True})
    if "skipped" in made:
        section.notes.append(f"skipped: {made['skipped']}")
        return section
    specs = {
        "agenttrace": functools.partial(_no_io, ctx, base),
        "agenttrace-own": functools.partial(_no_io, ctx, {**base, "own": True}),
    }
    if ctx.baseline is not None:  # the baseline tree's plugin, through the PYTHONPATH its worker gets
        specs["agenttrace-baseline"] = functools.partial(_no_io, ctx, {**base, "contender": "agenttrace-baseline"})
    results = interleave(ctx, specs, plan.pytest_sessions, "pytest")
    section.data = {name: rounds.__dict__ for name, rounds in results.items()}
    section.notes.extend(failure_notes(results))
    target = Target("≤ 1.2x", 1.2)
    header = [
        "calls",
        "recording",
        "MockTransport test",
        "marked test (replay)",
        "x MockTransport",
        "first marked test",
        "target",
    ]
    rows: list[list[str]] = []
    for name, what in (
        ("agenttrace-own", "one per test (loaded in each test)"),
        ("agenttrace", "shared by the tests (loaded by the first)"),
        ("agenttrace-baseline", "shared by the tests, baseline tree"),
    ):
        if name not in results:
            continue
        rounds = results[name]
        if rounds.skipped is not None:
            section.notes.append(f"{name}: skipped: {rounds.skipped}")
            continue
        ratio = rounds.median("ratio")
        rows.append(
            [
                f"{count:,}",
                what,
                _seconds(rounds.median("mock_s")),
                _seconds(rounds.median("replay_s")),
                fmt(ratio, 2),
                _seconds(rounds.median("first_replay_s")),
                f"{target.text}: {target.verdict(ratio)}",
            ]
        )
    if not rows:
        return section
    section.table(header, rows)
    return section


# ---------------------------------------------------------------------------------------------
# 5. Memory


def scenario_memory(ctx: Context) -> Section:
    plan = ctx.plan
    section = Section(
        "5. Memory while recording large responses",
        f"httpx GETs of {plan.memory_calls} responses of 1 MiB JSON each, read whole and dropped. Peak RSS "
        "(`ru_maxrss`) of the process; *raise* = peak minus the `none` peak of the same round; "
        f"{plan.memory_rounds} round(s).",
    )
    names = ["none", "agenttrace"]
    specs = {
        name: _job(ctx.worker, {"scenario": "memory", "contender": name, "warmup": 2, "calls": plan.memory_calls})
        for name in names
    }
    results = interleave(ctx, specs, plan.memory_rounds, "memory")
    section.data = {n: r.__dict__ for n, r in results.items()}
    section.notes.extend(failure_notes(results))
    none = results["none"]
    target = Target("< 100 MiB", 100.0, strict=True)
    header = ["contender", "peak RSS MiB", "raise vs none MiB", "wall s", "trace file", "target"]
    rows: list[list[str]] = []
    for name, rounds in results.items():
        if rounds.skipped is not None:
            rows.append(skipped_row(rounds, len(header)))
            continue
        raise_ = paired(rounds, none, _added("peak_mib")) if name != "none" else None
        trace_bytes = rounds.first("trace_bytes")
        rows.append(
            [
                name,
                fmt(rounds.median("peak_mib"), 1),
                fmt_paired(raise_, 1) if raise_ else "—",
                fmt(rounds.median("seconds"), 2),
                fmt(trace_bytes / (1 << 20), 0, " MiB") if trace_bytes else "—",
                f"{target.text}: {target.verdict(raise_)}" if name == "agenttrace" else "—",
            ]
        )
    section.table(header, rows)
    return section


# ---------------------------------------------------------------------------------------------
# 6. Import time

_IMPORT_CODE = (
    "import time, sys\n"
    "t = time.perf_counter_ns()\n"
    "import {module}\n"
    "sys.stdout.write('" + RESULT_MARK + '{{"import_ms": %f}}\\n\' % ((time.perf_counter_ns() - t) / 1e6))\n'
)


def scenario_import(ctx: Context) -> Section:
    plan = ctx.plan
    section = Section(
        "6. Import time",
        f"`import X` timed inside a fresh interpreter (so: over a bare interpreter), {plan.import_rounds} rounds "
        "after one unmeasured warm-up of each (bytecode caches written); *added* = `agenttrace` minus "
        "`opentelemetry.sdk.trace` in the same round.",
    )
    modules = {"opentelemetry.sdk.trace": "opentelemetry.sdk.trace", "agenttrace": "agenttrace"}
    for module in modules.values():
        ctx.python_c(_IMPORT_CODE.format(module=module))
    specs = {name: _job(ctx.python_c, _IMPORT_CODE.format(module=module)) for name, module in modules.items()}
    results = interleave(ctx, specs, plan.import_rounds, "import")
    section.data = {n: r.__dict__ for n, r in results.items()}
    section.notes.extend(failure_notes(results))
    base = results["opentelemetry.sdk.trace"]
    target = Target("≤ 20 ms", 20.0)
    header = ["import", "ms", "added vs opentelemetry.sdk.trace ms", "issue's figure", "target"]
    rows: list[list[str]] = []
    for name, rounds in results.items():
        if rounds.skipped is not None:
            rows.append(skipped_row(rounds, len(header)))
            continue
        added = paired(rounds, base, _added("import_ms")) if name == "agenttrace" else None
        rows.append(
            [
                f"`{name}`",
                fmt(rounds.median("import_ms"), 1),
                fmt_paired(added, 1) if added else "—",
                "53 ms" if name == "opentelemetry.sdk.trace" else "—",
                f"{target.text}: {target.verdict(added)}" if added else "—",
            ]
        )
    section.table(header, rows)
    return section


SCENARIOS: dict[str, Callable[[Context], Section]] = {
    "record": scenario_record,
    "stream": scenario_stream,
    "replay": scenario_replay,
    "pytest": scenario_pytest,
    "export": scenario_export,
    "memory": scenario_memory,
    "import": scenario_import,
    "listing": scenario_listing,
    "ingest": scenario_ingest,
}


# ---------------------------------------------------------------------------------------------
# Report


def _versions() -> list[str]:
    out = []
    for dist in (
        "agenttrace",
        "opentelemetry-sdk",
        "opentelemetry-instrumentation-httpx",
        "opentelemetry-instrumentation-requests",
        "opentelemetry-instrumentation-urllib3",
        "httpx",
        "requests",
        "urllib3",
        "vcrpy",
    ):
        try:
            out.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            out.append(f"{dist} (not installed)")
    return out


def _load() -> str:
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "unknown"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


_GIT_RUN: dict[str, Any] = {"cwd": REPO, "capture_output": True, "text": True}


def _git() -> str:
    git = shutil.which("git")
    if git is None:
        return "unknown"
    try:
        head = subprocess.run([git, "rev-parse", "--short", "HEAD"], check=True, **_GIT_RUN)
        dirty = subprocess.run([git, "status", "--porcelain"], check=True, **_GIT_RUN)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return str(head.stdout).strip() + (" + uncommitted changes" if str(dirty.stdout).strip() else "")


def render(command: str, sections: Sequence[Section], seconds: float, ctx: Context) -> str:
    cpus = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    pinning = "client on CPU 0, server on CPU 1" if ctx._cpus() else "none"
    head = [
        "# AgentTrace benchmark results",
        "",
        f"- command: `{command}`",
        f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, git {_git()}, harness wall time "
        f"{seconds / 60:.1f} min",
        f"- machine: {cpus} CPUs (`nproc` {usable}), "
        f"{_cpu_model()}, {platform.system()} {platform.release()}, Python {platform.python_version()}; "
        f"pinning: {pinning}",
        "- " + ", ".join(_versions()),
        "- every figure is a median over rounds; every comparison is computed within a round (contenders ran back "
        "to back in fresh processes, order rotated each round) and reported as median [min, max] over rounds.",
        f"- load average (1 min) at start and end: {ctx.load_start} / {_load()}; other work on the machine "
        "widens the ranges, and the paired figures are the ones to read.",
        *(
            ["- loaded run: a CPU-bound process (a Python busy loop, unpinned) ran beside every scenario."]
            if "--loaded" in command
            else []
        ),
        "",
    ]
    return "\n".join(head + [s.markdown() for s in sections])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected scenarios and write ``tests/perf/results/latest.md``."""
    parser = argparse.ArgumentParser(prog="python -m tests.perf", description="AgentTrace benchmark harness (issue 6).")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and calls (about 2-3 minutes)")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=SCENARIO_NAMES + OPT_IN_SCENARIOS,
        help="run only this scenario (repeatable)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin the server and the clients to separate CPUs")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="folder for latest.md and latest.json")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (recordings, trace files)")
    parser.add_argument(
        "--baseline",
        help="a git commit (or a folder holding an importable `agenttrace` package) of another AgentTrace "
        "version: record, stream, replay and pytest also measure it, as agenttrace-baseline, for a before/after",
    )
    parser.add_argument(
        "--distinct-bodies",
        action="store_true",
        help="replay: every recorded call sends a request body of its own (default: one body for all)",
    )
    parser.add_argument(
        "--update-docs", action="store_true", help="also put the tables into docs/performance.md (between its markers)"
    )
    parser.add_argument(
        "--loaded",
        action="store_true",
        help="run every scenario while a CPU-bound process (a Python busy loop, unpinned) runs beside it",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else Plan()
    selected = args.scenario or list(SCENARIO_NAMES)
    command = (
        "python -m tests.perf"
        + (" --quick" if args.quick else "")
        + "".join(f" --scenario {s}" for s in (args.scenario or []))
        + (f" --baseline {args.baseline}" if args.baseline else "")
        + (" --distinct-bodies" if args.distinct_bodies else "")
        + (" --loaded" if args.loaded else "")
    )
    scratch = Path(tempfile.mkdtemp(prefix="agenttrace-perf-"))
    baseline = _baseline_tree(args.baseline, scratch) if args.baseline else None
    ctx = Context(
        plan=plan,
        scratch=scratch,
        pin=not args.no_pin,
        logs=args.out / "logs",
        keep=args.keep,
        baseline=baseline,
        distinct_bodies=args.distinct_bodies,
    )
    started = time.perf_counter()
    # --loaded: the machine an agent really runs on is busy; a busy loop takes a core's worth of CPU.
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.loaded else None
    ctx.load_start = _load()
    sections: list[Section] = []
    try:
        ctx.base_url = ctx.start_server()
        for name in selected:
            _progress(f"scenario {name}")
            sections.append(SCENARIOS[name](ctx))
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
        ctx.stop_servers()
        if args.keep:
            _progress(f"scratch kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    text = render(command, sections, time.perf_counter() - started, ctx)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.md").write_text(text + "\n")
    (args.out / "latest.json").write_text(
        json.dumps({"command": command, "sections": {s.title: s.data for s in sections}}, indent=1, default=str)
    )
    sys.stdout.write(text + "\n")
    if args.update_docs:
        update_docs(text)
    return 0


def _baseline_tree(where: str, scratch: Path) -> Path:
    """A folder to put on PYTHONPATH that imports ``agenttrace`` as of ``where``.

    ``where`` is a folder already laid out so, or a git commit: its ``agenttrace/``,
    ``instrumentors/`` and ``exporters/`` are exported with ``git archive`` (which reads the
    repository and changes nothing) and arranged as the wheel installs them.
    """
    if Path(where).is_dir():
        return Path(where).resolve()
    git = shutil.which("git")
    if git is None:
        raise SystemExit("--baseline COMMIT needs git")
    tree = scratch / "baseline"
    source = scratch / "baseline-src"
    source.mkdir(parents=True)
    archive = subprocess.run(
        [git, "archive", where, "agenttrace", "instrumentors", "exporters"], cwd=REPO, capture_output=True, check=False
    )
    if archive.returncode != 0:
        raise SystemExit(f"git archive {where} failed: {archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
    shutil.copytree(source / "agenttrace", tree / "agenttrace")
    for sub in ("instrumentors", "exporters"):
        if (source / sub).is_dir():
            shutil.copytree(source / sub, tree / "agenttrace" / sub, dirs_exist_ok=True)
    return tree


DOCS = REPO / "docs" / "performance.md"
_START, _END = "<!-- results:start -->", "<!-- results:end -->"


def update_docs(text: str) -> None:
    """Replace the results block of docs/performance.md with ``text``, headings one level down."""
    body = "\n".join(
        ("#" + line if line.startswith("#") else line) for line in text.splitlines() if line != text.splitlines()[0]
    ).strip()
    doc = DOCS.read_text()
    if _START not in doc or _END not in doc:
        raise SystemExit(f"{DOCS} has no {_START} ... {_END} block to update")
    head, _, rest = doc.partition(_START)
    _, _, tail = rest.partition(_END)
    DOCS.write_text(f"{head}{_START}\n{body}\n{_END}{tail}")
    _progress(f"results written into {DOCS.relative_to(REPO)}")
