"""One contender of one benchmark scenario, measured in a fresh interpreter.

The harness runs ``python tests/perf/worker.py '<json spec>'`` once per contender and round,
so no contender inherits another's patches, caches or heap. The last stdout line is
``PERF-RESULT <json>``: the measured figures, or ``{"skipped": "<reason>"}`` when the contender
cannot run here (a peer not installed, an AgentTrace layer not built yet, a check that failed).
Nothing is estimated or substituted: a contender either ran as described or says why not.

Self-contained on purpose (it imports nothing from the harness): it runs with a scratch
folder as its working directory, so ``agenttrace`` comes from the installed distribution, as
it would for a user.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import resource
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["main"]

RESULT_MARK = "PERF-RESULT "

# The 1 KB JSON request body every call sends (a chat request of typical size).
REQUEST_BODY = json.dumps(
    {"model": "bench-1", "messages": [{"role": "user", "content": "x" * 940}], "stream": False},
    separators=(",", ":"),
).encode()
JSON_HEADERS = {"content-type": "application/json"}


class Skip(Exception):  # noqa: N818 - reads as `raise Skip("reason")`
    """The contender cannot run here; the message says why."""


Spec = dict[str, Any]

_FILL = "x" * 928  # with "call 000123 ": as long as REQUEST_BODY's 940 "x"


def replay_bodies(spec: Spec, indices: Iterable[int]) -> dict[int, bytes]:
    """The request body of each replay call: REQUEST_BODY, or one of the same size per call (``distinct_bodies``)."""
    if not spec.get("distinct_bodies"):
        return dict.fromkeys(indices, REQUEST_BODY)
    return {
        i: json.dumps(
            {"model": "bench-1", "messages": [{"role": "user", "content": f"call {i:06d} {_FILL}"}], "stream": False},
            separators=(",", ":"),
        ).encode()
        for i in indices
    }


Result = dict[str, Any]
Timer = Callable[[], int]
now_ns: Timer = time.perf_counter_ns


def _rss_bytes() -> int | None:
    """The process's resident set now (``VmRSS``), or None where /proc is missing."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _require(module: str, hint: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise Skip(f"{hint} is not installed (pip install -e '.[bench]')")


# ---------------------------------------------------------------------------------------------
# Clients


def _client(lib: str) -> Any:
    if lib == "httpx":
        import httpx

        return httpx.Client(timeout=30.0)
    import requests

    return requests.Session()


def _post(lib: str, client: Any, url: str) -> bytes:
    if lib == "httpx":
        response = client.post(url, content=REQUEST_BODY, headers=JSON_HEADERS)
    else:
        response = client.post(url, data=REQUEST_BODY, headers=JSON_HEADERS)
    if response.status_code != 200:
        raise RuntimeError(f"server answered {response.status_code} for {url}")
    return bytes(response.content)


# ---------------------------------------------------------------------------------------------
# Contenders: each wraps a body of work (a function that makes the calls) and runs it.


class Contender:
    """Runs ``work`` under one contender's instrumentation; ``teardown_s`` is what ending cost."""

    name = "none"

    def __init__(self, spec: Spec, lib: str) -> None:
        self.spec = spec
        self.lib = lib
        self.teardown_s = 0.0

    def run(self, work: Callable[[], Any]) -> Any:
        return work()

    def check(self) -> Result:
        """Evidence that the contender did what it claims (e.g. calls recorded); raises Skip if not."""
        return {}


