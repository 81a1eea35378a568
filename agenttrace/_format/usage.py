"""Tokens and cost of a trace's LLM calls, as ``agenttrace show`` and the server show them.

A call span's model and token counts are its ``gen_ai.*`` attributes; a span recorded before
AgentTrace wrote them has its payloads read by the same parser the recorder uses
(:func:`agenttrace._format.genai.describe`). Cost comes from a price table: the bundled
``prices.toml`` (US dollars per million tokens, with the date its prices were taken), extended and
overridden by the user's file (``AGENTTRACE_PRICES_FILE`` or ``--prices``). A model the table does
not know has tokens but no cost, and the totals say how many calls were not priced.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agenttrace._core.errors import ConfigurationError
from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.GEN_AI_INPUT_TOKENS
from agenttrace._format.files import SpanRecord

__all__ = [
    "PRICES_FILE_ENV",
    "CallUsage",
    "Price",
    "Prices",
    "Totals",
    "call_usage",
    "format_cost",
    "load_prices",
    "totals",
]

PRICES_FILE_ENV = "AGENTTRACE_PRICES_FILE"
_BUNDLED = Path(__file__).with_name("prices.toml")
_KEYS = ("input", "output", "cached_input", "cache_write")


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens of one model."""

    input: float
    output: float
    cached_input: float
    cache_write: float


@dataclass(frozen=True)
class CallUsage:
    """The model and token counts of one LLM call (None: the payload did not say)."""

    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    cache_read_tokens: int | None = None
    cache_creation_tokens: int | None = None


@dataclass(frozen=True)
class Prices:
    """A price table: model name -> :class:`Price`; ``sources`` says where it came from (file, date taken)."""

    models: Mapping[str, Price]
    sources: tuple[str, ...] = ()

    def lookup(self, model: str | None) -> Price | None:
        """The price of ``model``: its own entry, else its longest entry followed by ``-``, after any ``provider/``."""
        if not model:
            return None
        name = model.rsplit("/", 1)[-1].lower()
        found = self.models.get(name)
        if found is not None:
            return found
        best = ""
        for key in self.models:
            if len(key) > len(best) and name.startswith(key + "-"):
                best = key
        return self.models[best] if best else None

    def cost(self, usage: CallUsage) -> float | None:
        """The call's cost in US dollars, or None when its model has no price or it reported no tokens."""
        price = self.lookup(usage.model)
        if price is None or (usage.input_tokens is None and usage.output_tokens is None):
            return None
        read = usage.cache_read_tokens or 0
        written = usage.cache_creation_tokens or 0
        fresh = max((usage.input_tokens or 0) - read - written, 0)  # input counts include the cache's
        total = (
            fresh * price.input
            + read * price.cached_input
            + written * price.cache_write
            + (usage.output_tokens or 0) * price.output
        )
        return total / 1e6


@dataclass
class Totals:
    """LLM calls of a run or trace added up: tokens reported, and cost of the calls priced."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    priced: int = 0
    models: dict[str, int] = field(default_factory=dict)

    def add(self, usage: CallUsage, cost: float | None, calls: int = 1) -> None:
        """Count one call (or ``calls`` calls whose tokens and cost ``usage`` and ``cost`` add up)."""
        self.calls += calls
        self.input_tokens += usage.input_tokens or 0
        self.output_tokens += usage.output_tokens or 0
        if cost is not None:
            self.cost += cost
            self.priced += calls
        if usage.model:
            self.models[usage.model] = self.models.get(usage.model, 0) + calls


def format_cost(cost: float) -> str:
    """``$0.0123``: four significant decimals under a cent, two above a dollar."""
    if cost >= 1:
        return f"${cost:,.2f}"
    if cost >= 0.01:
        return f"${cost:.4f}"
    return f"${cost:.6f}" if cost else "$0"


def _int(value: Any) -> int | None:
    return value if type(value) is int else None


def call_usage(span: SpanRecord) -> CallUsage | None:
    """The model and tokens of a call span to a model API, or None for any other span."""
    attrs = span.attributes
    if attrs.get(S.KIND) != "call":
        return None
    if S.GEN_AI_OPERATION not in attrs:
        return _from_payloads(span)
    model = attrs.get(S.GEN_AI_RESPONSE_MODEL) or attrs.get(S.GEN_AI_REQUEST_MODEL)
    return CallUsage(
        model if isinstance(model, str) else None,
        _int(attrs.get(S.GEN_AI_INPUT_TOKENS)),
        _int(attrs.get(S.GEN_AI_OUTPUT_TOKENS)),
        _int(attrs.get(S.GEN_AI_CACHE_READ_TOKENS)),
        _int(attrs.get(S.GEN_AI_CACHE_CREATION_TOKENS)),
    )


def _from_payloads(span: SpanRecord) -> CallUsage | None:
    """A span written before the gen_ai attributes: its recorded payloads, read by the recorder's parser."""
    from agenttrace._format.genai import describe_recorded

    events = {name: attrs for name, _, attrs in span.events}
    request = events.get(S.EVENT_REQUEST)
    if request is None:
        return None
    call = describe_recorded(request, events.get(S.EVENT_RESPONSE))
    if call is None:
        return None
    return CallUsage(
        call.model, call.input_tokens, call.output_tokens, call.cache_read_tokens, call.cache_creation_tokens
    )


def _read_table(path: Path, label: str) -> tuple[dict[str, Price], str]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10: the same parser, as a distribution
        import tomli as tomllib
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"prices file {label} cannot be read: {exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"prices file {label} is not valid TOML: {exc}") from None
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise ConfigurationError(f'prices file {label}: "models" must be a table of [models."<name>"] tables')
    table: dict[str, Price] = {}
    for name, entry in models.items():
        if not isinstance(entry, dict):
            raise ConfigurationError(f'prices file {label}: models."{name}" must be a table with input and output')
        values: dict[str, float] = {}
        for key, value in entry.items():
            if key not in _KEYS:
                raise ConfigurationError(
                    f'prices file {label}: models."{name}" has unknown key {key!r}; expected {", ".join(_KEYS)}'
                )
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigurationError(
                    f'prices file {label}: models."{name}".{key} is {value!r}; '
                    "expected a number of US dollars per million tokens (>= 0)"
                )
            values[key] = float(value)
        missing = [key for key in ("input", "output") if key not in values]
        if missing:
            raise ConfigurationError(f'prices file {label}: models."{name}" lacks {" and ".join(missing)}')
        table[name.lower()] = Price(
            values["input"],
            values["output"],
            values.get("cached_input", values["input"]),
            values.get("cache_write", values["input"]),
        )
    taken = data.get("taken")
    return table, f"{label} (prices taken {taken})" if taken else label


def load_prices(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Prices:
    """The bundled price table, extended and overridden by ``path`` (default: ``AGENTTRACE_PRICES_FILE``).

    A model in the user's file replaces the bundled entry of the same name whole. Raises
    ConfigurationError naming the file, the model and the key when the file is not a price table.
    """
    env = os.environ if environ is None else environ
    models, source = _read_table(_BUNDLED, "bundled prices.toml")
    sources = [source]
    given = path if path is not None else env.get(PRICES_FILE_ENV, "").strip() or None
    if given is not None:
        own, source = _read_table(Path(given).expanduser(), str(given))
        models.update(own)
        sources.append(source)
    return Prices(models, tuple(sources))


def totals(usages: Iterable[CallUsage], prices: Prices) -> Totals:
    """The calls of ``usages`` added up, priced with ``prices``."""
    out = Totals()
    for usage in usages:
        out.add(usage, prices.cost(usage))
    return out
