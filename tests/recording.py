"""Helpers to run an agent as a traced run and read back the trace file it wrote."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import agenttrace
from agenttrace._capture.model import Exchange
from agenttrace._format.exchange import exchange_from_span
from agenttrace._format.otlp_json import decode_attributes

__all__ = ["Recorder", "Trace", "read_trace", "replaying"]


@dataclass
class Trace:
    """The spans of one recorded run, with its call spans decoded."""

    spans: list[dict[str, Any]]

    @property
    def call_spans(self) -> list[dict[str, Any]]:
        """Call spans in ordinal order."""
        calls = [s for s in self.spans if decode_attributes(s.get("attributes")).get("agenttrace.kind") == "call"]
        return sorted(calls, key=lambda s: decode_attributes(s["attributes"]).get("agenttrace.call.ordinal", 0))

    @property
    def exchanges(self) -> list[Exchange]:
        """Every recorded HTTP exchange, in ordinal order (socket and DNS spans left out)."""
        return [
            exchange_from_span(s)
            for s in self.call_spans
            if decode_attributes(s.get("attributes")).get("agenttrace.call.library") != "socket"
        ]

    def attrs(self, span: dict[str, Any]) -> dict[str, Any]:
        """A span's attributes as a dict."""
        return decode_attributes(span.get("attributes"))

    def events(self, span: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """A span's events by name, attributes as dicts."""
        return {e["name"]: decode_attributes(e.get("attributes")) for e in span.get("events", [])}


def read_trace(path: Path) -> Trace:
    """All spans of a trace file."""
    spans: list[dict[str, Any]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            for rs in json.loads(line)["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    spans.extend(ss["spans"])
    return Trace(spans)


class Recorder:
    """Runs a function as an ``@agenttrace.run`` and returns its result and its trace."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def run(self, fn: Callable[..., Any], *args: Any) -> tuple[Any, Trace]:
        """Run ``fn`` (sync or async) as a traced run; return its result and the trace written."""
        before = set(self.folder.glob("*.jsonl"))
        wrapped = agenttrace.run("test-agent")(fn)
        result = asyncio.run(wrapped(*args)) if inspect.iscoroutinefunction(fn) else wrapped(*args)
        new = sorted(set(self.folder.glob("*.jsonl")) - before)
        assert len(new) == 1, f"expected one new trace file, got {new}"
        return result, read_trace(new[0])


@contextlib.contextmanager
def replaying(folder: Path, level: str = "governance", **settings: Any) -> Iterator[None]:
    """Replay the one trace file in ``folder`` (the replay's own trace goes to ``folder/replay``).

    ``settings`` are more init() settings (``filter=...``); record mode into ``folder``, with no
    filter, is configured again afterwards.
    """
    (recording,) = folder.glob("*.jsonl")
    agenttrace.init(
        trace_dir=str(folder / "replay"),
        quiet=True,
        mode="replay",
        governance_level=level,
        replay_events_file=str(recording),
        **settings,
    )
    try:
        yield
    finally:
        agenttrace.init(trace_dir=str(folder), quiet=True, filter=[])


def hex_ids_to_base64(node: Any) -> Any:
    """OTLP JSON writes ids as hex; protobuf's JSON parser wants base64 for bytes fields."""
    if isinstance(node, dict):
        return {
            k: base64.b64encode(bytes.fromhex(v)).decode()
            if k in ("traceId", "spanId", "parentSpanId")
            else hex_ids_to_base64(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [hex_ids_to_base64(v) for v in node]
    return node
