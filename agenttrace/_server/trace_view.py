"""The run page: a trace's timeline, drawn in parts, with LLM calls as conversations and readable payloads.

``GET /traces/{trace_id}`` renders the page with its first part; ``static/trace.js`` fetches the
next parts from ``GET /traces/{trace_id}/part?after=`` (the same rows, rendered by the same
template, as JSON) as the reader scrolls. A part is at most :data:`PART_SPANS` spans or
:data:`PART_BYTES` of stored lines, whichever comes first (one span at least), so what one view
costs follows the part, not the trace: a 10,000-span trace is never parsed or rendered at once.

Each row is a span: its place and length on the trace's time line (the waterfall), its kind,
name, duration and errors, and folded under it its attributes, its payloads (JSON pretty-printed
and foldable, long bodies cut at :data:`BODY_SHOWN` with the rest loaded on demand, binary bodies
described) and, for a call to a model API, the conversation (:func:`agenttrace._format.genai.describe`).

A replay's page links to the recording it replayed when the store has it, and ``GET
/traces/{trace_id}/diff`` shows the two compared call by call (:func:`agenttrace._format.diff.compare`,
what ``agenttrace diff`` prints).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.KIND
from agenttrace._format.diff import DiffNode, compare, noted
from agenttrace._format.files import SpanRecord, spans_of_lines
from agenttrace._format.tree import call_summary
from agenttrace._format.usage import Prices, call_usage
from agenttrace._server.pages import (
    Payload,
    _default_prices,
    _duration,
    _headers,
    _int,
    _templates,
    _usage_text,
    summary_totals,
    totals_text,
)
from agenttrace._server.store.records import TraceSummary

__all__ = [
    "BODY_SHOWN",
    "DIFF_MAX_SPANS",
    "PART_BYTES",
    "PART_SPANS",
    "depths",
    "render_diff",
    "render_part",
    "render_run_page",
    "replay_of",
]

PART_SPANS = 200  # spans of one part of the page
PART_BYTES = 2 * 2**20  # stored lines read for one part (the part ends at the span that passes it)
BODY_SHOWN = 16 * 1024  # characters of a body on the page; "load all" fetches the rest
FOLD_BYTES = 64 * 1024  # JSON bodies up to this size are drawn as a foldable tree
FOLD_NODES = 2000  # ... of at most this many values
MAX_DEPTH = 64  # indentation levels of the timeline
DIFF_MAX_SPANS = 20_000  # spans of the two traces the diff view compares (more: agenttrace diff)


@dataclass
class JsonNode:
    """One value of a foldable JSON body: a container (``items``) or a leaf (``text``)."""

    key: str
    text: str = ""
    opener: str = ""  # "{" or "[" for a container
    items: list[JsonNode] = field(default_factory=list)


@dataclass
class Message:
    role: str
    content: str
    tool_calls: list[tuple[str, str]] = field(default_factory=list)  # (name, arguments pretty-printed)


@dataclass
class Conversation:
    """An LLM call as a conversation: what was sent, the tools offered, the answer, how it came."""

    model: str
    usage: str
    messages: list[Message] = field(default_factory=list)
    tools: list[tuple[str, str, str]] = field(default_factory=list)  # (name, description, parameters)
    answer: list[Message] = field(default_factory=list)
    stream: str = ""
    finish: str = ""
    served: str = ""  # a replay's call: where the answer it served is


@dataclass
class Body:
    text: str | None = None  # as shown (pretty-printed JSON, or the first BODY_SHOWN characters)
    tree: JsonNode | None = None  # a foldable JSON body
    note: str = ""
    load_url: str = ""  # where the whole body is, when the page shows part of it


@dataclass
class Row:
    span_id: str
    depth: int
    kind: str
    tag: str
    title: str
    duration: str
    offset: float  # the waterfall bar: where it starts and how long it is, in % of the trace
    width: float
    failed: bool
    note: str = ""
    status_message: str = ""
    llm: str = ""
    attributes: list[tuple[str, str]] = field(default_factory=list)
    payloads: list[tuple[Payload, Body]] = field(default_factory=list)
    conversation: Conversation | None = None


def depths(outline: Sequence[tuple[str, str, int]]) -> tuple[dict[str, int], set[str]]:
    """Each span's depth in the tree, from every span's ``(span_id, parent_span_id, start_ns)``, and
    the spans drawn as roots because their parents form a cycle (of each cycle the earliest, as
    :func:`agenttrace._format.tree.span_tree` cuts it). A span whose parent is not stored is at 0."""
    parent = {span_id: up for span_id, up, _ in outline}
    start = {span_id: at for span_id, _, at in outline}
    cut: set[str] = set()
    done: set[str] = set()
    for span_id in sorted(parent, key=lambda s: (start[s], s)):
        chain: list[str] = []
        at = span_id
        while at in parent and at not in done and at not in chain:
            chain.append(at)
            at = parent[at]
        if at in chain:  # a cycle: the chain from ``at`` on
            cycle = chain[chain.index(at) :]
            cut.add(min(cycle, key=lambda s: (start[s], s)))
        done.update(chain)
    out: dict[str, int] = {}
    for span_id in parent:
        chain = []
        at = span_id
        while at in parent and at not in out and at not in cut and len(chain) <= len(parent):
            chain.append(at)
            at = parent[at]
        base = out.get(at, 0) if at in out else (0 if at in cut else -1)
        if at in cut:
            out[at] = 0
        for number, below in enumerate(reversed(chain)):
            out[below] = min(base + 1 + number, MAX_DEPTH)
    return out, cut


# --- payloads ------------------------------------------------------------------------------------


def _fold(value: Any, key: str, budget: list[int]) -> JsonNode:
    budget[0] -= 1
    if isinstance(value, dict):
        return JsonNode(key, opener="{", items=[_fold(v, json.dumps(k), budget) for k, v in value.items()])
    if isinstance(value, list):
        return JsonNode(key, opener="[", items=[_fold(v, "", budget) for v in value])
    return JsonNode(key, text=json.dumps(value, ensure_ascii=False))


def _size(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + sum(_size(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(_size(v) for v in value)
    return 1


def _content_type(headers: Sequence[tuple[str, str]]) -> str:
    return next((v for k, v in headers if k.lower() == "content-type"), "")


def _body(attrs: Mapping[str, Any], headers: Sequence[tuple[str, str]], load_url: str) -> Body:
    size = _int(attrs.get(S.BODY_SIZE, 0))
    notes = [f"{size:,} bytes" if size is not None else f"size {attrs.get(S.BODY_SIZE)!r}"]
    if attrs.get(S.BODY_TRUNCATED):
        notes.append("truncated when recorded")
    if attrs.get(S.BODY_FILTERED):
        notes.append("filtered when recorded")
    chunks = attrs.get(S.STREAM_CHUNK_SIZES)
    if isinstance(chunks, list) and len(chunks) > 1:
        notes.append(f"streamed in {len(chunks)} chunks ({attrs.get(S.STREAM_END, 'complete')})")
    raw = str(attrs.get(S.BODY, ""))
    if attrs.get(S.BODY_ENCODING) == "base64":
        kind = _content_type(headers) or "no content type"
        recorded = len(raw) * 3 // 4
        notes.append(f"binary ({kind}, about {recorded:,} bytes recorded): not shown")
        return Body(note=", ".join(notes), load_url=load_url)
    if not raw:
        return Body(note=", ".join(notes))
    if len(raw) <= FOLD_BYTES and raw.lstrip()[:1] in ("{", "["):
        try:
            data = json.loads(raw)
        except ValueError:
            pass
        else:
            if _size(data) <= FOLD_NODES:
                return Body(tree=_fold(data, "", [FOLD_NODES]), note=", ".join(notes))
            raw = json.dumps(data, indent=2, ensure_ascii=False)
    if len(raw) > BODY_SHOWN:
        notes.append(f"the first {BODY_SHOWN:,} characters of {len(raw):,} shown")
        return Body(text=raw[:BODY_SHOWN], note=", ".join(notes), load_url=load_url)
    return Body(text=raw, note=", ".join(notes))


def _payloads(span: SpanRecord, base: str) -> list[tuple[Payload, Body]]:
    method, url, _ = call_summary(span)
    out: list[tuple[Payload, Body]] = []
    for number, (name, _, event) in enumerate(span.events):
        load_url = f"{base}/events/{number}/body"
        headers = _headers(event.get(S.HTTP_HEADERS))
        if name == S.EVENT_REQUEST:
            title = f"request: {event.get(S.HTTP_METHOD, method)} {event.get(S.HTTP_URL, url)}"
            out.append((Payload("request", title, headers), _body(event, headers, load_url)))
        elif name == S.EVENT_RESPONSE:
            if S.SERVED_SPAN_ID in event:
                note = (
                    f"served from recorded call span {event.get(S.SERVED_SPAN_ID)} of trace "
                    f"{event.get(S.SERVED_TRACE_ID, '')}"
                )
                title = f"response: {event.get(S.HTTP_STATUS, '')} (served by the replay)"
                out.append((Payload("response", title), Body(note=note)))
                continue
            title = f"response: {event.get(S.HTTP_STATUS, '')} {event.get(S.HTTP_REASON, '')}".rstrip()
            out.append((Payload("response", title, headers), _body(event, headers, load_url)))
        elif name == S.EVENT_ERROR:
            title = f"error: {event.get(S.ERROR_TYPE, '')}"
            note = f"raised during the {event.get(S.ERROR_PHASE, 'request')}"
            out.append((Payload("error", title), Body(text=str(event.get(S.ERROR_MESSAGE, "")), note=note)))
    return out


# --- conversations -------------------------------------------------------------------------------


def _pretty(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def _tool_definitions(body: Any) -> list[tuple[str, str, str]]:
    """The tools a request offered the model: OpenAI Chat (``function``), Responses and Anthropic forms."""
    tools = body.get("tools") if isinstance(body, dict) else None
    out: list[tuple[str, str, str]] = []
    for tool in tools if isinstance(tools, list) else ():
        if not isinstance(tool, dict):
            continue
        function = tool.get("function")
        spec: dict[str, Any] = function if isinstance(function, dict) else tool
        parameters = spec.get("parameters", spec.get("input_schema"))
        out.append(
            (
                str(spec.get("name", tool.get("type", "?"))),
                str(spec.get("description", "")),
                "" if parameters is None else json.dumps(parameters, indent=2, ensure_ascii=False),
            )
        )
    return out


def _messages(found: Sequence[Any]) -> list[Message]:
    return [Message(m.role, m.content, [(name, _pretty(args)) for name, args in m.tool_calls]) for m in found]


def _conversation(span: SpanRecord, prices: Prices) -> Conversation | None:
    from agenttrace._format.genai import describe_recorded
    from agenttrace._format.otlp_json import decode_body

    events = {name: (at, attrs) for name, at, attrs in span.events}
    if S.EVENT_REQUEST not in events:
        return None
    request = events[S.EVENT_REQUEST][1]
    responded = events.get(S.EVENT_RESPONSE)
    call = describe_recorded(request, None if responded is None else responded[1], content=True)
    if call is None:
        return None
    try:
        request_body = decode_body(str(request.get(S.BODY, "")), str(request.get(S.BODY_ENCODING, "utf-8")))
        sent = json.loads(request_body) if request_body[:1] in (b"{", b"[") else None
    except (ValueError, TypeError):
        sent = None
    usage = call_usage(span)
    found = Conversation(
        model=call.model or "model not said",
        usage="" if usage is None else _usage_text(usage, prices),
        messages=_messages(call.input_messages),
        tools=_tool_definitions(sent),
        answer=_messages(call.output_messages),
        finish=", ".join(call.finish_reasons),
    )
    if responded is not None and S.SERVED_SPAN_ID in responded[1]:
        found.served = f"served by the replay from call span {responded[1][S.SERVED_SPAN_ID]} of the recording"
    elif responded is not None:
        at, response = responded
        chunks = response.get(S.STREAM_CHUNK_SIZES)
        offsets = response.get(S.STREAM_CHUNK_OFFSETS)
        if call.stream or (isinstance(chunks, list) and len(chunks) > 1):
            count = len(chunks) if isinstance(chunks, list) else 0
            parts = [f"streamed in {count} chunk{'' if count == 1 else 's'}"] if count else ["streamed"]
            first = _int(offsets[0]) if isinstance(offsets, list) and offsets else None
            if first is not None and at >= span.start_ns:
                parts.append(f"first chunk {(at - span.start_ns + first) / 1e6:.1f} ms after the request")
            found.stream = ", ".join(parts)
    return found


# --- rows ----------------------------------------------------------------------------------------


def _attribute(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 2000 else text[:1999] + "…"


def _row(span: SpanRecord, depth: int, summary: TraceSummary, prices: Prices, *, cut: bool = False) -> Row:
    attrs = span.attributes
    kind = str(attrs.get(S.KIND, ""))
    whole = max(summary.end_ns - summary.start_ns, 1)
    offset = min(max((span.start_ns - summary.start_ns) / whole * 100, 0.0), 100.0)
    width = min(max((span.end_ns - span.start_ns) / whole * 100, 0.3), 100.0 - offset)
    row = Row(
        span_id=span.span_id,
        depth=depth,
        kind=kind or "other",
        tag=kind or span.scope or "span",
        title=span.name,
        duration=_duration(span.start_ns, span.end_ns),
        offset=round(offset, 3),
        width=round(max(width, 0.3), 3),
        failed=span.status_code == 2,
        status_message=span.status_message,
    )
    if kind == "run":
        row.title = str(attrs.get(S.RUN_NAME, span.name))
        if attrs.get(S.RUN_MODE) == "replay":
            notes = ["replay"]
            if attrs.get(S.REPLAY_LIVE_FROM):
                notes.append(f"live from {attrs[S.REPLAY_LIVE_FROM]}")
            if attrs.get(S.REPLAY_FIRST_DIVERGENCE):
                notes.append(f"first divergence: {attrs[S.REPLAY_FIRST_DIVERGENCE]}")
            row.note = "; ".join(notes)
    elif kind == "step":
        row.tag = str(attrs.get(S.STEP_TYPE, "step"))
    elif kind == "call":
        method, url, outcome = call_summary(span)
        row.title = f"{method} {url} → {outcome}"
        if attrs.get(S.CALL_REPLAYED):
            row.note = "replayed"
        elif attrs.get(S.CALL_LIVE):
            row.note = "live (the replay let it through)"
        usage = call_usage(span)
        if usage is not None:
            row.llm = _usage_text(usage, prices)
            row.tag = "llm"
            row.conversation = _conversation(span, prices)
        row.payloads = _payloads(span, f"/traces/{span.trace_id}/spans/{span.span_id}")
        if any(p.kind == "error" for p, _ in row.payloads):
            row.failed = True
    if kind != "call":
        hidden = (S.RUN_SOURCE, S.RUN_DISTRIBUTIONS)  # long; in the download
        row.attributes = [(k, _attribute(v)) for k, v in sorted(attrs.items()) if k not in hidden]
    if cut:
        row.note = f"{row.note} (its parents form a cycle: shown from here)".strip()
    return row


def render_part(
    summary: TraceSummary,
    lines: Sequence[str],
    shape: tuple[Mapping[str, int], set[str]],
    prices: Prices | None = None,
) -> str:
    """The rows of one part of the run page (its stored lines, in start order); ``shape`` is what
    :func:`depths` gives."""
    table = prices or _default_prices()
    spans = spans_of_lines(lines, f"trace {summary.trace_id}")
    tree_depths, cut = shape
    rows = [_row(s, tree_depths.get(s.span_id, 0), summary, table, cut=s.span_id in cut) for s in spans]
    return _templates().get_template("trace_part.html").render(rows=rows)


@dataclass
class ReplayLink:
    recording: str  # the trace id the replay served from
    source: str  # the file it was read from, as the run span says
    stored: bool  # the store has that trace: the page links to it and to the diff


def replay_of(run_lines: Sequence[str], trace_id: str) -> str | None:
    """The trace id a replay's run span says it replayed (``agenttrace.run.replay_of``), or None."""
    for span in spans_of_lines(run_lines, f"trace {trace_id}"):
        recording = span.attributes.get(S.RUN_REPLAY_OF)
        if span.attributes.get(S.KIND) == "run" and isinstance(recording, str) and recording:
            return recording.lower()
    return None


