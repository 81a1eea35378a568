"""``agenttrace diff A B``: what differs between two traces, run by run, step by step, call by call.

``agenttrace diff REPLAY_TRACE`` alone compares a replay's trace with the recording it replayed
(named on its run span, ``agenttrace.replay.source``).

The comparison is :func:`agenttrace._format.diff.compare` (the server's replay view shows the
same); this module reads the files, finds the recording and prints. Exit 0 when equal, 1 when
different, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agenttrace._core.errors import AgentTraceError
from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.KIND
from agenttrace._format.diff import DiffNode, compare, noted
from agenttrace._format.files import SpanRecord, read_spans

__all__ = ["DiffNode", "add_arguments", "compare", "recording_of", "run"]


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
            elif noted(child):
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
            "runs": [child.as_dict() for child in top.children if child.differs or noted(child)],
        }
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return 0 if equal else 1
    from rich.console import Console

    width = None if sys.stdout.isatty() else 200
    console = Console(no_color=args.no_color, highlight=False, width=width)
    if equal and not noted(top):
        console.print(f"equal: {path_a} and {path_b}", markup=False)
        return 0
    counted = "equal (B is a replay: how each call was answered below)" if equal else f"{top.count()} difference(s)"
    console.print(_render(top, f"A {path_a}\nB {path_b}\n{counted}"))
    return 0 if equal else 1