def otel_provider() -> tuple[Any, Any]:
    """An SDK TracerProvider exporting to a counter that discards (``exporter.spans``), as OTel contenders use."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class NoopExporter(SpanExporter):
        def __init__(self) -> None:
            self.spans = 0

        def export(self, spans: Any) -> SpanExportResult:
            self.spans += len(spans)
            return SpanExportResult.SUCCESS

    exporter = NoopExporter()
    processor_kind = os.environ.get("PERF_OTEL_PROCESSOR", "batch")
    processor = SimpleSpanProcessor if processor_kind == "simple" else BatchSpanProcessor
    provider = TracerProvider()
    provider.add_span_processor(processor(exporter))
    return provider, exporter


class OTelContender(Contender):
    """OpenTelemetry's own instrumentation of the library, SDK provider, no-op exporter.

    BatchSpanProcessor is the processor OpenTelemetry recommends for production: ``on_end``
    only enqueues, export happens on the processor's thread. The exporter does nothing, so the
    figure is the instrumentation's cost on the request path, not an exporter's. Set
    ``PERF_OTEL_PROCESSOR=simple`` for SimpleSpanProcessor (export inline on the caller's thread).
    """

    def __init__(self, spec: Spec, lib: str, which: str) -> None:
        super().__init__(spec, lib)
        self.name = f"otel-{which}"
        module = {
            "httpx": "opentelemetry.instrumentation.httpx",
            "requests": "opentelemetry.instrumentation.requests",
            "urllib3": "opentelemetry.instrumentation.urllib3",
        }[which]
        _require(module, f"opentelemetry-instrumentation-{which}")
        from opentelemetry import trace

        self.provider, self.exporter = otel_provider()
        trace.set_tracer_provider(self.provider)
        instrumentor_class = {
            "httpx": "HTTPXClientInstrumentor",
            "requests": "RequestsInstrumentor",
            "urllib3": "URLLib3Instrumentor",
        }[which]
        instrumentor = getattr(importlib.import_module(module), instrumentor_class)()
        instrumentor.instrument(tracer_provider=self.provider)

    def run(self, work: Callable[[], Any]) -> Any:
        out = work()
        start = now_ns()
        self.provider.force_flush()
        self.teardown_s = (now_ns() - start) / 1e9
        return out

    def check(self) -> Result:
        if self.exporter.spans == 0:
            raise Skip(f"{self.name} produced no span (instrumentation not active)")
        return {"spans": self.exporter.spans}


class VcrContender(Contender):
    """vcrpy recording a new cassette (record_mode ``all``); ``teardown_s`` is the cassette save."""

    name = "vcrpy"

    def __init__(self, spec: Spec, lib: str) -> None:
        super().__init__(spec, lib)
        _require("vcr", "vcrpy")
        self.path = Path(spec["scratch"]) / "cassette.yaml"

    def run(self, work: Callable[[], Any]) -> Any:
        import vcr

        cassette = vcr.VCR().use_cassette(str(self.path), record_mode="all")
        cassette.__enter__()
        try:
            out = work()
        finally:
            start = now_ns()
            cassette.__exit__(None, None, None)
            self.teardown_s = (now_ns() - start) / 1e9
        return out

    def check(self) -> Result:
        if not self.path.exists():
            raise Skip("vcrpy wrote no cassette")
        return {"cassette_bytes": self.path.stat().st_size}


class AgentTraceContender(Contender):
    """AgentTrace recording: every call inside one ``@agenttrace.run``; local trace files (the default)."""

    name = "agenttrace"

    def __init__(self, spec: Spec, lib: str) -> None:
        super().__init__(spec, lib)
        import agenttrace

        self.trace_dir = Path(spec["scratch"]) / "traces"
        agenttrace.init(trace_dir=str(self.trace_dir), quiet=True)
        self.agenttrace = agenttrace

    def run(self, work: Callable[[], Any]) -> Any:
        stamps: list[int] = []

        def body() -> Any:
            out = work()
            stamps.append(now_ns())
            return out

        out = self.agenttrace.run("perf-bench")(body)()
        self.teardown_s = (now_ns() - stamps[0]) / 1e9
        return out

    def check(self) -> Result:
        if self.spec.get("check_outside"):
            # Counting instructions: reading the trace file back is the harness's work, not the
            # contender's, and it grows with the calls; the counting process checks it afterwards.
            return {"trace_dir": str(self.trace_dir)}
        return check_recorded(self.trace_dir, self.spec.get("expect_calls", 1))


def check_recorded(trace_dir: Path, expected: int) -> Result:
    """Count the call spans AgentTrace wrote and those carrying a response payload; Skip if short."""
    files = sorted(trace_dir.glob("*.jsonl"))
    if not files:
        raise Skip("AgentTrace wrote no trace file")
    calls = with_payload = 0
    size = 0
    for path in files:
        size += path.stat().st_size
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                for resource_spans in json.loads(line).get("resourceSpans", []):
                    for scope_spans in resource_spans.get("scopeSpans", []):
                        for span in scope_spans.get("spans", []):
                            kind = {a["key"]: a["value"].get("stringValue") for a in span.get("attributes", [])}.get(
                                "agenttrace.kind"
                            )
                            if span.get("kind") == 3 or kind == "call":
                                calls += 1
                                names = {e.get("name") for e in span.get("events", [])}
                                if "agenttrace.response" in names:
                                    with_payload += 1
    if calls < expected:
        raise Skip(f"AgentTrace recorded {calls} of {expected} calls (is the instrumentor for this library built yet?)")
    return {"calls_recorded": calls, "calls_with_response_payload": with_payload, "trace_bytes": size}


def make_contender(spec: Spec, lib: str) -> Contender:
    name = spec["contender"]
    if name == "none":
        return Contender(spec, lib)
    if name.startswith("otel-"):
        return OTelContender(spec, lib, name.removeprefix("otel-"))
    if name == "vcrpy":
        return VcrContender(spec, lib)
    if name.startswith("agenttrace"):  # "agenttrace-baseline": the same, from another tree (PYTHONPATH)
        return AgentTraceContender(spec, lib)
    raise ValueError(f"unknown contender {name!r}")


# ---------------------------------------------------------------------------------------------
# Scenarios


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _profiled(spec: Spec, part: str = "calls") -> contextlib.AbstractContextManager[Any]:
    """pyinstrument around one part ("calls" or "load") when ``spec["profile"]`` asks for it."""
    target = spec.get("profile")
    if not target or spec.get("profile_part", "calls") != part:
        return contextlib.nullcontext()
    _require("pyinstrument", "pyinstrument")
    from pyinstrument import Profiler

    @contextlib.contextmanager
    def profiling() -> Iterator[None]:
        profiler = Profiler(interval=0.0002)
        profiler.start()
        try:
            yield
        finally:
            profiler.stop()
            Path(target).write_text(profiler.output_text(unicode=True, color=False, show_all=False))
            Path(target).with_suffix(".html").write_text(profiler.output_html())

    return profiling()


def scenario_record(spec: Spec) -> Result:
    """Median cost of one sequential 1 KB -> 2 KB JSON POST under the contender."""
    lib = spec["lib"]
    url = spec["base_url"] + "/json?i=1"
    contender = make_contender(spec, lib)
    spec["expect_calls"] = spec["warmup"] + spec["calls"]

    def work() -> list[int]:
        client = _client(lib)
        for _ in range(spec["warmup"]):
            _post(lib, client, url)
        timings = []
        with _profiled(spec):
            for _ in range(spec["calls"]):
                start = now_ns()
                _post(lib, client, url)
                timings.append(now_ns() - start)
        client.close()
        return timings

    timings = contender.run(work)
    return {
        "us_per_call": statistics.median(timings) / 1e3,
        "mean_us": statistics.fmean(timings) / 1e3,
        "teardown_s": contender.teardown_s,
        **contender.check(),
    }


def scenario_stream(spec: Spec) -> Result:
    """Time to first and last chunk of an SSE stream read with httpx."""
    url = spec["base_url"] + f"/sse?n={spec['chunks']}&gap_ms={spec['gap_ms']}"
    contender = make_contender(spec, "httpx")
    spec["expect_calls"] = spec["warmup"] + spec["calls"]

    encodings: list[tuple[int, int]] = []
    waits: list[tuple[int, int]] = []
    if spec.get("log_encodings"):  # tests.perf.overlap: when does the trace writer encode?
        from agenttrace.exporters import local

        add = local.TraceFile.add

        def logged_add(self: Any, span: Any) -> None:
            start = now_ns()
            add(self, span)
            encodings.append((start, now_ns()))

        local.TraceFile.add = logged_add  # type: ignore[method-assign]

    def one(client: Any) -> tuple[int, int, int]:
        start = now_ns()
        first = 0
        chunks = 0
        with client.stream("GET", url) as response:
            for chunk in response.iter_bytes():
                if chunk:
                    chunks += 1
                    if not first:
                        first = now_ns()
        waits.append((start, first))
        return first - start, now_ns() - start, chunks

    def work() -> list[tuple[int, int, int]]:
        client = _client("httpx")
        for _ in range(spec["warmup"]):
            one(client)
        with _profiled(spec):
            out = [one(client) for _ in range(spec["calls"])]
        client.close()
        return out

    results = contender.run(work)
    extra: Result = {}
    if spec.get("log_encodings"):
        timed = waits[-len(results) :]  # the warm-up streams' waits are not counted
        extra = {
            "overlapped": sum(1 for start, first in timed if any(a < first and b > start for a, b in encodings)),
            "encode_ms": statistics.median(b - a for a, b in encodings) / 1e6 if encodings else 0.0,
        }
    return {
        **extra,
        "ttfc_ms": statistics.median(r[0] for r in results) / 1e6,
        "ttlc_ms": statistics.median(r[1] for r in results) / 1e6,
        "chunks_seen": statistics.median(r[2] for r in results),
        **contender.check(),
    }


def _indices(count: int, sample: int, warmup: int) -> tuple[list[int], list[int]]:
    """``sample`` indices spread evenly over ``range(count)``, and ``warmup`` others before them."""
    step = count / sample
    chosen = sorted({min(count - 1, int(i * step + step / 2)) for i in range(sample)})
    taken = set(chosen)
    spare = [i for i in range(count) if i not in taken][:warmup]
    return chosen, spare


def scenario_replay_setup(spec: Spec) -> Result:
    """Record ``count`` distinct calls (``/json?i=k``) as one contender's recording."""
    kind, count, base = spec["contender"], spec["count"], spec["base_url"]
    out = Path(spec["output"])
    out.parent.mkdir(parents=True, exist_ok=True)
    start = now_ns()
    if kind == "mock":
        import httpx

        bodies = replay_bodies(spec, range(count))
        with httpx.Client() as client:
            exchanges = []
            for i in range(count):
                url = f"{base}/json?i={i}"
                response = client.post(url, content=bodies[i], headers=JSON_HEADERS)
                exchanges.append(
                    {
                        "url": url,
                        "status": response.status_code,
                        "headers": list(response.headers.items()),
                        "body": response.text,
                    }
                )
        out.write_text(json.dumps(exchanges))
        return {"seconds": (now_ns() - start) / 1e9, "path": str(out)}
    if kind == "vcrpy":
        return _vcr_cassette(count, base, out, start)
    # "agenttrace" or "agenttrace-baseline" (another tree, on PYTHONPATH)
    import httpx

    import agenttrace

    trace_dir = Path(spec["scratch"]) / "traces"
    agenttrace.init(trace_dir=str(trace_dir), quiet=True)

    bodies = replay_bodies(spec, range(count))

    @agenttrace.run("perf-replay-source")
    def record() -> None:
        with httpx.Client() as client:
            for i in range(count):
                client.post(f"{base}/json?i={i}", content=bodies[i], headers=JSON_HEADERS)

    record()
    check = check_recorded(trace_dir, count)
    files = sorted(trace_dir.glob("*.jsonl"))
    files[0].replace(out)
    return {"seconds": (now_ns() - start) / 1e9, "path": str(out), **check}


def _vcr_cassette(count: int, base: str, out: Path, start: int) -> Result:
    """A vcrpy cassette of ``count`` calls: one interaction vcrpy records, cloned per id.

    Recording the calls one by one is quadratic in vcrpy (each new request is matched against
    every one already recorded): 10,000 calls took 685 s here. The clones differ from what
    vcrpy would record only in the id in the URL and the response body, which is exactly
    what recording them one by one would give, and they are written by vcrpy's own serializer.
    """
    _require("vcr", "vcrpy")
    import copy

    import httpx
    import vcr
    from vcr.serializers import yamlserializer

    seed = out.with_suffix(".seed.yaml")
    with vcr.VCR().use_cassette(str(seed), record_mode="all"), httpx.Client() as client:
        client.post(f"{base}/json?i=0", content=REQUEST_BODY, headers=JSON_HEADERS)
    data = yamlserializer.deserialize(seed.read_text())
    template = data["interactions"][0]
    body = template["response"]["body"]["string"]
    interactions = []
    for i in range(count):
        clone = copy.deepcopy(template)
        clone["request"]["uri"] = f"{base}/json?i={i}"
        clone["response"]["body"]["string"] = body.replace('"id":"000000"', f'"id":"{i % 1_000_000:06d}"', 1)
        interactions.append(clone)
    data["interactions"] = interactions
    out.write_text(yamlserializer.serialize(data))
    return {"seconds": (now_ns() - start) / 1e9, "path": str(out)}


def _span_transport(inner: Any, tracer: Any) -> Any:
    """An httpx transport wrapping ``inner`` in one bare SDK span per request (replay's ``mock-span``)."""
    import httpx
    from opentelemetry.trace import SpanKind

    class SpanTransport(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            attributes = {"http.request.method": request.method, "url.full": str(request.url)}
            with tracer.start_as_current_span(request.method, kind=SpanKind.CLIENT, attributes=attributes) as span:
                response: httpx.Response = inner.handle_request(request)
                span.set_attribute("http.response.status_code", response.status_code)
                return response

        def close(self) -> None:
            inner.close()

    return SpanTransport()


def scenario_replay(spec: Spec) -> Result:
    """Per-call cost of serving recorded calls from a recording of ``count`` calls, and its load time."""
    kind, count, base = spec["contender"], spec["count"], spec["base_url"]
    path = spec["recording"]
    chosen, spare = _indices(count, spec["sample"], spec["warmup"])
    bodies = replay_bodies(spec, [*chosen, *spare])
    import httpx

    def calls(client: httpx.Client) -> list[int]:
        for i in spare:
            client.post(f"{base}/json?i={i}", content=bodies[i], headers=JSON_HEADERS).read()
        timings = []
        with _profiled(spec):
            for i in chosen:
                url = f"{base}/json?i={i}"
                sent = bodies[i]
                begin = now_ns()
                response = client.post(url, content=sent, headers=JSON_HEADERS)
                body = response.content
                timings.append(now_ns() - begin)
                if response.status_code != 200 or b'"id":"%06d"' % i not in body:
                    raise Skip(f"{kind} served a wrong response for call {i}")
        return timings

    extra: Result = {}
    start = now_ns()
    if kind in ("mock", "mock-otel", "mock-span"):
        with open(path, encoding="utf-8") as handle:
            table = {e["url"]: (e["status"], e["headers"], e["body"].encode()) for e in json.load(handle)}

        def handler(request: httpx.Request) -> httpx.Response:
            status, headers, content = table[str(request.url)]
            return httpx.Response(status, headers=headers, content=content)

        load_s = (now_ns() - start) / 1e9
        transport: httpx.BaseTransport = httpx.MockTransport(handler)
        if kind == "mock-otel":
            # The floor traced the way OpenTelemetry traces httpx: its own transport wrapper (one
            # span per call, no bodies), an SDK provider, a batch processor, an exporter that
            # discards. What OpenTelemetry's own tracing adds to each served call.
            _require("opentelemetry.instrumentation.httpx", "opentelemetry-instrumentation-httpx")
            from opentelemetry.instrumentation.httpx import SyncOpenTelemetryTransport

            provider, exporter = otel_provider()
            transport = SyncOpenTelemetryTransport(transport, tracer_provider=provider)
        elif kind == "mock-span":
            # The least a traced call can cost: one SDK span with the request's method, URL and
            # status, nothing else (no semantic-convention helpers, no metrics, no bodies).
            provider, exporter = otel_provider()
            transport = _span_transport(transport, provider.get_tracer("perf"))
        with httpx.Client(transport=transport) as client:
            timings = calls(client)
        if kind in ("mock-otel", "mock-span"):
            provider.force_flush()
            if exporter.spans < len(timings):
                raise Skip(f"{kind} exported {exporter.spans} spans for {len(timings)} timed calls")
    elif kind == "vcrpy":
        _require("vcr", "vcrpy")
        import vcr

        cassette = vcr.VCR().use_cassette(path, record_mode="none")
        cassette.__enter__()
        load_s = (now_ns() - start) / 1e9
        try:
            with httpx.Client() as client:
                timings = calls(client)
        finally:
            cassette.__exit__(None, None, None)
    else:
        # The memory the loaded recording holds: resident set at the first served call minus before
        # the import (the bodies the calls send are read before both).
        rss_before = _rss_bytes()
        # "agenttrace" (and "agenttrace-baseline", another tree): load_events() + init(replay_events=...).
        # "agenttrace-file": init(replay_events_file=...), which builds each exchange straight from
        # its span (no event list in between); timed from the same start, so its load_events_s is
        # 0 and its init_s holds the import of agenttrace that load_events_s holds for the others.
        import agenttrace

        imported = now_ns()
        trace_dir = str(Path(spec["scratch"]) / "traces")
        if kind in ("agenttrace-file", "agenttrace-untraced"):
            # "agenttrace-untraced": the pytest plugin's default, replay's own trace not written.
            written = kind == "agenttrace-file"
            with _profiled(spec, "load"):
                loaded = start
                try:
                    agenttrace.init(
                        mode="replay",
                        replay_events_file=path,
                        trace_dir=trace_dir,
                        quiet=True,
                        local_files=written,
                        backend=False,
                    )
                except ValueError as exc:  # ConfigurationError: a tree without the setting
                    if "unknown setting" in str(exc):
                        raise Skip("init() has no replay_events_file setting in this tree") from exc
                    raise
                configured = now_ns()
        else:
            load_events = getattr(agenttrace, "load_events", None)
            if load_events is None:
                raise Skip("agenttrace.load_events() does not exist yet (replay layer not built)")
            with _profiled(spec, "load"):
                events = load_events(path)
                loaded = now_ns()
                agenttrace.init(mode="replay", replay_events=events, trace_dir=trace_dir, quiet=True)
                configured = now_ns()
        _ablate(spec.get("ablate"))
        stamps: list[int] = []
        held: list[int | None] = []

        @agenttrace.run("perf-replay")
        def replay() -> list[int]:
            stamps.append(now_ns())
            held.append(_rss_bytes())
            with httpx.Client() as client:
                return calls(client)

        timings = replay()
        load_s = (stamps[0] - start) / 1e9
        extra = {
            "load_events_s": (loaded - start) / 1e9,
            "init_s": (configured - loaded) / 1e9,
            "run_start_s": (stamps[0] - configured) / 1e9,
            "import_s": (imported - start) / 1e9,  # part of load_events_s (init_s for agenttrace-file)
            "file_bytes": os.path.getsize(path),
        }
        if rss_before is not None and held and held[0] is not None:
            extra["held_bytes"] = held[0] - rss_before
    return {"us_per_call": statistics.median(timings) / 1e3, "load_s": load_s, "sampled": len(chosen), **extra}


def _ablate(what: str | None) -> None:
    """Switch off one part of AgentTrace's replay run, to count what that part costs (instructions.py).

    ``no-file``: the run's spans are not written (the trace writer never sees them);
    ``no-span``: no span at all (a no-op tracer: neither the SDK's span nor the file).
    """
    if not what:
        return
    from agenttrace.exporters.processor import RunFileProcessor

    from agenttrace._core.runtime import runtime

    if what == "no-file":
        RunFileProcessor.on_end = lambda self, span: None  # type: ignore[method-assign]
    elif what == "no-span":
        from opentelemetry import trace

        runtime.tracer = trace.NoOpTracer()
    else:
        raise ValueError(f"unknown ablation {what!r}: expected no-file or no-span")


def scenario_export(spec: Spec) -> Result:
    """A 200-call AgentTrace run; the harness times the whole process, this times the run."""
    import httpx

    import agenttrace

    if spec["contender"] == "backend" and importlib.util.find_spec("agenttrace.exporters.backend") is None:
        raise Skip("agenttrace.exporters.backend does not exist yet (export layer not built)")
    url = spec["base_url"] + "/json?i=1"
    agenttrace.init(quiet=True)
    start = now_ns()

    @agenttrace.run("perf-export")
    def agent() -> None:
        with httpx.Client() as client:
            for _ in range(spec["calls"]):
                client.post(url, content=REQUEST_BODY, headers=JSON_HEADERS).read()

    agent()
    return {"run_s": (now_ns() - start) / 1e9}


def scenario_memory(spec: Spec) -> Result:
    """Peak RSS while reading ``calls`` responses of 1 MiB each with httpx under the contender."""
    url = spec["base_url"] + "/big"
    contender = make_contender(spec, "httpx")
    spec["expect_calls"] = spec["warmup"] + spec["calls"]
    marks: dict[str, int] = {}

    def work() -> int:
        client = _client("httpx")
        total = 0
        for _ in range(spec["warmup"]):
            total += len(client.get(url).content)
        marks["before_kib"] = _rss_kib()
        for _ in range(spec["calls"]):
            response = client.get(url)
            total += len(response.content)
            del response
        client.close()
        return total

    start = now_ns()
    total = contender.run(work)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds = (now_ns() - start) / 1e9
    checked = contender.check()
    return {
        "peak_mib": peak_kib / 1024,
        "before_mib": marks["before_kib"] / 1024,
        "received_mib": total / (1 << 20),
        "seconds": seconds,
        **checked,
    }


_PYTEST_CONFTEST = """
import json, os, pytest

_durations = {}


def pytest_runtest_logreport(report):
    _durations[report.nodeid] = _durations.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session):
    with open(os.environ["PERF_DURATIONS"], "w") as handle:
        json.dump(_durations, handle)
"""

_PYTEST_TEST = """
import json, os, httpx, pytest

BASE = os.environ["PERF_BASE"]
COUNT = int(os.environ["PERF_COUNT"])
BODY = os.environ["PERF_BODY"].encode()
HEADERS = {"content-type": "application/json"}


def calls(client):
    for i in range(COUNT):
        response = client.post(f"{BASE}/json?i={i}", content=BODY, headers=HEADERS)
        assert b'"id":"%06d"' % i in response.content


# Both clients made once, at import: an httpx.Client() with its default transport builds an SSL
# context (about 25 ms here) that a MockTransport client never does, and that is not replay's cost.
CLIENT = httpx.Client()
TABLE = {}


def handler(request):
    status, headers, content = TABLE[str(request.url)]
    return httpx.Response(status, headers=headers, content=content)


MOCK_CLIENT = httpx.Client(transport=httpx.MockTransport(handler))


def replay():
    calls(CLIENT)


def mock():
    with open(os.environ["PERF_MOCK_TABLE"], encoding="utf-8") as handle:
        TABLE.clear()
        TABLE.update((e["url"], (e["status"], e["headers"], e["body"].encode())) for e in json.load(handle))
    calls(MOCK_CLIENT)


marked = pytest.mark.agenttrace(path=os.environ["PERF_RECORDING"])


def own(k):
    # A copy of the recording for this test alone, as in a suite with a recording per test: the
    # plugin keeps the last recording it loaded, so tests sharing one file load it once.
    return pytest.mark.agenttrace(path=os.path.join(os.environ["PERF_OWN"], f"recording-{k}.jsonl"))
"""


def scenario_pytest_replay(spec: Spec) -> Result:
    """A pytest session of marked tests replaying ``count`` calls each, beside the same test on MockTransport.

    Round k runs ``test_k_mock`` and ``test_k_replay`` (the order alternating by round) in one
    session; each test's cost is its setup + call + teardown duration as pytest reports it.
    The marked tests replay one recording (loaded by the first, kept by the plugin for the
    others), or with ``own=True`` each a copy of its own (loaded and checked in each test).
    ``record=True``: one marked test records the recording instead (the servers must be up).
    """
    import shutil
    import subprocess

    folder = Path(spec["scratch"]) / "project"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "conftest.py").write_text(_PYTEST_CONFTEST)
    lines = [_PYTEST_TEST]
    if spec.get("record"):
        lines.append("@marked\ndef test_record():\n    replay()\n")
    else:
        own_folder = Path(spec["scratch"]) / "own"
        own_folder.mkdir(exist_ok=True)
        for k in range(spec["rounds"] + 1):  # round 0: the session's first marked test (not counted)
            order = ("mock", "replay") if k % 2 else ("replay", "mock")
            marked = "@marked\n"
            if spec.get("own"):
                shutil.copyfile(spec["recording"], own_folder / f"recording-{k}.jsonl")  # a new file
                marked = f"@own({k})\n"
            for kind in order:
                mark = marked if kind == "replay" else ""
                lines.append(f"{mark}def test_{k}_{kind}():\n    {kind}()\n")
    (folder / "test_perf_agent.py").write_text("\n".join(lines))
    durations = Path(spec["scratch"]) / "durations.json"
    env = {
        **os.environ,
        "PERF_BASE": spec["base_url"],
        "PERF_COUNT": str(spec["count"]),
        "PERF_BODY": REQUEST_BODY.decode(),
        "PERF_MOCK_TABLE": spec["mock_table"],
        "PERF_RECORDING": spec["recording"],
        "PERF_DURATIONS": str(durations),
        "PERF_OWN": str(Path(spec["scratch"]) / "own"),
    }
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", str(folder)]
    done = subprocess.run(command, check=False, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise Skip(f"pytest exited {done.returncode}: {(done.stdout + done.stderr)[-600:]}")
    if spec.get("record"):
        return {"recorded": Path(spec["recording"]).exists()}
    seconds = json.loads(durations.read_text())
    rounds = range(1, spec["rounds"] + 1)

    def pick(kind: str, k: int) -> float:
        return float(next(v for n, v in seconds.items() if n.endswith(f"::test_{k}_{kind}")))

    mock_s = [pick("mock", k) for k in rounds]
    replay_s = [pick("replay", k) for k in rounds]
    return {
        "mock_s": statistics.median(mock_s),
        "replay_s": statistics.median(replay_s),
        "ratio": statistics.median(r / m for r, m in zip(replay_s, mock_s)),
        "first_replay_s": pick("replay", 0),
        "first_mock_s": pick("mock", 0),
    }


SCENARIOS: dict[str, Callable[[Spec], Result]] = {
    "record": scenario_record,
    "stream": scenario_stream,
    "replay-setup": scenario_replay_setup,
    "replay": scenario_replay,
    "pytest-replay": scenario_pytest_replay,
    "export": scenario_export,
    "memory": scenario_memory,
}


def main(argv: list[str] | None = None) -> int:
    """Run the spec given as the one argument; print ``PERF-RESULT <json>`` last."""
    args = sys.argv[1:] if argv is None else argv
    spec: Spec = json.loads(args[0])
    try:
        result = SCENARIOS[spec["scenario"]](spec)
    except Skip as exc:
        result = {"skipped": str(exc)}
    except Exception as exc:
        traceback.print_exc()
        result = {"skipped": f"failed: {type(exc).__name__}: {exc}"[:300]}
    sys.stdout.write(RESULT_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
