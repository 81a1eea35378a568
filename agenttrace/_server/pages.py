"""The web UI: a list of traces, and one trace as a tree of runs, steps and calls with their payloads.

Pages are rendered on the server with Jinja2 from the templates in ``templates/``, the style sheet
``static/style.css`` inlined (autoescaping on: every name, URL, header and body comes from the
traced agent and is shown as text, never as markup), and need no JavaScript; the payloads fold
with ``<details>``. This module turns a trace's spans into the nodes ``trace.html`` draws.
"""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.KIND
from agenttrace._format.files import SpanRecord
from agenttrace._format.tree import call_summary, in_parent_cycle, span_tree
from agenttrace._format.usage import CallUsage, Prices, Totals, call_usage, format_cost, load_prices
from agenttrace._server.listing import FILTERS, query_of
from agenttrace._server.store.records import TraceSummary

if TYPE_CHECKING:
    import jinja2

__all__ = ["BODY_SHOWN", "PAGE_SIZE", "render_index", "render_not_found", "render_trace"]

BODY_SHOWN = 64 * 1024  # characters of a body shown on the page; the download has all of it
PAGE_SIZE = 50

_HERE = Path(__file__).parent
_env: jinja2.Environment | None = None


def _templates() -> jinja2.Environment:
    """The pages' Jinja2 environment over templates/, with static/style.css; built on the first page."""
    global _env  # noqa: PLW0603 - built once, on the first page
    if _env is None:
        import jinja2

        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            auto_reload=False,  # the templates are files of the installed package: read once
        )
        style = (_HERE / "static" / "style.css").read_text(encoding="utf-8")
        env.globals.update(style=style, when=_when, duration=_duration)
        _env = env  # complete before it is shared: pages render on several threads
    return _env


def _when(ns: int) -> str:
    moment = datetime.datetime.fromtimestamp(ns / 1e9, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _duration(start: int, end: int) -> str:
    ms = max(end - start, 0) / 1e6
    return f"{ms:.1f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


@dataclass
class Payload:
    kind: str  # "request" | "response" | "error"
    title: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str | None = None
    note: str = ""


@dataclass
class Node:
    span_id: str
    kind: str
    tag: str
    title: str
    duration: str
    failed: bool
    note: str = ""
    status_message: str = ""
    llm: str = ""  # an LLM call's model, tokens and cost; on a run, its calls' totals
    attributes: list[tuple[str, str]] = field(default_factory=list)
    payloads: list[Payload] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)


def _headers(text: Any) -> list[tuple[str, str]]:
    try:
        return [(str(k), str(v)) for k, v in json.loads(text)]
    except (TypeError, ValueError):
        return []


def _int(value: Any) -> int | None:
    """``value`` as an integer, or None: a span from any OTLP client may hold anything in any attribute."""
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _body(attrs: Mapping[str, Any]) -> tuple[str | None, str]:
    """The body as shown, and a note (size, truncation, binary)."""
    size = _int(attrs.get(S.BODY_SIZE, 0))
    notes = [f"{size:,} bytes" if size is not None else f"size {attrs.get(S.BODY_SIZE)!r}"]
    if attrs.get(S.BODY_TRUNCATED):
        notes.append("truncated when recorded")
    if attrs.get(S.BODY_FILTERED):
        notes.append("filtered when recorded")
    chunks = attrs.get(S.STREAM_CHUNK_SIZES)
    if isinstance(chunks, list) and len(chunks) > 1:
        notes.append(f"streamed in {len(chunks)} chunks ({attrs.get(S.STREAM_END, 'complete')})")
    raw = attrs.get(S.BODY, "")
    if attrs.get(S.BODY_ENCODING) == "base64":
        try:
            shown = len(base64.b64decode(str(raw)))
        except ValueError:
            shown = 0
        notes.append(f"binary ({shown:,} bytes recorded, base64 in the download)")
        return None, ", ".join(notes)
    text = str(raw)
    if not text:
        return None, ", ".join(notes)
    if len(text) <= BODY_SHOWN and text[:1] in "{[":
        try:
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except ValueError:
            pass
    if len(text) > BODY_SHOWN:
        notes.append(f"first {BODY_SHOWN:,} characters shown, the download has all")
        text = text[:BODY_SHOWN]
    return text, ", ".join(notes)


