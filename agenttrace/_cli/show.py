"""``agenttrace show FILE``: a trace as a tree of runs, steps and I/O calls."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from agenttrace._core.errors import AgentTraceError
from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.KIND
from agenttrace._format.files import SpanRecord, cut_short, read_spans
from agenttrace._format.tree import call_summary, span_tree
from agenttrace._format.usage import CallUsage, Prices, Totals, call_usage, format_cost, load_prices

__all__ = ["add_arguments", "render", "run"]

_RESULT_CHARS = 120


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``agenttrace show``."""
    parser.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="trace files (.jsonl) written by AgentTrace or downloaded, or a trace folder (every file in it, "
        "runs in progress and runs whose process died included)",
    )
    parser.add_argument("--no-color", action="store_true", help="plain text, no colours")
    parser.add_argument(
        "--prices",
        metavar="FILE",
        help="a TOML price table extending and overriding the bundled one (default: $AGENTTRACE_PRICES_FILE)",
    )


def _duration(span: SpanRecord) -> str:
    ms = max(span.end_ns - span.start_ns, 0) / 1e6
    return f"{ms:.1f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def _short(text: str) -> str:
    return text if len(text) <= _RESULT_CHARS else text[: _RESULT_CHARS - 1] + "…"


def _body_note(span: SpanRecord) -> str:
    for name, _, attrs in span.events:
        if name == S.EVENT_WEBSOCKET:  # a WebSocket connection: its frames, not the handshake's empty body
            directions = list(attrs.get(S.WS_DIRECTIONS) or ())
            sent, received = directions.count("sent"), directions.count("received")
            return f"  [dim]{sent} frame(s) sent, {received} received[/]"
    for name, _, attrs in span.events:
        if name == S.EVENT_RESPONSE:
            size = int(attrs.get(S.BODY_SIZE, 0))
            note = f"  [dim]{size / 1024:.1f} KB[/]" if size >= 1024 else f"  [dim]{size} B[/]"
            chunks = attrs.get(S.STREAM_CHUNK_SIZES)
            if chunks and len(chunks) > 1:
                note += f" [dim]in {len(chunks)} chunks ({attrs.get(S.STREAM_END, 'complete')})[/]"
            if attrs.get(S.BODY_TRUNCATED):
                note += " [yellow]truncated[/]"
            return note
    return ""


def _tokens(count: int | None) -> str:
    return "?" if count is None else f"{count:,}"


def _usage_note(usage: CallUsage, prices: Prices | None) -> str:
    """`` gpt-4o 1,234→56 tok $0.0042``: an LLM call's model, input and output tokens, and cost when priced."""
    from rich.markup import escape

    note = f"  [magenta]{escape(usage.model or '(model?)')}[/]"
    if usage.input_tokens is not None or usage.output_tokens is not None:
        note += f" {_tokens(usage.input_tokens)}→{_tokens(usage.output_tokens)} tok"
    cost = prices.cost(usage) if prices is not None else None
    if cost is not None:
        note += f" [green]{format_cost(cost)}[/]"
    return note


def _totals_note(totals: Totals) -> str:
    """The run's LLM calls added up: count, tokens in and out, cost of those priced."""
    if not totals.calls:
        return ""
    plural = "" if totals.calls == 1 else "s"
    note = (
        f"  [magenta]{totals.calls} LLM call{plural}, {totals.input_tokens:,} in / "
        f"{totals.output_tokens:,} out tokens[/]"
    )
    if totals.priced:
        note += f" [green]{format_cost(totals.cost)}[/]"
        if totals.priced < totals.calls:
            note += f" [dim]({totals.calls - totals.priced} not priced)[/]"
    elif totals.models:
        note += " [dim](no price for " + ", ".join(sorted(totals.models)) + ")[/]"
    return note


def _label(span: SpanRecord, numbers: dict[str, int] | None = None, llm: str = "") -> str:
    from rich.markup import escape

    attrs = span.attributes
    kind = attrs.get(S.KIND)
    failed = span.status_code == 2
    parts: list[str] = []
    if kind == "run":
        tag = "[bold magenta]run[/]"
        if attrs.get(S.RUN_MODE) == "replay":
            tag += " [cyan](replay)[/]"
        parts.append(f"{tag} [bold]{escape(span.name)}[/]{llm}")
    elif kind == "step":
        step_type = str(attrs.get(S.STEP_TYPE, ""))
        colour = "red" if step_type == "error" else "green"
        parts.append(f"[{colour}]{escape(step_type)}[/] [bold]{escape(span.name)}[/]")
    elif kind == "call":
        method, url, ended = call_summary(span)
        errored = failed and attrs.get("http.response.status_code") is None
        outcome = f"→ [red]{escape(ended)}[/]" if errored else f"→ {escape(ended)}"
        replayed = ""
        if attrs.get(S.CALL_REPLAYED):
            replayed = " [cyan](replayed)[/]"
        elif attrs.get(S.CALL_LIVE):
            replayed = " [cyan](live)[/]"
        # The run's call number, as replay_live_from's #N names it.
        found = (numbers or {}).get(span.span_id)
        number = f"[dim]#{found}[/] " if found is not None else ""
        parts.append(
            f"{number}[blue]{escape(str(method))}[/] {escape(str(url))} {outcome}{replayed}{_body_note(span)}{llm}"
        )
    else:
        parts.append(f"[dim]{escape(span.name)}[/]")
    parts.append(f"[dim]{_duration(span)}[/]")
    kwargs = {k[len(S.STEP_KWARG_PREFIX) :]: v for k, v in attrs.items() if k.startswith(S.STEP_KWARG_PREFIX)}
    if kwargs:
        parts.append(escape(" ".join(f"{k}={v}" for k, v in kwargs.items())))
    result = attrs.get(S.STEP_RESULT, attrs.get(S.RUN_RESULT))
    if result is not None and result != "null":
        parts.append(f"result={escape(_short(str(result)))}")
    if failed:
        parts.append(f"[red]✗ {escape(span.status_message)}[/]")
    return "  ".join(parts)


