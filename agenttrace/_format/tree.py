"""A trace's spans as a tree of runs, steps and calls, and the one line that names a call.

Both readers of a trace draw it this way: ``agenttrace show`` in the terminal and the server's run
page in the browser. Neither needs anything but the spans: any OTLP client may have sent them, so
attributes are read as whatever they hold.
"""

from __future__ import annotations

from typing import Any

from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.KIND
from agenttrace._format.files import SpanRecord

__all__ = ["call_summary", "in_parent_cycle", "span_tree"]


def span_tree(spans: list[SpanRecord]) -> tuple[list[SpanRecord], dict[str, list[SpanRecord]]]:
    """``(roots, children by parent span id)``, each list in start order (calls by ordinal on a tie).

    A span whose parent is not among ``spans`` is a root: a run inside the user's own span, or a
    trace of which only part was exported.
    """
    ids = {s.span_id for s in spans}
    children: dict[str, list[SpanRecord]] = {}
    roots: list[SpanRecord] = []

    def order(span: SpanRecord) -> tuple[int, int]:
        ordinal = span.attributes.get(S.CALL_ORDINAL, 0)
        return span.start_ns, ordinal if type(ordinal) is int else 0  # a file from anywhere may hold anything

    ordered = sorted(spans, key=order)
    for span in ordered:
        if span.parent_span_id and span.parent_span_id in ids:
            children.setdefault(span.parent_span_id, []).append(span)
        else:
            roots.append(span)
    # Spans whose parents form a cycle (or that are their own parent) hang from no root: each
    # cycle is cut above its earliest span, which becomes a root (see in_parent_cycle).
    reached: set[str] = set()

    def reach(span_id: str) -> None:
        stack = [span_id]
        while stack:
            current = stack.pop()
            if current not in reached:
                reached.add(current)
                stack.extend(child.span_id for child in children.get(current, ()))

    for root in roots:
        reach(root.span_id)
    for span in ordered:
        if span.span_id not in reached:
            siblings = children[span.parent_span_id]
            siblings[:] = [other for other in siblings if other is not span]
            roots.append(span)
            reach(span.span_id)
    roots.sort(key=order)
    return roots, children


def in_parent_cycle(span: SpanRecord, ids: set[str]) -> bool:
    """True for a root :func:`span_tree` made by cutting a cycle of parents: its parent is in the trace."""
    return bool(span.parent_span_id) and span.parent_span_id in ids


def call_summary(span: SpanRecord) -> tuple[str, str, str]:
    """A call span's method, where it went (its URL, or host:port for a socket-level call) and its
    outcome: the HTTP status, else the error type if it failed, else ``ok`` (a DNS lookup, a connect)."""
    attrs = span.attributes
    method = str(attrs.get("http.request.method", span.name))
    url: Any = attrs.get("url.full")
    if url is None:  # a socket-level call: where it went
        port = attrs.get("server.port")
        url = f"{attrs.get('server.address', '')}{f':{port}' if port else ''}"
    status = attrs.get("http.response.status_code")
    if status is not None:
        outcome = str(status)
    elif span.status_code == 2:
        outcome = str(attrs.get("error.type", "error"))
    else:
        outcome = "ok"
    return method, str(url), outcome