def _call(span: SpanRecord, node: Node) -> None:
    attrs = span.attributes
    method, url, outcome = call_summary(span)
    node.title = f"{method} {url} → {outcome}"
    if attrs.get(S.CALL_REPLAYED):
        node.note = "replayed"
    elif attrs.get(S.CALL_LIVE):
        node.note = "live (the replay let it through)"
    for name, _, event in span.events:
        if name == S.EVENT_REQUEST:
            body, note = _body(event)
            node.payloads.append(
                Payload(
                    "request",
                    f"request: {event.get(S.HTTP_METHOD, method)} {event.get(S.HTTP_URL, url)}",
                    _headers(event.get(S.HTTP_HEADERS)),
                    body,
                    note,
                )
            )
        elif name == S.EVENT_RESPONSE:
            if S.SERVED_SPAN_ID in event:
                node.payloads.append(
                    Payload(
                        "response",
                        f"response: {event.get(S.HTTP_STATUS, '')} (served by the replay)",
                        note=f"served from recorded call span {event.get(S.SERVED_SPAN_ID)} of trace "
                        f"{event.get(S.SERVED_TRACE_ID, '')}",
                    )
                )
                continue
            body, note = _body(event)
            title = f"response: {event.get(S.HTTP_STATUS, '')} {event.get(S.HTTP_REASON, '')}".rstrip()
            node.payloads.append(Payload("response", title, _headers(event.get(S.HTTP_HEADERS)), body, note))
        elif name == S.EVENT_ERROR:
            node.payloads.append(
                Payload(
                    "error",
                    f"error: {event.get(S.ERROR_TYPE, '')}",
                    body=str(event.get(S.ERROR_MESSAGE, "")),
                    note=f"raised during the {event.get(S.ERROR_PHASE, 'request')}",
                )
            )


MAX_DEPTH = 64  # levels of the tree drawn nested; spans deeper are listed flat under the last level


def _descendants(span: SpanRecord, children: dict[str, list[SpanRecord]]) -> list[SpanRecord]:
    out: list[SpanRecord] = []
    stack = list(reversed(children.get(span.span_id, ())))
    while stack:
        child = stack.pop()
        out.append(child)
        stack.extend(reversed(children.get(child.span_id, ())))
    return out


_prices: Prices | None = None


def _default_prices() -> Prices:
    """The bundled price table with AGENTTRACE_PRICES_FILE's (a bad file is said once; the bundled one stands)."""
    global _prices  # noqa: PLW0603 - read once, on the first page
    if _prices is None:
        from agenttrace._core.errors import AgentTraceError, warn_once

        try:
            _prices = load_prices()
        except AgentTraceError as exc:
            warn_once("server-prices", f"{exc}; the pages use the bundled prices")
            _prices = load_prices(environ={})
    return _prices


def _tokens(count: int | None) -> str:
    return "?" if count is None else f"{count:,}"


def _usage_text(usage: CallUsage, prices: Prices) -> str:
    """``gpt-4o · 1,234 → 56 tokens · $0.0042`` (the cost where the model has a price)."""
    parts = [usage.model or "model not said"]
    if usage.input_tokens is not None or usage.output_tokens is not None:
        parts.append(f"{_tokens(usage.input_tokens)} → {_tokens(usage.output_tokens)} tokens")
    cost = prices.cost(usage)
    if cost is not None:
        parts.append(format_cost(cost))
    return " · ".join(parts)


def totals_text(totals: Totals) -> str:
    """``3 LLM calls · 1,234 → 56 tokens · $0.0123 (1 not priced)``, or "" without LLM calls."""
    if not totals.calls:
        return ""
    parts = [
        f"{totals.calls} LLM call{'' if totals.calls == 1 else 's'}",
        f"{totals.input_tokens:,} → {totals.output_tokens:,} tokens",
    ]
    if totals.priced:
        cost = format_cost(totals.cost)
        parts.append(cost if totals.priced == totals.calls else f"{cost} ({totals.calls - totals.priced} not priced)")
    else:
        parts.append("no price for " + ", ".join(sorted(totals.models)) if totals.models else "not priced")
    return " · ".join(parts)


def summary_totals(summary: TraceSummary, prices: Prices) -> Totals:
    """A listed trace's LLM calls added up from the store's per-model sums, priced."""
    totals = Totals()
    for group in summary.usage:
        model = None if group.model == "?" else group.model
        usage = CallUsage(
            model, group.input_tokens, group.output_tokens, group.cache_read_tokens, group.cache_creation_tokens
        )
        totals.add(usage, prices.cost(usage), calls=group.calls)
    return totals


