"""``agenttrace diff A B``: what differs between two traces, run by run, step by step, call by call.

``agenttrace diff REPLAY_TRACE`` alone compares a replay's trace with the recording it replayed
(named on its run span, ``agenttrace.replay.source``).

Runs pair by name and order, steps by name and order inside their parent, and calls as replay
pairs them: by their causal position (the step they were made in, their method and URL, the
n-th such call there). Paired calls are compared field by field (method, URL and query, the
significant headers, bodies as data with the JSON paths that differ, status, error); a call
on one side only is missing (A only) or added (B only). Exit 0 when equal, 1 when different,
2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agenttrace._core.errors import AgentTraceError
from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.KIND
from agenttrace._format.files import SpanRecord, read_spans
from agenttrace._format.tree import call_summary, span_tree

__all__ = ["DiffNode", "add_arguments", "compare", "recording_of", "run"]

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
        children = [c for c in self.children if c.differs or _noted(c) or not only_differences]
        if children:
            out["children"] = [c.as_dict(only_differences=only_differences) for c in children]
        return out

    def count(self) -> int:
        """The number of differing nodes at or below this one."""
        return (self.change != "equal") + sum(child.count() for child in self.children)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``agenttrace diff``."""
    parser.add_argument("a", metavar="A", help="a trace file: a recording, or a replay's trace when B is omitted")
    parser.add_argument("b", metavar="B", nargs="?", help="the trace file to compare A with")
    parser.add_argument("--json", action="store_true", help="print the differences as JSON")
    parser.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="RULE",
        help="leave a request field out of the comparison: '$.json.path', 'header:NAME' or 'query:NAME' (repeatable)",
    )
    parser.add_argument("--no-color", action="store_true", help="plain text, no colours")


def recording_of(path: Path, spans: Sequence[SpanRecord]) -> Path:
    """The recording a replay's trace replayed (its run span's ``agenttrace.replay.source``).

    ``ValueError`` says why there is none: not a replay's trace, or the recording is not there.
    """
    for span in spans:
        attrs = span.attributes
        if attrs.get(S.KIND) != "run" or not attrs.get(S.RUN_REPLAY_OF):
            continue
        source = attrs.get(S.REPLAY_SOURCE)
        if not isinstance(source, str) or not source or source.startswith("init("):
            raise ValueError(
                f"{path} is the trace of a replay of trace {attrs.get(S.RUN_REPLAY_OF)}, but not of a file "
                "(it replayed events given to init()); name the recording: agenttrace diff RECORDING REPLAY"
            )
        candidate = Path(source)
        for found in (candidate, path.parent / candidate):
            if found.is_file():
                return found
        raise ValueError(
            f"{path} replayed {source}, which is not there any more; "
            f"name the recording: agenttrace diff RECORDING {path}"
        )
    raise ValueError(
        f"{path} is not the trace of a replay (no run span has {S.RUN_REPLAY_OF}); "
        "give two trace files: agenttrace diff A B"
    )


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


# --- output -----------------------------------------------------------------------------------------

_STYLE = {"equal": "dim", "changed": "yellow", "missing": "red", "added": "green"}
_MARK = {"equal": " ", "changed": "~", "missing": "-", "added": "+"}


def _render(top: DiffNode, title: str) -> Any:
    from rich.markup import escape
    from rich.tree import Tree

    tree = Tree(escape(title))

    def label(node: DiffNode) -> str:
        style = _STYLE[node.change]
        note = {"missing": " (only in A)", "added": " (only in B)"}.get(node.change, "")
        marks = "".join(f" [cyan]\\[{escape(n)}][/]" for n in node.notes if n in ("served", "live"))
        return f"[{style}]{_MARK[node.change]} {escape(node.kind)} {escape(node.name)}{note}[/]{marks}"

    def grow(branch: Tree, node: DiffNode) -> None:
        for line in node.notes:
            if line not in ("served", "live"):
                branch.add(f"[cyan]{escape(line)}[/]")
        for line in node.details:
            branch.add(f"[yellow]{escape(line)}[/]")
        for child in node.children:
            if child.differs:
                grow(branch.add(label(child)), child)
            elif _noted(child):
                grow(branch.add(label(child) + " [dim]equal[/]"), child)
            elif child.kind != "call":
                branch.add(label(child) + " [dim]equal[/]")

    for root in top.children:
        grow(tree.add(label(root)), root)
    return tree


def run(args: argparse.Namespace) -> int:
    """Compare the traces; exit 0 when equal, 1 when different, 2 on bad input."""
    say: Callable[[str], None] = lambda text: print(f"agenttrace diff: {text}", file=sys.stderr)  # noqa: E731
    path_a = Path(args.a)
    try:
        spans_a = read_spans(path_a)
        if args.b is None:
            path_b, spans_b = path_a, spans_a
            path_a = recording_of(path_b, spans_b)
            spans_a = read_spans(path_a)
        else:
            path_b = Path(args.b)
            spans_b = read_spans(path_b)
        top = compare(spans_a, spans_b, args.ignore)
    except (AgentTraceError, ValueError) as exc:
        say(str(exc))
        return 2
    equal = not top.differs
    if args.json:
        data = {
            "a": str(path_a),
            "b": str(path_b),
            "equal": equal,
            "differences": top.count(),
            "runs": [child.as_dict() for child in top.children if child.differs or _noted(child)],
        }
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return 0 if equal else 1
    from rich.console import Console

    width = None if sys.stdout.isatty() else 200
    console = Console(no_color=args.no_color, highlight=False, width=width)
    if equal and not _noted(top):
        console.print(f"equal: {path_a} and {path_b}", markup=False)
        return 0
    counted = "equal (B is a replay: how each call was answered below)" if equal else f"{top.count()} difference(s)"
    console.print(_render(top, f"A {path_a}\nB {path_b}\n{counted}"))
    return 0 if equal else 1


def _noted(node: DiffNode) -> bool:
    """True when ``node`` or one below it carries replay notes (served, live, a divergence)."""
    return bool(node.notes) or any(_noted(child) for child in node.children)