def _replay_source(run_lines: Sequence[str], trace_id: str) -> str:
    for span in spans_of_lines(run_lines, f"trace {trace_id}"):
        source = span.attributes.get(S.REPLAY_SOURCE)
        if isinstance(source, str):
            return source
    return ""


def render_run_page(
    summary: TraceSummary,
    first_part: str,
    next_key: str | None,
    store: str,
    *,
    run_lines: Sequence[str] = (),
    recording_stored: bool = False,
    prices: Prices | None = None,
) -> str:
    """The run page: the header, the replay link, and the timeline's first part (``next_key``: more to load)."""
    table = prices or _default_prices()
    recording = replay_of(run_lines, summary.trace_id)
    link = None
    if recording is not None:
        link = ReplayLink(recording, _replay_source(run_lines, summary.trace_id), recording_stored)
    template = _templates().get_template("trace.html")
    return template.render(
        summary=summary,
        store=store,
        llm=totals_text(summary_totals(summary, table)),
        first_part=Markup(first_part),  # noqa: S704 - rendered by trace_part.html, autoescaped
        next_key=next_key,
        replay=link,
        part_spans=PART_SPANS,
    )


def render_diff(recording: TraceSummary, replay: TraceSummary, a: Sequence[str], b: Sequence[str], store: str) -> str:
    """The diff view: the recording (A) and its replay (B), compared as ``agenttrace diff`` compares them."""
    top: DiffNode | None = None
    refused = ""
    if recording.spans + replay.spans > DIFF_MAX_SPANS:
        refused = (
            f"these traces hold {recording.spans + replay.spans:,} spans, over the {DIFF_MAX_SPANS:,} this page "
            f"compares: agenttrace download {recording.trace_id}; agenttrace download {replay.trace_id}; "
            f"agenttrace diff trace-{recording.trace_id}.jsonl trace-{replay.trace_id}.jsonl"
        )
    else:
        top = compare(spans_of_lines(a, "the recording"), spans_of_lines(b, "the replay"))
    template = _templates().get_template("diff.html")
    return template.render(
        recording=recording,
        replay=replay,
        top=top,
        refused=refused,
        store=store,
        differences=0 if top is None else top.count(),
        noted=noted,
    )
