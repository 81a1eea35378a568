"""Statistics over rounds and the Markdown the harness writes.

Every comparison is paired: a ratio or a difference is computed within one round (the
contenders of a round ran back to back, so they shared the machine's state of the moment),
and the median of those per-round figures is reported with its range. A noisy minute then
shifts both sides of a pair instead of one contender.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Paired", "Rounds", "Section", "Target", "fmt", "paired"]

Result = dict[str, Any]


@dataclass
class Rounds:
    """What one contender's workers returned, by round (None: not run that round)."""

    name: str
    by_round: list[Result | None] = field(default_factory=list)
    skipped: str | None = None
    failures: list[str] = field(default_factory=list)  # rounds lost to a crash, with the reason

    def values(self, key: str) -> list[float]:
        return [float(r[key]) for r in self.by_round if r is not None and key in r]

    def median(self, key: str) -> float | None:
        values = self.values(key)
        return statistics.median(values) if values else None

    def first(self, key: str) -> Any:
        for r in self.by_round:
            if r is not None and key in r:
                return r[key]
        return None


@dataclass(frozen=True)
class Paired:
    """The median and range of a per-round figure."""

    median: float
    low: float
    high: float
    n: int


def paired(a: Rounds, b: Rounds | None, fn: Callable[[Result, Result | None], float | None]) -> Paired | None:
    """``fn(a_round, b_round)`` for every round where both ran; None when no round qualifies."""
    values: list[float] = []
    for index, left in enumerate(a.by_round):
        right = None
        if b is not None:
            right = b.by_round[index] if index < len(b.by_round) else None
            if right is None:
                continue
        if left is None:
            continue
        value = fn(left, right)
        if value is not None:
            values.append(value)
    if not values:
        return None
    return Paired(statistics.median(values), min(values), max(values), len(values))


def fmt(value: float | None, digits: int = 0, unit: str = "") -> str:
    """A number for a table cell; an em dash when absent."""
    if value is None:
        return "—"
    return f"{value:,.{digits}f}{unit}"


def fmt_paired(value: Paired | None, digits: int = 2, unit: str = "") -> str:
    """``median [low, high]`` of a paired figure."""
    if value is None:
        return "—"
    if value.n == 1:
        return fmt(value.median, digits, unit)
    return f"{fmt(value.median, digits, unit)} [{fmt(value.low, digits)}, {fmt(value.high, digits)}]"


@dataclass(frozen=True)
class Target:
    """One target of issue 6, judged on the median of its paired figure."""

    text: str  # e.g. "≤ 1.0"
    limit: float
    below: bool = True  # pass when value <= limit (else value >= limit)
    strict: bool = False  # pass only when value < limit

    def verdict(self, value: Paired | float | None) -> str:
        if value is None:
            return "not measured"
        number = value.median if isinstance(value, Paired) else value
        if not self.below:
            return "**pass**" if number >= self.limit else "**miss**"
        ok = number < self.limit if self.strict else number <= self.limit
        return "**pass**" if ok else "**miss**"


@dataclass
class Section:
    """One scenario's part of the report."""

    title: str
    intro: str
    tables: list[tuple[Sequence[str], Sequence[Sequence[str]]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.tables.append((header, rows))

    def markdown(self) -> str:
        out = [f"## {self.title}", "", self.intro, ""]
        for header, rows in self.tables:
            out.append("| " + " | ".join(header) + " |")
            out.append("|" + "|".join("---" for _ in header) + "|")
            out.extend("| " + " | ".join(row) + " |" for row in rows)
            out.append("")
        for note in self.notes:
            out.append(f"- {note}")
        if self.notes:
            out.append("")
        return "\n".join(out)


def skipped_row(rounds: Rounds, width: int) -> list[str]:
    """A table row saying a contender did not run, and why."""
    return [rounds.name, f"skipped: {rounds.skipped}", *(["—"] * (width - 2))]
