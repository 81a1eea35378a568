"""Replay with one thing changed: the calls that go live, and the point from which everything does.

``replay_live`` (``AGENTTRACE_REPLAY_LIVE``, ``agenttrace replay --live``, the pytest marker's
``live=``) names the calls a replay lets through to the real service while everything else is
served from the recording: ``llm`` (the calls :func:`agenttrace._format.genai.is_llm_call`
recognises), ``tool`` (every other call), ``all``, a URL prefix (``https://api.openai.com/v1/``),
a URL pattern with ``*`` (``https://*.openai.com/*``) or a host (``api.openai.com``, or
``host:port``). ``replay_live_from`` (``--live-from``) names the point from which every call goes
live and entropy is drawn for real: ``STEP`` or ``STEP#N`` (the N-th time a step of that name
starts in the run), or ``#N`` (the run's N-th call, as ``agenttrace show`` numbers them).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from agenttrace._capture.model import Exchange, RequestData
from agenttrace._format.genai import is_llm_call

__all__ = ["ForkPoint", "LiveCall", "LiveRules", "parse_fork_point", "parse_live"]

KINDS = ("llm", "tool", "all")


@dataclass(frozen=True)
class LiveRules:
    """Which calls go live (see the module docstring); empty: none."""

    kinds: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    hosts: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.kinds or self.prefixes or self.patterns or self.hosts)

    def matches(self, request: RequestData) -> bool:
        """True when ``request`` goes live."""
        if "all" in self.kinds:
            return True
        url = request.url
        if self.prefixes and any(_under(url, prefix) for prefix in self.prefixes):
            return True
        if any(fnmatch.fnmatchcase(url, pattern) for pattern in self.patterns):
            return True
        if self.hosts:
            try:
                parts = urlsplit(url)
                host = (parts.hostname or "").lower()
                port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
            except ValueError:
                host, port = "", None
            shown = f"[{host}]" if ":" in host else host
            if host in self.hosts or shown in self.hosts or (port is not None and f"{shown}:{port}" in self.hosts):
                return True
        if self.kinds & {"llm", "tool"}:
            llm = is_llm_call(request.method, url, request.headers, request.body)
            return ("llm" in self.kinds and llm) or ("tool" in self.kinds and not llm)
        return False


def _under(url: str, prefix: str) -> bool:
    """True when ``url`` starts with ``prefix`` at a boundary: ``https://api.x`` is not ``https://api.x.evil``."""
    if not url.startswith(prefix):
        return False
    if prefix.endswith(("/", "?", "&", "=")) or len(url) == len(prefix):
        return True
    return url[len(prefix)] in "/?#" or prefix.count("/") > 2  # a prefix with a path may end mid-segment


def parse_live(entries: Iterable[str], where: str = "replay_live") -> LiveRules:
    """The rules of ``entries`` (strings as the module docstring lists); ValueError naming the bad one."""
    kinds: set[str] = set()
    prefixes: list[str] = []
    patterns: list[str] = []
    hosts: set[str] = set()
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        lower = entry.lower()
        if lower in KINDS:
            kinds.add(lower)
        elif "*" in entry:
            patterns.append(entry)
        elif lower.startswith(("http://", "https://")):
            prefixes.append(entry)
        elif "/" in entry or " " in entry:
            raise ValueError(
                f"{where}: {entry!r} is not a kind ({', '.join(KINDS)}), a URL prefix (http://... or "
                "https://...), a pattern with * or a host"
            )
        else:
            hosts.add(lower)
    return LiveRules(frozenset(kinds), tuple(prefixes), tuple(patterns), frozenset(hosts))


@dataclass(frozen=True)
class ForkPoint:
    """Where a run stops being served and goes live: a step's N-th start, or the run's N-th call."""

    step: str | None = None
    occurrence: int = 1
    call: int | None = None

    def describe(self) -> str:
        """The point as the user wrote it."""
        if self.call is not None:
            return f"call #{self.call}"
        return f"step {self.step!r}" + (f" (its start #{self.occurrence})" if self.occurrence > 1 else "")


def parse_fork_point(text: str, where: str = "replay_live_from") -> ForkPoint:
    """``STEP``, ``STEP#N`` or ``#N`` (N from 1); ValueError naming what is wrong."""
    value = text.strip()
    name, sep, number = value.rpartition("#") if "#" in value else (value, "", "")
    if sep:
        if not number.isdigit() or int(number) < 1:
            raise ValueError(f"{where}: {text!r}: expected STEP, STEP#N or #N with N a whole number from 1")
        if not name:
            return ForkPoint(call=int(number))
        return ForkPoint(step=name, occurrence=int(number))
    if not value:
        raise ValueError(f"{where}: empty; expected STEP, STEP#N or #N")
    return ForkPoint(step=value)


@dataclass
class LiveCall:
    """What the replay lookup returns for a call that goes live: the recorded call at its place, if any.

    ``answered`` is told the live answer (status, body as recorded, error type, headers) when the call is
    over, so the replay can say whether and where the run diverged from the recording.
    """

    recorded: Exchange | None
    answered: Callable[[int | None, bytes, str | None, Sequence[tuple[str, str]]], None] = field(
        default=lambda *_: None
    )
