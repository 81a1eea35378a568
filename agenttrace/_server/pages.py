"""The web UI: a list of traces, and one trace as a tree of runs, steps and calls with their payloads.

Pages are rendered on the server with Jinja2 (autoescaping on: every name, URL, header and body
comes from the traced agent and is shown as text, never as markup) and need no JavaScript; the
payloads fold with ``<details>``.
"""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agenttrace._cli.show import call_summary, span_tree
from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.KIND
from agenttrace._format.files import SpanRecord
from agenttrace._server.store import TraceSummary

__all__ = ["BODY_SHOWN", "render_index", "render_trace"]

BODY_SHOWN = 64 * 1024  # characters of a body shown on the page; the download has all of it
PAGE_SIZE = 50

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 0 16px 48px; color: #1d1d1f; }
header { display: flex; align-items: baseline; gap: 16px; border-bottom: 1px solid #ddd; margin-bottom: 16px; }
header a { color: inherit; text-decoration: none; }
h1 { font-size: 20px; margin: 16px 0 8px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid #eee; vertical-align: top; }
th { font-weight: 600; color: #555; }
code, pre { font: 12px/1.4 ui-monospace, monospace; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; white-space: pre-wrap; word-break: break-all;
      margin: 4px 0; }
.badge { display: inline-block; padding: 0 6px; border-radius: 4px; font-size: 12px; background: #eee; }
.badge.run { background: #f3e8ff; } .badge.step { background: #e6f4ea; } .badge.call { background: #e8f0fe; }
.badge.error { background: #fde8e8; color: #a00; } .badge.ok { background: #e6f4ea; color: #175c2b; }
.badge.replay { background: #e0f7fa; }
.status-message { color: #a00; }
.muted { color: #777; }
ul.tree { list-style: none; padding-left: 20px; border-left: 1px dotted #ccc; }
ul.tree.top { padding-left: 0; border-left: none; }
ul.tree li { margin: 4px 0; }
details > summary { cursor: pointer; }
.panel { margin: 4px 0 8px 16px; }
nav.pages { margin-top: 12px; display: flex; gap: 16px; }
"""

_BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}AgentTrace{% endblock %}</title>
<style>{{ style }}</style></head>
<body><header><h1><a href="/">AgentTrace</a></h1><span class="muted">{{ store }}</span></header>
{% block body %}{% endblock %}
</body></html>
"""

_INDEX = """{% extends "base.html" %}
{% block title %}AgentTrace: traces{% endblock %}
{% block body %}
{% if traces %}
<table id="traces">
<thead><tr><th>Run</th><th>Status</th><th>Mode</th><th>Started (UTC)</th><th>Duration</th>
<th>Calls</th><th>Spans</th><th>Trace</th></tr></thead>
<tbody>
{% for t in traces %}
<tr class="trace-row">
<td><a href="/traces/{{ t.trace_id }}">{{ t.name or "(unnamed)" }}</a></td>
<td><span class="badge {{ 'error' if t.failed else 'ok' }}">{{ "error" if t.failed else "ok" }}</span></td>
<td>{{ t.mode }}</td>
<td>{{ when(t.start_ns) }}</td>
<td>{{ duration(t.start_ns, t.end_ns) }}</td>
<td>{{ t.calls }}</td>
<td>{{ t.spans }}</td>
<td><code>{{ t.trace_id }}</code> <a href="/api/traces/{{ t.trace_id }}/download">download</a></td>
</tr>
{% endfor %}
</tbody></table>
<nav class="pages">
{% if page > 1 %}<a href="/?page={{ page - 1 }}">newer</a>{% endif %}
{% if more %}<a href="/?page={{ page + 1 }}">older</a>{% endif %}
</nav>
{% else %}
<p id="empty">No traces yet. Send an agent's traces here:</p>
<pre>export AGENTTRACE_API_URL={{ base_url }}
export AGENTTRACE_API_KEY=at_live_...   # one of the keys the server was started with
python agent.py</pre>
{% endif %}
{% endblock %}
"""

_TRACE = """{% extends "base.html" %}
{% block title %}AgentTrace: {{ summary.name }}{% endblock %}
{% block body %}
<h1 id="run-name">{{ summary.name or "(unnamed)" }}
<span class="badge {{ 'error' if summary.failed else 'ok' }}">{{ "error" if summary.failed else "ok" }}</span>
{% if summary.mode %}<span class="badge {{ summary.mode }}">{{ summary.mode }}</span>{% endif %}</h1>
<p class="muted">trace <code>{{ summary.trace_id }}</code> · started {{ when(summary.start_ns) }} UTC ·
{{ duration(summary.start_ns, summary.end_ns) }} ·
{{ summary.calls }} call{{ '' if summary.calls == 1 else 's' }} ·
{{ summary.spans }} span{{ '' if summary.spans == 1 else 's' }} ·
<a id="download" href="/api/traces/{{ summary.trace_id }}/download">download (OTLP JSON Lines)</a></p>
<p>Replay it offline: <code>agenttrace download {{ summary.trace_id }}</code>, then
<code>agenttrace replay trace-{{ summary.trace_id }}.jsonl -- python agent.py</code></p>
{% macro node(n) %}
<li class="span {{ n.kind }}" data-span-id="{{ n.span_id }}">
<span class="badge {{ n.kind or 'other' }}">{{ n.tag }}</span>
{% if n.failed and n.tag != 'error' %}<span class="badge error">error</span>{% endif %}
<strong class="span-name">{{ n.title }}</strong> <span class="muted">{{ n.duration }}</span>
{% if n.note %}<span class="muted">{{ n.note }}</span>{% endif %}
{% if n.status_message %}<div class="status-message">{{ n.status_message }}</div>{% endif %}
{% if n.attributes %}
<details class="panel"><summary>attributes</summary><table>
{% for k, v in n.attributes %}<tr><th><code>{{ k }}</code></th><td><code>{{ v }}</code></td></tr>{% endfor %}
</table></details>
{% endif %}
{% for p in n.payloads %}
<details class="panel payload {{ p.kind }}"><summary>{{ p.title }}</summary>
{% if p.headers %}<table>{% for k, v in p.headers %}
<tr><th><code>{{ k }}</code></th><td><code>{{ v }}</code></td></tr>{% endfor %}</table>{% endif %}
{% if p.body is not none %}<pre class="body">{{ p.body }}</pre>{% endif %}
{% if p.note %}<p class="muted">{{ p.note }}</p>{% endif %}
</details>
{% endfor %}
{% if n.children %}<ul class="tree">{% for c in n.children %}{{ node(c) }}{% endfor %}</ul>{% endif %}
</li>
{% endmacro %}
<ul class="tree top" id="tree">{% for n in roots %}{{ node(n) }}{% endfor %}</ul>
{% endblock %}
"""


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.DictLoader({"base.html": _BASE, "index.html": _INDEX, "trace.html": _TRACE}),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.globals.update(style=_STYLE, when=_when, duration=_duration)
    return env


_env: Any = None


def _templates() -> Any:
    global _env  # noqa: PLW0603 - built once, on the first page
    if _env is None:
        _env = _environment()
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


def _node(span: SpanRecord, children: dict[str, list[SpanRecord]], depth: int = 0) -> Node:
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
            node.note = "replay"
    elif kind == "step":
        node.tag = str(attrs.get(S.STEP_TYPE, "step"))
    elif kind == "call":
        _call(span, node)
    if kind != "call":
        hidden = (S.RUN_SOURCE, S.RUN_DISTRIBUTIONS)  # long; in the download
        node.attributes = [(k, _attribute(v)) for k, v in sorted(attrs.items()) if k not in hidden]
    if depth < MAX_DEPTH:
        node.children = [_node(child, children, depth + 1) for child in children.get(span.span_id, ())]
    else:
        node.note = f"{node.note} (spans below are nested deeper, listed flat)".strip()
        node.children = [_node(child, {}, depth + 1) for child in _descendants(span, children)]
    return node


def _attribute(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 2000 else text[:1999] + "…"


def render_index(traces: list[TraceSummary], page: int, more: bool, store: str, base_url: str) -> str:
    """The traces page."""
    page_html: str = (
        _templates()
        .get_template("index.html")
        .render(traces=traces, page=page, more=more, store=store, base_url=base_url)
    )
    return page_html


def render_trace(summary: TraceSummary, spans: list[SpanRecord], store: str) -> str:
    """One trace's page."""
    roots, children = span_tree(spans)
    page_html: str = (
        _templates()
        .get_template("trace.html")
        .render(summary=summary, roots=[_node(root, children) for root in roots], store=store)
    )
    return page_html
