"""The end-of-run replay report: on stderr, and as attributes of the replay run's span.

Span attributes (besides ``agenttrace.run.replay_of``, set when the run starts):
``agenttrace.replay.source``, ``agenttrace.replay.calls_served``, ``agenttrace.replay.calls_missed``,
``agenttrace.replay.leaks``, ``agenttrace.replay.calls_unused``, ``agenttrace.replay.entropy_served``,
``agenttrace.replay.violations``; with calls gone live (``replay_live``, ``replay_live_from``),
``agenttrace.replay.calls_live``, and ``agenttrace.replay.live_from`` once the run went live; where
the run first left the recording, ``agenttrace.replay.first_divergence``.
"""

from __future__ import annotations

from agenttrace._capture.model import Exchange
from agenttrace._core import errors as _errors
from agenttrace._core.errors import AgentTraceError, ReplayMismatchError, say
from agenttrace._format.schema import (
    REPLAY_CALLS_LIVE,
    REPLAY_CALLS_MISSED,
    REPLAY_CALLS_SERVED,
    REPLAY_CALLS_UNUSED,
    REPLAY_CLOCK_SERVED,
    REPLAY_ENTROPY_SERVED,
    REPLAY_FIRST_DIVERGENCE,
    REPLAY_LEAKS,
    REPLAY_LIVE_FROM,
    REPLAY_SOURCE,
    REPLAY_VIOLATIONS,
)
from agenttrace._replay import children as _children
from agenttrace._replay.session import ReplaySession, RunStats

__all__ = [
    "REPLAY_CALLS_LIVE",
    "REPLAY_CALLS_MISSED",
    "REPLAY_CALLS_SERVED",
    "REPLAY_CALLS_UNUSED",
    "REPLAY_CLOCK_SERVED",
    "REPLAY_ENTROPY_SERVED",
    "REPLAY_FIRST_DIVERGENCE",
    "REPLAY_LEAKS",
    "REPLAY_LIVE_FROM",
    "REPLAY_SOURCE",
    "REPLAY_VIOLATIONS",
    "report",
]


_LISTED = 5  # lines per category on stderr; the span holds the counts


def _call(exchange: Exchange) -> str:
    step = "/".join(exchange.step_path) or "(run)"
    return f"{exchange.request.method} {exchange.request.url} (step {step}, call #{exchange.ordinal})"


def _from_children(session: ReplaySession, stats: RunStats) -> set[str]:
    """Add what child processes reported to ``stats``; the recorded calls they served."""
    served: set[str] = set()
    for kind, pid, text in _children.read():
        where = f" (in child process {pid})"
        if kind == "served":
            served.add(text)
            stats.served += 1
        elif kind == "consumed":  # a recorded call a child's live call took the place of
            served.add(text)
        elif kind == "live":
            stats.live += 1
        elif kind == "missed":
            stats.missed.append(text + where)
        elif kind == "leak":
            stats.leaks.append(text + where)
        elif kind == "violation" and session.governance:
            name, _, message = text.partition("\t")
            cls = getattr(_errors, name, None)
            if not (isinstance(cls, type) and issubclass(cls, AgentTraceError)):
                cls = ReplayMismatchError
            stats.run.add_violation(cls(f"in child process {pid}: {message}"))
    return served


def report(session: ReplaySession, stats: RunStats) -> None:
    """Summarise one replay run; in governance with ``fail_on_unused``, unused calls fail it."""
    run = stats.run
    served_by_children = _from_children(session, stats)
    unused: list[Exchange] = []
    # A nested run's outer run accounts for the whole recorded trace; a child process's run
    # for none of it (its parent reports what stayed unused).
    if not stats.nested and not _children.in_child():
        unused = [
            e
            for e in session.matcher.unused(stats.replay_of or None)
            if f"{e.trace_id}/{e.span_id}" not in served_by_children
        ]
    settings = session.settings
    if unused and session.governance and settings.fail_on_unused:
        run.add_violation(
            ReplayMismatchError(
                f"governance replay: {len(unused)} recorded call(s) were never made by run {run.name!r} "
                f"(fail_on_unused is on); first: {_call(unused[0])}"
            )
        )
    span = run.span
    span.set_attribute(REPLAY_SOURCE, session.source)
    span.set_attribute(REPLAY_CALLS_SERVED, stats.served)
    span.set_attribute(REPLAY_CALLS_MISSED, len(stats.missed))
    span.set_attribute(REPLAY_LEAKS, len(stats.leaks))
    span.set_attribute(REPLAY_CALLS_UNUSED, len(unused))
    span.set_attribute(REPLAY_ENTROPY_SERVED, stats.entropy_served)
    span.set_attribute(REPLAY_CLOCK_SERVED, stats.clock_served)
    span.set_attribute(REPLAY_VIOLATIONS, len(run.violations))
    opened = bool(session.live) or session.fork is not None
    if opened:
        span.set_attribute(REPLAY_CALLS_LIVE, stats.live)
    if stats.forked:
        span.set_attribute(REPLAY_LIVE_FROM, stats.forked)
    if stats.diverged:
        span.set_attribute(REPLAY_FIRST_DIVERGENCE, stats.diverged)
    clean = not (
        stats.missed
        or stats.leaks
        or unused
        or run.violations
        or stats.diverged
        or (session.fork is not None and not stats.forked and not _children.in_child())
    )
    if clean and settings.quiet:
        return
    of = f", replay of trace {stats.replay_of}" if stats.replay_of else ""
    lines = [
        f"replay report for run {run.name!r} ({settings.governance_level}{of}): "
        f"{stats.served} call(s) served, "
        + (f"{stats.live} live, " if opened else "")
        + f"{len(stats.missed)} missed, {len(stats.leaks)} leak(s), "
        f"{len(unused)} recorded call(s) unused, {stats.entropy_served} entropy draw(s) served"
        + (f" ({stats.entropy_resized} at another size)" if stats.entropy_resized else "")
        + (f", {stats.clock_served} clock reading(s) served" if stats.clock_served else "")
        + (f", {len(run.violations)} governance violation(s)" if run.violations else "")
    ]
    if stats.forked:
        lines.append(f"  live from: {stats.forked}")
    elif session.fork is not None and not _children.in_child():
        lines.append(f"  live from: never reached ({session.fork.describe()} did not come): nothing went live by it")
    if stats.diverged:
        lines.append(f"  first divergence: {stats.diverged}")
    for label, items in (
        ("missed", stats.missed),
        ("leak", stats.leaks),
        ("unused", [_call(e) for e in unused]),
    ):
        lines.extend(f"  {label}: {item}" for item in items[:_LISTED])
        if len(items) > _LISTED:
            lines.append(f"  ... and {len(items) - _LISTED} more {label}")
    for line in lines:
        say(line)
