"""In-process pieces of export: batch splitting, the spool's claims and formats, the exporter-thread marker."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from agenttrace.exporters.backend import count_spans, split_request
from agenttrace.exporters.lanes import ExportLane
from agenttrace.exporters.spool import Delivery, Spool, drain, request_bytes
from agenttrace.exporters.traffic import is_exporter_thread
from opentelemetry import context as otel_context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from agenttrace._format.otlp_json import traces_data_line


def finished_spans(count: int) -> list[ReadableSpan]:
    """``count`` ended spans from two scopes of a private provider."""
    provider = TracerProvider(resource=Resource.create({"service.name": "units"}))
    spans = []
    for i in range(count):
        tracer = provider.get_tracer("scope-a" if i % 2 else "scope-b")
        span = tracer.start_span(f"s{i}")
        span.end()
        spans.append(span)
    return spans  # type: ignore[return-value]


def test_split_request_keeps_every_span_resource_and_scope() -> None:
    """Halves hold all spans once, each under its own resource and scope."""
    request = encode_spans(finished_spans(7))
    halves = split_request(request)
    assert halves is not None
    assert [count_spans(h) for h in halves] == [3, 4]
    names = {
        (ss.scope.name, s.name) for h in halves for rs in h.resource_spans for ss in rs.scope_spans for s in ss.spans
    }
    assert names == {("scope-a" if i % 2 else "scope-b", f"s{i}") for i in range(7)}
    assert all(rs.resource == request.resource_spans[0].resource for h in halves for rs in h.resource_spans)
    assert split_request(encode_spans(finished_spans(1))) is None


def test_spool_claim_is_exclusive_and_dead_claims_are_released(tmp_path: Path) -> None:
    """A claimed file is invisible to others; a claim nobody holds (its process died) returns to the pending list."""
    spool = Spool(tmp_path, "agenttrace", 1 << 20)
    assert spool.put(b"abc", 3)
    (path,) = spool.pending()
    claimed = spool.claim(path)
    assert claimed is not None
    assert spool.pending() == []
    assert spool.claim(path) is None
    spool.release(claimed)
    os.rename(path, path.with_name(f"{path.name}.claimed-999999999"))  # what a claimer that died leaves
    assert spool.pending() == [path]
    assert [count for _, count in spool.files()] == [3]


def rich_spans() -> list[ReadableSpan]:
    """A parent and a child with every attribute type, an event, a link, a status and a trace state."""
    provider = TracerProvider(resource=Resource.create({"service.name": "units", "n": 3}))
    tracer = provider.get_tracer("scope", "1.0")
    with tracer.start_as_current_span("parent", kind=SpanKind.SERVER) as parent:
        attributes = {"s": 'te"xt', "i": -7, "f": 1.5, "b": True, "arr": ("a", "b"), "ints": (1, 2)}
        with tracer.start_as_current_span(
            "child", kind=SpanKind.CLIENT, links=[Link(parent.get_span_context(), {"why": "x"})], attributes=attributes
        ) as child:
            child.add_event("payload", {"body": "x" * 1000, "size": 1000})
            child.set_status(Status(StatusCode.ERROR, "broken"))
    return [child, parent]  # type: ignore[list-item]


def test_json_spool_files_are_sent_as_the_protobuf_encoder_would() -> None:
    """A file written at exit as OTLP JSON is converted to the very request encode_spans makes."""
    spans = rich_spans()
    converted = ExportTraceServiceRequest.FromString(request_bytes("1-2-3-2.json", traces_data_line(spans).encode()))
    assert converted == encode_spans(spans)
    assert request_bytes("1-2-3-2.pb", b"as is") == b"as is"


def test_unreadable_spool_file_is_set_aside_not_retried(tmp_path: Path) -> None:
    """A file no reader understands does not block the files after it; it is kept aside for inspection."""
    spool = Spool(tmp_path, "agenttrace", 1 << 20)
    assert spool.put(b"{not json", 1, kind="json")
    assert spool.put(encode_spans(finished_spans(2)).SerializeToString(), 2)
    sent: list[int] = []

    def send(data: bytes) -> Delivery:
        sent.append(len(ExportTraceServiceRequest.FromString(data).resource_spans))
        return Delivery(delivered=2)

    outcome = drain(spool, send)
    assert outcome.delivered == 2
    assert len(sent) == 1
    assert spool.pending() == []
    assert [p.name.endswith(".json.unreadable") for p in (tmp_path / "agenttrace").iterdir()] == [True]


def test_release_mine_gives_back_only_this_process_claims(tmp_path: Path) -> None:
    """At exit a process gives back the files it claimed; another process's claim stays."""
    spool = Spool(tmp_path, "agenttrace", 1 << 20)
    assert spool.put(b"a", 1)
    assert spool.put(b"b", 1, kind="json")
    first, second = spool.pending()
    mine = spool.claim(first)
    assert mine is not None
    # As the parent process (alive) claims a file: renamed, and locked for as long as it sends.
    other = second.with_name(f"{second.name}.claimed-{os.getppid()}")
    os.rename(second, other)
    with open(other, "rb") as theirs:
        fcntl.flock(theirs, fcntl.LOCK_EX | fcntl.LOCK_NB)
        spool.release_mine()
        assert spool.pending() == [first]
        assert other.exists()


class Recording(SpanExporter):
    """Records, per export call, the thread's marker and suppression flag."""

    def __init__(self) -> None:
        self.calls: list[tuple[bool, bool, str]] = []
        self.done = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Note what the exporting thread looks like."""
        suppressed = bool(otel_context.get_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY))
        self.calls.append((is_exporter_thread(), suppressed, threading.current_thread().name))
        self.done.set()
        return SpanExportResult.SUCCESS


def test_lane_exports_on_a_marked_suppressed_thread() -> None:
    """Export runs on a thread named agenttrace-export-*, marked for the sandbox, instrumentation suppressed."""
    exporter = Recording()
    lane = ExportLane(exporter, name="units")
    (span,) = finished_spans(1)
    lane.on_end(span)
    assert lane.force_flush(10_000)
    assert exporter.calls == [(True, True, "agenttrace-export-units")]
    assert not is_exporter_thread()
    lane.close(0)