def _node(
    span: SpanRecord, children: dict[str, list[SpanRecord]], depth: int = 0, prices: Prices | None = None
) -> Node:
    attrs = span.attributes
    kind = str(attrs.get(S.KIND, ""))
    node = Node(
        span_id=span.span_id,
        kind=kind,
        tag=kind or span.scope or "span",
        title=span.name,
        duration=_duration(span.start_ns, span.end_ns),
        failed=span.status_code == 2,
        status_message=span.status_message,
    )
    if kind == "run":
        node.title = str(attrs.get(S.RUN_NAME, span.name))
        if attrs.get(S.RUN_MODE) == "replay":
            notes = ["replay"]
            if attrs.get(S.REPLAY_LIVE_FROM):
                notes.append(f"live from {attrs[S.REPLAY_LIVE_FROM]}")
            if attrs.get(S.REPLAY_FIRST_DIVERGENCE):
                notes.append(f"first divergence: {attrs[S.REPLAY_FIRST_DIVERGENCE]}")
            node.note = "; ".join(notes)
    elif kind == "step":
        node.tag = str(attrs.get(S.STEP_TYPE, "step"))
    elif kind == "call":
        _call(span, node)
        usage = call_usage(span)
        if usage is not None:
            node.llm = _usage_text(usage, prices or _default_prices())
    if kind != "call":
        hidden = (S.RUN_SOURCE, S.RUN_DISTRIBUTIONS)  # long; in the download
        node.attributes = [(k, _attribute(v)) for k, v in sorted(attrs.items()) if k not in hidden]
    if depth < MAX_DEPTH:
        node.children = [_node(child, children, depth + 1, prices) for child in children.get(span.span_id, ())]
    else:
        node.note = f"{node.note} (spans below are nested deeper, listed flat)".strip()
        node.children = [_node(child, {}, depth + 1, prices) for child in _descendants(span, children)]
    if kind == "run":
        node.llm = totals_text(_totals(span, children, prices or _default_prices()))
    return node


def _totals(span: SpanRecord, children: dict[str, list[SpanRecord]], prices: Prices) -> Totals:
    totals = Totals()
    for below in _descendants(span, children):
        usage = call_usage(below)
        if usage is not None:
            totals.add(usage, prices.cost(usage))
    return totals


def _attribute(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 2000 else text[:1999] + "…"


def _llm_cells(totals: Totals) -> tuple[str, str]:
    """The listing's Tokens and Cost cells of a trace."""
    if not totals.calls:
        return "", ""
    tokens = f"{totals.input_tokens:,} → {totals.output_tokens:,}"
    if not totals.priced:
        return tokens, "—"
    cost = format_cost(totals.cost)
    return tokens, cost if totals.priced == totals.calls else f"≥ {cost}"


def render_index(
    traces: list[TraceSummary],
    page: int,
    after: str,
    store: str,
    base_url: str,
    *,
    prices: Prices | None = None,
    params: Mapping[str, str] | None = None,
    error: str = "",
) -> str:
    """The traces page: ``after`` is the query of the next page's link ("" on the last page),
    ``params`` the request's filters (shown in the form), ``error`` what was wrong with them."""
    table = prices or _default_prices()
    llm = {t.trace_id: _llm_cells(summary_totals(t, table)) for t in traces}
    given = params or {}
    filters = {name: given.get(name, "").strip() for name in FILTERS}
    first = query_of(given) if (page > 1 or given.get("before")) else None
    template = _templates().get_template("index.html")
    return template.render(
        traces=traces,
        after=after,
        first=first,
        filters=filters,
        filtered=any(filters.values()),
        error=error,
        store=store,
        base_url=base_url,
        llm=llm,
    )


def render_trace(summary: TraceSummary, spans: list[SpanRecord], store: str, prices: Prices | None = None) -> str:
    """One trace's page."""
    table = prices or _default_prices()
    roots, children = span_tree(spans)
    ids = {span.span_id for span in spans}
    everything = Totals()
    for span in spans:
        usage = call_usage(span)
        if usage is not None:
            everything.add(usage, table.cost(usage))
    nodes = []
    for root in roots:
        node = _node(root, children, prices=table)
        if in_parent_cycle(root, ids):
            node.note = f"{node.note} (its parents form a cycle: shown from here)".strip()
        nodes.append(node)
    template = _templates().get_template("trace.html")
    return template.render(summary=summary, roots=nodes, store=store, llm=totals_text(everything))


def render_not_found() -> str:
    """The page of a trace the store does not have."""
    return _templates().get_template("not_found.html").render()
