"""In-process pieces of export: batch splitting, the spool's claims, the exporter-thread marker."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

from agenttrace.exporters.backend import count_spans, split_request
from opentelemetry import context as otel_context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from agenttrace._export import ExportLane, is_exporter_thread
from agenttrace._spool import Spool


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
    """A claimed file is invisible to others; a claim by a dead pid returns to the pending list."""
    spool = Spool(tmp_path, "agenttrace", 1 << 20)
    assert spool.put(b"abc", 3)
    (path,) = spool.pending()
    claimed = spool.claim(path)
    assert claimed is not None
    assert spool.pending() == []
    assert spool.claim(path) is None
    dead = claimed.with_name(f"{path.name}.claimed-999999999")
    os.rename(claimed, dead)
    assert spool.pending() == [path]
    assert [count for _, count in spool.files()] == [3]


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
