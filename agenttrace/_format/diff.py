"""The comparison of two traces, run by run, step by step, call by call: what ``agenttrace diff``
prints and the server's replay view shows.

Runs pair by name and order, steps by name and order inside their parent, and calls as replay
pairs them: by their causal position (the step they were made in, their method and URL, the
n-th such call there). Paired calls are compared field by field (method, URL and query, the
significant headers, bodies as data with the JSON paths that differ, status, error), with the
replay matcher's own field comparison; a call on one side only is missing (A only) or added
(B only).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.KIND
from agenttrace._format.files import SpanRecord
from agenttrace._format.tree import call_summary, span_tree

__all__ = ["DiffNode", "compare", "noted"]

_WORDS = ("A", "B")
_PATH = re.compile(r"^(?:response )?body (\$\S*):")


@dataclass
class DiffNode:
    """One run, step or call of the comparison: ``change`` is equal, changed, missing (A only) or added (B only)."""

    kind: str
    name: str
    change: str = "equal"
    details: list[str] = field(default_factory=list)
    children: list[DiffNode] = field(default_factory=list)
    # How B's side came to be, when B is a replay: a call "served" from the recording or gone
    # "live"; a run's first divergence and where it went live. Not differences.
    notes: list[str] = field(default_factory=list)

    @property
    def differs(self) -> bool:
        """True when this node or one below it differs."""
        return self.change != "equal" or any(child.differs for child in self.children)

    def paths(self) -> list[str]:
        """The JSON paths named in this node's details."""
        return [match.group(1) for line in self.details if (match := _PATH.match(line))]

    def as_dict(self, *, only_differences: bool = True) -> dict[str, Any]:
        """The node as JSON data (``only_differences``: leave out equal subtrees)."""
        out: dict[str, Any] = {"kind": self.kind, "name": self.name, "change": self.change}
        if self.notes:
            out["notes"] = list(self.notes)
        if self.details:
            out["details"] = list(self.details)
            paths = self.paths()
            if paths:
                out["json_paths"] = paths
        children = [c for c in self.children if c.differs or noted(c) or not only_differences]
        if children:
            out["children"] = [c.as_dict(only_differences=only_differences) for c in children]
        return out

    def count(self) -> int:
        """The number of differing nodes at or below this one."""
        return (self.change != "equal") + sum(child.count() for child in self.children)


# --- comparing ------------------------------------------------------------------------------------


def compare(a: Sequence[SpanRecord], b: Sequence[SpanRecord], ignore: Sequence[str] = ()) -> DiffNode:
    """The comparison of two traces, as a tree under one ``trace`` node."""
    from agenttrace._replay.matcher import parse_ignore

    rules = parse_ignore(list(ignore))
    roots_a, children_a = span_tree(list(a))
    roots_b, children_b = span_tree(list(b))
    top = DiffNode("trace", "")
    ctx = _Context(children_a, children_b, rules)
    top.children = ctx.pair(roots_a, roots_b, top=True)
    return top


class _Context:
    def __init__(self, children_a: dict[str, list[SpanRecord]], children_b: dict[str, list[SpanRecord]], rules: Any):
        self.children_a = children_a
        self.children_b = children_b
        self.rules = rules

    def pair(self, a: Sequence[SpanRecord], b: Sequence[SpanRecord], *, top: bool = False) -> list[DiffNode]:
        """Pair two lists of sibling spans by position key, in A's order (B's extras after).

        ``top``: the traces' root runs, which also pair by order when their names differ (two
        recordings of one agent made by differently named tests, a renamed entry point).
        """
        keyed_b: dict[tuple[Any, ...], list[SpanRecord]] = {}
        for key, span in _keyed(b):
            keyed_b.setdefault(key, []).append(span)
        pairs: list[tuple[SpanRecord, SpanRecord | None]] = []
        taken: set[str] = set()
        for key, span in _keyed(a):
            match = keyed_b.get(key)
            other = match.pop(0) if match else None
            if other is not None:
                taken.add(other.span_id)
            pairs.append((span, other))
        if top:
            spare = [span for span in b if span.span_id not in taken and _kind(span) == "run"]
            for index, (span, found) in enumerate(pairs):
                if found is None and _kind(span) == "run" and spare:
                    partner = spare.pop(0)
                    taken.add(partner.span_id)
                    pairs[index] = (span, partner)
        out: list[DiffNode] = []
        for span, other in pairs:
            if other is None:
                out.append(self.one_sided(span, "missing", self.children_a))
            else:
                out.append(self.node(span, other))
        out.extend(self.one_sided(span, "added", self.children_b) for span in b if span.span_id not in taken)
        return out

    def one_sided(self, span: SpanRecord, change: str, children: dict[str, list[SpanRecord]]) -> DiffNode:
        node = DiffNode(_kind(span), _name(span), change, notes=_replay_notes(span) if change == "added" else [])
        node.children = [self.one_sided(child, change, children) for child in children.get(span.span_id, ())]
        return node

    def node(self, a: SpanRecord, b: SpanRecord) -> DiffNode:
        kind = _kind(a)
        node = DiffNode(kind, _name(a), notes=_replay_notes(b))
        if _name(a) != _name(b) and kind != "call":
            node.details.append(f"name: A {_name(a)}, B {_name(b)}")
        if kind == "call":
            node.details = _call_details(a, b, self.rules)
        elif kind == "run":
            node.details += _attribute_details(a, b, ((S.RUN_STATUS, "status"), (S.RUN_RESULT, "result")))
        elif kind == "step":
            keys = {k for k in (*a.attributes, *b.attributes) if k.startswith(S.STEP_KWARG_PREFIX)}
            fields = [(S.STEP_TYPE, "type")]
            fields += [(k, "argument " + k[len(S.STEP_KWARG_PREFIX) :]) for k in sorted(keys)]
            fields.append((S.STEP_RESULT, "result"))
            node.details += _attribute_details(a, b, fields)
        if a.status_code != b.status_code and kind != "call":
            node.details.append(f"span status: A {_status(a)}, B {_status(b)}")
        if node.details:
            node.change = "changed"
        node.children = self.pair(self.children_a.get(a.span_id, ()), self.children_b.get(b.span_id, ()))
        return node


