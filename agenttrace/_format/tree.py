"""A trace's spans as a tree of runs, steps and calls, and the one line that names a call.

Both readers of a trace draw it this way: ``agenttrace show`` in the terminal and the server's run
page in the browser. Neither needs anything but the spans: any OTLP client may have sent them, so
attributes are read as whatever they hold.
"""

from __future__ import annotations

from typing import Any

from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.KIND
from agenttrace._format.files import SpanRecord

__all__ = ["call_summary", "span_tree"]


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

    for span in sorted(spans, key=order):
        if span.parent_span_id and span.parent_span_id in ids:
            children.setdefault(span.parent_span_id, []).append(span)
        else:
            roots.append(span)
    return roots, children


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
