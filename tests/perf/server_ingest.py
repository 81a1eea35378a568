"""The harness's ``ingest`` scenario: spans per second into a real ``agenttrace server`` on SQLite.

Each round starts a fresh ``agenttrace server`` process on a new SQLite file in the scratch
folder, then 1 client (and, on another fresh server, 8 clients at once) send OTLP/HTTP protobuf
requests of 512 realistic spans each, one request at a time per client on a kept-alive
connection, as OpenTelemetry's batch exporter sends them. Every span is new to the server (no
duplicate is skipped by the store). The figure is spans stored per second of wall time, from the
first request sent to the last answer. Neither the server nor the clients are pinned: the server
may use both cores, as it would on a 2-core machine of its own.

Also runnable alone: ``python -m tests.perf.server_ingest [--rounds N]``.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .report import Rounds, Section, Target, fmt, fmt_paired, paired

__all__ = ["batches", "ingest_rate", "scenario_ingest"]

SPANS_PER_BATCH = 512
BATCHES_PER_CLIENT = {1: 24, 8: 6}  # about 12,000 and 24,500 spans
ROUNDS = 3
TARGET = Target("≥ 10,000 spans/s", 10_000.0, below=False)


def batches(count: int, seed: int) -> list[bytes]:
    """``count`` encoded ExportTraceServiceRequests of 512 spans each, every span id new.

    A span is what an AgentTrace call span looks like: 10 attributes, and a request and a
    response event each holding a 2 KB body with its encoding and headers.
    """
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    def attribute(key: str, value: Any) -> KeyValue:
        if isinstance(value, bool):
            return KeyValue(key=key, value=AnyValue(bool_value=value))
        if isinstance(value, int):
            return KeyValue(key=key, value=AnyValue(int_value=value))
        return KeyValue(key=key, value=AnyValue(string_value=value))

    out = []
    for number in range(count):
        request = ExportTraceServiceRequest()
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.extend(
            [attribute("service.name", "bench-agent"), attribute("telemetry.sdk.language", "python")]
        )
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.name, scope_spans.scope.version = "agenttrace", "0.1.0"
        trace_id = (seed * 1_000_003 + number + 1).to_bytes(16, "big")
        start = 1_700_000_000_000_000_000 + number * 10**9
        for index in range(SPANS_PER_BATCH):
            span = scope_spans.spans.add(
                trace_id=trace_id,
                span_id=(index + 1).to_bytes(8, "big"),
                name="POST",
                kind=3,
                start_time_unix_nano=start + index * 1000,
                end_time_unix_nano=start + index * 1000 + 900,
            )
            if index:
                span.parent_span_id = (1).to_bytes(8, "big")
            span.attributes.extend(
                [
                    attribute("agenttrace.kind", "call"),
                    attribute("agenttrace.call.ordinal", index),
                    attribute("agenttrace.call.library", "httpx"),
                    attribute("agenttrace.step.name", "plan"),
                    attribute("http.request.method", "POST"),
                    attribute("url.full", "https://llm.example/v1/chat/completions"),
                    attribute("server.address", "llm.example"),
                    attribute("server.port", 443),
                    attribute("http.response.status_code", 200),
                    attribute("agenttrace.call.replayed", False),
                ]
            )
            for name in ("agenttrace.request", "agenttrace.response"):
                event = span.events.add(name=name, time_unix_nano=start + index * 1000 + 10)
                event.attributes.extend(
                    [
                        attribute("agenttrace.body", os.urandom(1024).hex()),
                        attribute("agenttrace.body.encoding", "utf-8"),
                        attribute("agenttrace.headers", '[["content-type","application/json"]]'),
                    ]
                )
            span.status.code = 1
        out.append(request.SerializeToString())
    return out


class _Server:
    """An ``agenttrace server`` process on a new SQLite file."""

    def __init__(self, folder: Path) -> None:
        command = Path(sys.executable).parent / "agenttrace"
        self.log = (folder / "server.log").open("w")
        self.process = subprocess.Popen(
            [str(command), "server", "--port", "0", "--database", f"sqlite:///{folder / 'server.db'}"],
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith(("AGENTTRACE_", "OTEL_"))},
        )
        assert self.process.stdout is not None
        found = re.search(r"listening on http://([\d.]+):(\d+)", self.process.stdout.readline())
        if found is None:
            self.stop()
            raise RuntimeError(f"agenttrace server did not start; see {folder / 'server.log'}")
        self.host, self.port = found.group(1), int(found.group(2))

    def cpu_seconds(self) -> float:
        """User and system CPU time the server process used so far (Linux: /proc)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.log.close()


