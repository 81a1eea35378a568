"""The web UI: the list of traces, and what the pages share (the run page is :mod:`.trace_view`).

Pages are rendered on the server with Jinja2 from the templates in ``templates/``, the style sheet
``static/style.css`` inlined (autoescaping on: every name, URL, header and body comes from the
traced agent and is shown as text, never as markup); the payloads fold with ``<details>``.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agenttrace._format.usage import CallUsage, Prices, Totals, format_cost, load_prices
from agenttrace._server.listing import FILTERS, query_of
from agenttrace._server.store.records import TraceSummary

if TYPE_CHECKING:
    import jinja2

__all__ = ["PAGE_SIZE", "render_index", "render_not_found"]

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


def render_not_found() -> str:
    """The page of a trace the store does not have."""
    return _templates().get_template("not_found.html").render()