def call_numbers(roots: list[SpanRecord], children: dict[str, list[SpanRecord]]) -> dict[str, int]:
    """Span id -> the run's number of each HTTP call (#1, #2, ... in call order), as replay counts them.

    Raw DNS and connect spans (the socket instrumentor's) are not calls replay looks up: no number.
    """
    numbers: dict[str, int] = {}

    def collect(span: SpanRecord, calls: list[SpanRecord] | None) -> None:
        kind = span.attributes.get(S.KIND)
        if kind == "run":
            own: list[SpanRecord] = []
            for child in children.get(span.span_id, ()):
                collect(child, own)
            own.sort(key=lambda c: (_ordinal(c), c.start_ns))
            numbers.update((call.span_id, index) for index, call in enumerate(own, 1))
            return
        if kind == "call" and calls is not None and span.attributes.get(S.CALL_LIBRARY) != "socket":
            calls.append(span)
        for child in children.get(span.span_id, ()):
            collect(child, calls)

    for root in roots:
        collect(root, None)
    return numbers


def _ordinal(span: SpanRecord) -> int:
    value = span.attributes.get(S.CALL_ORDINAL)
    return value if isinstance(value, int) else 0


def _notes(roots: list[SpanRecord], children: dict[str, list[SpanRecord]], prices: Prices | None) -> dict[str, str]:
    """Span id -> its LLM note: model, tokens and cost on each LLM call, their totals on each run."""
    notes: dict[str, str] = {}

    def walk(span: SpanRecord) -> list[CallUsage]:
        found: list[CallUsage] = []
        usage = call_usage(span)
        if usage is not None:
            notes[span.span_id] = _usage_note(usage, prices)
            found.append(usage)
        for child in children.get(span.span_id, ()):
            found.extend(walk(child))
        if span.attributes.get(S.KIND) == "run":
            total = Totals()
            for one in found:
                total.add(one, prices.cost(one) if prices is not None else None)
            notes[span.span_id] = _totals_note(total)
        return found

    for root in roots:
        walk(root)
    return notes


def render(spans: list[SpanRecord], prices: Prices | None = None) -> Any:
    """A ``rich`` renderable of ``spans`` as trees, one per root, children in start order."""
    from rich.console import Group
    from rich.tree import Tree

    roots, children = span_tree(spans)
    numbers = call_numbers(roots, children)
    notes = _notes(roots, children, prices)

    def label(span: SpanRecord) -> str:
        return _label(span, numbers, notes.get(span.span_id, ""))

    def grow(tree: Tree, span: SpanRecord) -> None:
        for child in children.get(span.span_id, ()):
            grow(tree.add(label(child)), child)

    trees = []
    for root in roots:
        tree = Tree(label(root))
        grow(tree, root)
        trees.append(tree)
    return Group(*trees)


def _expand(name: str) -> list[str]:
    """``name``, or the trace files of the folder ``name``: finished runs, then partial files."""
    folder = Path(name)
    if not folder.is_dir():
        return [name]
    try:
        found = sorted(folder.glob("*.jsonl")) + sorted(folder.glob(".*.jsonl.partial-*"))
    except OSError:
        return [name]
    return [str(path) for path in found]


def run(args: argparse.Namespace) -> int:
    """Print each trace file as a tree; exit 2 (after the others) if one cannot be read."""
    from rich.console import Console

    # Piped output (CI logs, `| less`) is not cut at 80 columns.
    width = None if sys.stdout.isatty() else 200
    console = Console(no_color=args.no_color, highlight=False, width=width)
    try:
        prices = load_prices(getattr(args, "prices", None))
    except AgentTraceError as exc:
        print(f"agenttrace show: {exc}", file=sys.stderr)
        return 2
    code = 0
    for file in [found for name in args.files for found in _expand(name)]:
        try:
            # A run's partial file exists a moment before its first line is written.
            empty = ".jsonl.partial-" in file and Path(file).stat().st_size == 0
        except OSError:
            empty = False
        try:
            spans = [] if empty else read_spans(file)
        except AgentTraceError as exc:
            print(f"agenttrace show: {exc}", file=sys.stderr)
            code = 2
            continue
        short = cut_short(Path(file))
        if not spans:
            console.print(f"{file}: no spans", markup=False)
        else:
            console.print(f"trace {spans[0].trace_id}  ({len(spans)} spans)  {file}", markup=False)
        if short:
            console.print(f"[yellow]{short}[/]", soft_wrap=True)  # on a line of its own: never wrapped apart
        if spans:
            console.print(render(spans, prices))
    return code
