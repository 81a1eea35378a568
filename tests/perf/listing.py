"""The server's listing at 1,000,000 stored spans, while a client ingests (issue 20, point 10).

Run as a harness scenario (``python -m tests.perf --scenario listing``; not part of the default
run: filling the store takes a few minutes) or alone (``python -m tests.perf.listing --spans N``).

A SQLite store is filled through the store's own ``add()`` (so the per-trace summary is built as
ingest builds it) with agent-like traces: 20 spans each (a run, 4 steps, 15 HTTP calls of which 5
are LLM calls with a model and tokens; 5% of the traces failed, 10% replays), lines of about
1 KB (the listing reads none of them), starts spread over 30 days. Then a real ``agenttrace
server`` process serves it while a client posts new traces (OTLP JSON, 200 spans a request) as
fast as the server takes them, and another times the listing requests, one at a time, on one
kept-alive connection.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from agenttrace._server.store import open_store
from agenttrace._server.store.records import SpanRow

from .report import Section, Target, fmt

if TYPE_CHECKING:
    from .harness import Context

__all__ = ["fill", "measure", "scenario_listing"]

SPANS_PER_TRACE = 20
BATCH_TRACES = 250  # traces (5,000 spans) to one add()
NAMES = ("checkout-agent", "support-triage", "nightly-report", "code-review", "research-assistant")
MODELS = ("gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06", "claude-3-5-haiku-20241022", "claude-3-5-sonnet-20241022")
DAY_NS = 86_400 * 10**9
REQUESTS = 40  # timed requests per query (after 3 not timed)
TARGET_MS = 100.0
_LINE = (
    '{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"agent"}}}}]}},'
    '"scopeSpans":[{{"scope":{{"name":"agenttrace"}},"spans":[{{"traceId":"{trace}","spanId":"{span}",'
    '"parentSpanId":"{parent}","name":"{name}","startTimeUnixNano":"{start}","endTimeUnixNano":"{end}",'
    '"attributes":[{{"key":"agenttrace.kind","value":{{"stringValue":"{kind}"}}}},'
    '{{"key":"http.request.method","value":{{"stringValue":"POST"}}}},'
    '{{"key":"url.full","value":{{"stringValue":"https://api.example.com/v1/chat/completions"}}}},'
    '{{"key":"http.response.status_code","value":{{"intValue":"200"}}}},'
    '{{"key":"agenttrace.body","value":{{"stringValue":"{body}"}}}}],"status":{{"code":{status}}}}}]}}]}}]}}'
)


def _trace_rows(rng: random.Random, index: int, start: int) -> list[SpanRow]:
    """One agent-like trace of SPANS_PER_TRACE spans starting at ``start``."""
    trace = f"{rng.getrandbits(128):032x}"
    failed = rng.random() < 0.05
    mode = "replay" if rng.random() < 0.1 else "record"
    run_name = f"{NAMES[index % len(NAMES)]}-{index % 1000}"
    body = "x" * 600
    rows: list[SpanRow] = []
    root = f"{rng.getrandbits(64):016x}"
    for number in range(SPANS_PER_TRACE):
        span = root if number == 0 else f"{rng.getrandbits(64):016x}"
        kind = "run" if number == 0 else "step" if number <= 4 else "call"
        llm = kind == "call" and number % 3 == 0
        status = 2 if failed and number == SPANS_PER_TRACE - 1 else 0
        begin, end = start + number * 10**7, start + number * 10**7 + 5 * 10**6
        name = run_name if kind == "run" else f"{kind}-{number}"
        line = _LINE.format(
            trace=trace,
            span=span,
            parent="" if number == 0 else root,
            name=name,
            start=begin,
            end=end,
            kind=kind,
            body=body,
            status=status,
        )
        rows.append(
            SpanRow(
                trace_id=trace,
                span_id=span,
                parent_span_id="" if number == 0 else root,
                name=name,
                kind=kind,
                start_ns=begin,
                end_ns=end,
                status_code=status,
                run_name=run_name if kind == "run" else "",
                run_mode=mode if kind == "run" else "",
                line=line,
                model=MODELS[(index + number) % len(MODELS)] if llm else "",
                input_tokens=rng.randrange(100, 5000) if llm else 0,
                output_tokens=rng.randrange(10, 800) if llm else 0,
            )
        )
    return rows


def fill(path: Path, spans: int, seed: int = 20) -> float:
    """A SQLite store at ``path`` holding ``spans`` spans (whole traces) over the last 30 days; seconds taken."""
    rng = random.Random(seed)
    traces = max(spans // SPANS_PER_TRACE, 1)
    now = time.time_ns()
    started = time.perf_counter()
    store = open_store(f"sqlite:///{path}")
    try:
        for at in range(0, traces, BATCH_TRACES):
            rows: list[SpanRow] = []
            for index in range(at, min(at + BATCH_TRACES, traces)):
                rows += _trace_rows(rng, index, now - 30 * DAY_NS + index * (30 * DAY_NS // traces))
            store.add(rows)
    finally:
        store.close()
    return time.perf_counter() - started


def _ingest_document(rng: random.Random, count: int) -> dict[str, Any]:
    spans = []
    now = time.time_ns()
    trace = ""
    for number in range(count):
        if number % SPANS_PER_TRACE == 0:
            trace = f"{rng.getrandbits(128):032x}"
        spans.append(
            {
                "traceId": trace,
                "spanId": f"{rng.getrandbits(64):016x}",
                "name": f"ingest-{number}",
                "startTimeUnixNano": str(now + number),
                "endTimeUnixNano": str(now + number + 1000),
                "attributes": [{"key": "agenttrace.kind", "value": {"stringValue": "call"}}],
            }
        )
    return {"resourceSpans": [{"resource": {}, "scopeSpans": [{"spans": spans}]}]}


def _ingest(url: str) -> None:
    """Post new traces to ``url`` until SIGTERM; then print the spans it took and the failed requests."""
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    rng = random.Random(7)
    spans = failures = 0
    with httpx.Client(timeout=60) as http:
        while not stopping.is_set():
            body = json.dumps(_ingest_document(rng, 200))
            answer = http.post(url + "/v1/traces", content=body, headers={"Content-Type": "application/json"})
            if answer.status_code == 200:
                spans += 200
            else:
                failures += 1
    print(spans, failures, flush=True)


def _timed(http: httpx.Client, url: str) -> list[float]:
    """Milliseconds of REQUESTS answers to GET ``url`` (after 3 untimed), each checked to be 200."""
    times = []
    for index in range(REQUESTS + 3):
        began = time.perf_counter()
        answer = http.get(url)
        elapsed = (time.perf_counter() - began) * 1000
        if answer.status_code != 200:
            raise RuntimeError(f"GET {url}: {answer.status_code} {answer.text[:200]}")
        if index >= 3:
            times.append(elapsed)
    return times


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def measure(database: Path, spans: int) -> dict[str, Any]:
    """Serve ``database`` with ``agenttrace server`` and time the listing queries while a client ingests."""
    command = shutil.which("agenttrace", path=str(Path(sys.executable).parent)) or "agenttrace"
    server = subprocess.Popen(
        [command, "server", "--port", "0", "--database", f"sqlite:///{database}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        found = re.search(r"listening on (http://\S+)", server.stdout.readline())
        if found is None:
            raise RuntimeError("agenttrace server did not start")
        url = found.group(1)
        results: dict[str, Any] = {"spans": spans, "queries": {}}
        with httpx.Client(base_url=url, timeout=120) as http:
            listing = http.get("/api/traces?limit=1000").json()
            deep_cursor = ""
            cursor = listing["next"]
            depth = 1000
            # A cursor 90% of the way down the list (about 45,000 traces at 1,000,000 spans).
            target_depth = int(0.9 * spans / SPANS_PER_TRACE)
            while cursor and depth < target_depth:
                page = http.get(f"/api/traces?limit=1000&before={cursor}").json()
                depth += len(page["traces"])
                cursor = page["next"]
                deep_cursor = cursor or deep_cursor
            since = time.time_ns() - 15 * DAY_NS
            prefix = listing["traces"][0]["trace_id"][:4]
            queries = {
                "GET /api/traces?limit=50": "/api/traces?limit=50",
                "GET / (the page, 50 runs)": "/",
                "status=error": "/api/traces?limit=50&status=error",
                "name=review (contains)": "/api/traces?limit=50&name=review",
                "model=claude-3-5-sonnet (begins)": "/api/traces?limit=50&model=claude-3-5-sonnet",
                "mode=replay&since=15 days ago": f"/api/traces?limit=50&mode=replay&since={since}",
                f"trace_id={prefix} (begins)": f"/api/traces?limit=50&trace_id={prefix}",
                f"before= at depth {depth:,} (keyset)": f"/api/traces?limit=50&before={deep_cursor}",
                f"offset={depth:,}": f"/api/traces?limit=50&offset={depth}",
                "GET /?status=error&name=agent (page, filtered)": "/?status=error&name=agent",
                # Filters that match no trace: the whole list is read (the worst case).
                "name=no-such-run (none: every trace read)": "/api/traces?limit=50&name=no-such-run",
                "status=error&mode=replay&name=no-such-run (none)": (
                    "/api/traces?limit=50&status=error&mode=replay&name=no-such-run"
                ),
                "model=no-such-model (none)": "/api/traces?limit=50&model=no-such-model",
            }
            # The ingesting client in a process of its own: its JSON encoding must not hold the
            # timing client's interpreter.
            ingest = subprocess.Popen(
                [sys.executable, "-m", "tests.perf.listing", "--ingest", url],
                cwd=Path(__file__).resolve().parent.parent.parent,
                stdout=subprocess.PIPE,
                text=True,
            )
            began = time.perf_counter()
            try:
                time.sleep(1.0)
                for label, path in queries.items():
                    times = _timed(http, path)
                    results["queries"][label] = {"median_ms": statistics.median(times), "p95_ms": _p95(times)}
            finally:
                ingest.terminate()
                out, _ = ingest.communicate(timeout=60)
            spans_taken, failures = (int(n) for n in (out.split() or ["0", "0"]))
            results["ingest_spans_per_s"] = spans_taken / (time.perf_counter() - began)
            results["ingest_failures"] = failures
        return results
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()


def scenario_listing(ctx: Context) -> Section:
    """The harness's ``listing`` scenario: 1,000,000 spans (100,000 with ``--quick``)."""
    spans = 100_000 if ctx.plan.record_rounds < 11 else 1_000_000
    section = Section(
        "7. Server listing while ingesting",
        f"A SQLite store filled with {spans:,} spans through the store's own `add()` ({spans // SPANS_PER_TRACE:,} "
        f"agent-like traces of {SPANS_PER_TRACE} spans: run, steps, HTTP and LLM calls; 5% failed, 10% replays; "
        "lines of about 1 KB), served by `agenttrace server` while a client posts new traces (OTLP JSON, 200 spans "
        f"a request) as fast as it takes them; each listing request timed {REQUESTS} times, one at a time on a "
        "kept-alive connection, after 3 untimed.",
    )
    database = ctx.scratch / "listing.db"
    seconds = fill(database, spans)
    results = measure(database, spans)
    section.data = {"fill_s": seconds, **results}
    target = Target(f"< {TARGET_MS:.0f} ms", TARGET_MS, strict=True)
    rows = [
        [f"`{label}`", fmt(r["median_ms"], 1), fmt(r["p95_ms"], 1), target.verdict(r["p95_ms"])]
        for label, r in results["queries"].items()
    ]
    section.table(["request", "median ms", "p95 ms", "target (p95)"], rows)
    section.notes.append(
        f"filled in {seconds:.0f} s; ingest meanwhile: {results['ingest_spans_per_s']:,.0f} spans/s "
        f"({results['ingest_failures']} failed requests)"
    )
    return section


def main(argv: list[str] | None = None) -> None:
    """Fill a store and measure, without the harness."""
    parser = argparse.ArgumentParser(prog="python -m tests.perf.listing", description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--database", type=Path, help="keep the store here (reused if it exists)")
    parser.add_argument("--ingest", metavar="URL", help=argparse.SUPPRESS)  # the ingesting client's process
    args = parser.parse_args(argv)
    if args.ingest:
        _ingest(args.ingest)
        return
    scratch = Path(tempfile.mkdtemp(prefix="agenttrace-listing-"))
    database = args.database or scratch / "listing.db"
    try:
        seconds = 0.0 if database.exists() else fill(database, args.spans)
        results = measure(database, args.spans)
        print(json.dumps({"fill_s": round(seconds, 1), **results}, indent=1))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