def _replay_notes(span: SpanRecord) -> list[str]:
    """What a replay's span says of how it came to be (see :attr:`DiffNode.notes`)."""
    attrs = span.attributes
    if attrs.get(S.KIND) == "call":
        return ["live"] if attrs.get(S.CALL_LIVE) else ["served"] if attrs.get(S.CALL_REPLAYED) else []
    notes = []
    if S.REPLAY_LIVE_FROM in attrs:
        notes.append(f"live from {attrs[S.REPLAY_LIVE_FROM]}")
    if S.REPLAY_FIRST_DIVERGENCE in attrs:
        notes.append(f"first divergence: {attrs[S.REPLAY_FIRST_DIVERGENCE]}")
    return notes


def _status(span: SpanRecord) -> str:
    return {0: "unset", 1: "ok", 2: "error"}.get(span.status_code, str(span.status_code))


def _kind(span: SpanRecord) -> str:
    kind = span.attributes.get(S.KIND)
    return str(kind) if kind in ("run", "step", "call") else "span"


def _name(span: SpanRecord) -> str:
    if _kind(span) == "call":
        method, url, outcome = call_summary(span)
        return f"{method} {url} → {outcome}"
    return span.name


def _keyed(spans: Sequence[SpanRecord]) -> list[tuple[tuple[Any, ...], SpanRecord]]:
    """Each span with its position key: (kind, what it is, the n-th such span among its siblings)."""
    from agenttrace._replay.matcher import normalize_url

    seen: dict[tuple[Any, ...], int] = {}
    out: list[tuple[tuple[Any, ...], SpanRecord]] = []
    for span in spans:
        kind = _kind(span)
        if kind == "call":
            method, url, _ = call_summary(span)
            base = normalize_url(url).split("?", 1)[0] if "://" in url else url
            what: tuple[Any, ...] = (kind, method.upper(), base)
        else:
            what = (kind, span.name)
        number = seen.get(what, 0)
        seen[what] = number + 1
        out.append(((*what, number), span))
    return out


def _attribute_details(a: SpanRecord, b: SpanRecord, fields: Sequence[tuple[str, str]]) -> list[str]:
    from agenttrace._replay.matcher import json_differences

    out: list[str] = []
    for key, label in fields:
        va, vb = a.attributes.get(key), b.attributes.get(key)
        if va == vb:
            continue
        ja, jb = _json_or_none(va), _json_or_none(vb)
        if (
            ja is not _NOT_JSON
            and jb is not _NOT_JSON
            and isinstance(ja, (dict, list))
            and isinstance(jb, (dict, list))
        ):
            out.extend(line.replace("body ", f"{label} ", 1) for line in json_differences(ja, jb, _WORDS))
        else:
            out.append(f"{label}: A {_short(va)}, B {_short(vb)}")
    return out


_NOT_JSON = object()


def _json_or_none(value: Any) -> Any:
    if not isinstance(value, str):
        return _NOT_JSON
    try:
        return json.loads(value)
    except ValueError:
        return _NOT_JSON


def _short(value: Any, limit: int = 100) -> str:
    text = "none" if value is None else json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _call_details(a: SpanRecord, b: SpanRecord, rules: Any) -> list[str]:
    from agenttrace._format.exchange import exchange_from_span
    from agenttrace._replay.matcher import call_differences

    try:
        ea = exchange_from_span(a.raw, a.attributes)
        eb = exchange_from_span(b.raw, b.attributes)
    except (ValueError, KeyError, TypeError):
        # Not an HTTP exchange (a DNS lookup, a raw connect): what it reached and how it ended.
        return [] if call_summary(a) == call_summary(b) else [f"call: A {_name(a)}, B {_name(b)}"]
    if rules:
        from dataclasses import replace

        ea = replace(ea, request=rules.apply(ea.request))
        eb = replace(eb, request=rules.apply(eb.request))
    return call_differences(ea, eb, _WORDS)


def noted(node: DiffNode) -> bool:
    """True when ``node`` or one below it carries replay notes (served, live, a divergence)."""
    return bool(node.notes) or any(noted(child) for child in node.children)