def ingest_rate(clients: int, bodies: list[list[bytes]], folder: Path) -> dict[str, Any]:
    """Spans per second stored by a fresh server from ``clients`` clients, client ``k`` sending ``bodies[k]``."""
    folder.mkdir(parents=True, exist_ok=True)
    server = _Server(folder)
    failures: list[str] = []
    try:

        def client(mine: list[bytes]) -> None:
            connection = http.client.HTTPConnection(server.host, server.port, timeout=120)
            try:
                for body in mine:
                    connection.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
                    answer = connection.getresponse()
                    answer.read()
                    if answer.status != 200:
                        failures.append(f"HTTP {answer.status}")
            finally:
                connection.close()

        threads = [threading.Thread(target=client, args=(bodies[k],)) for k in range(clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
        cpu = server.cpu_seconds()
    finally:
        server.stop()
    spans = sum(len(mine) for mine in bodies[:clients]) * SPANS_PER_BATCH
    if failures:
        return {"skipped": f"{len(failures)} request(s) failed: {failures[0]}"}
    return {"spans": spans, "seconds": seconds, "spans_per_s": spans / seconds, "spans_per_cpu_s": spans / cpu}


def scenario_ingest(ctx: Any, rounds_count: int = ROUNDS) -> Section:
    """The ``ingest`` section of the report (``ctx`` is the harness's Context: its scratch folder)."""
    section = Section(
        "7. Server ingest (SQLite)",
        f"A fresh `agenttrace server` process on a new SQLite file per run; 1 client sending "
        f"{BATCHES_PER_CLIENT[1]} OTLP/HTTP protobuf requests, then 8 clients at once sending "
        f"{BATCHES_PER_CLIENT[8]} each, one request at a time per kept-alive connection; "
        f"{SPANS_PER_BATCH} spans a request, each with 10 attributes and two 2 KB payload events (an "
        "AgentTrace call span), every span new. *spans/s* = spans stored / wall time from the first "
        "request to the last answer; *per server CPU s* = spans stored / the server process's user + system "
        f"CPU time (what a busy machine changes least); {rounds_count} round(s); neither side pinned.",
    )
    results = {clients: Rounds(f"{clients} client(s)") for clients in BATCHES_PER_CLIENT}
    for round_ in range(rounds_count):
        for clients, per_client in BATCHES_PER_CLIENT.items():
            bodies = [batches(per_client, seed=round_ * 100 + clients * 10 + k) for k in range(clients)]
            folder = Path(ctx.scratch) / f"ingest-{round_}-{clients}"
            result = ingest_rate(clients, bodies, folder)
            results[clients].by_round.append(None if "skipped" in result else result)
            if "skipped" in result:
                results[clients].failures.append(str(result["skipped"]))
    section.data = {r.name: r.__dict__ for r in results.values()}
    header = ["clients", "spans/s", "spans per server CPU s", "spans a run", "target"]
    rows = []
    for rounds in results.values():
        rate = paired(rounds, None, lambda a, _b: float(a["spans_per_s"]))
        per_cpu = paired(rounds, None, lambda a, _b: float(a["spans_per_cpu_s"]))
        rows.append(
            [
                rounds.name,
                fmt_paired(rate, 0),
                fmt_paired(per_cpu, 0),
                fmt(rounds.median("spans"), 0),
                f"{TARGET.text}: {TARGET.verdict(rate)}",
            ]
        )
        section.notes.extend(f"{rounds.name}: {failure}" for failure in rounds.failures)
    section.table(header, rows)
    return section


def main(argv: list[str] | None = None) -> int:
    """Run the scenario alone and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="agenttrace-ingest-") as scratch:
        load = os.getloadavg()[0]
        section = scenario_ingest(argparse.Namespace(scratch=scratch), args.rounds)
        sys.stdout.write(
            f"{section.markdown()}\nload average (1 min) at start: {load:.2f} / end: {os.getloadavg()[0]:.2f}\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
