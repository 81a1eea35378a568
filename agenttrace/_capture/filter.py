"""What must never be recorded: ``step(filter=...)`` rules, applied to data and text.

A filter spec is one of, or a list of:

* ``"password"``: a field name, matched case-insensitively at any depth (JSON held in a string
  value, such as an LLM tool call's ``arguments``, included);
* ``"user.password"`` or ``"$.messages.*.content"``: a path from the root (``*`` matches any
  key or list index);
* ``re.compile(r"sk-[A-Za-z0-9]+")``, or the text ``"re:sk-[A-Za-z0-9]+"``: a pattern,
  replaced wherever it occurs in text;
* a callable ``fn(path, value) -> value``: called for every leaf with its dotted path; what it
  returns is recorded instead (return the value unchanged to keep it).

Filters nest: a step's rules add to those of every enclosing step, and to the global filter
(``init(filter=...)``, ``AGENTTRACE_FILTER``) that every run starts from.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Union

from agenttrace._core.errors import ConfigurationError

__all__ = ["EMPTY", "FILTERED", "PATTERN_PREFIX", "Filter", "FilterSpec", "compile_filter"]

FILTERED = "[FILTERED]"

LeafRule = Callable[[str, Any], Any]
FilterSpec = Union[str, "re.Pattern[str]", LeafRule, Iterable[Union[str, "re.Pattern[str]", LeafRule]], None]


@dataclass(frozen=True)
class Filter:
    """Compiled filter rules; the empty filter is falsy and costs nothing."""

    names: frozenset[str] = frozenset()
    paths: tuple[tuple[str, ...], ...] = ()
    patterns: tuple[re.Pattern[str], ...] = ()
    callables: tuple[LeafRule, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.names or self.paths or self.patterns or self.callables)

    def extend(self, other: Filter) -> Filter:
        """Rules of both filters."""
        if not other:
            return self
        if not self:
            return other
        return Filter(
            self.names | other.names,
            self.paths + other.paths,
            self.patterns + other.patterns,
            self.callables + other.callables,
        )

    def _path_hit(self, path: tuple[str, ...]) -> bool:
        return any(len(rule) == len(path) and all(r in ("*", p) for r, p in zip(rule, path)) for rule in self.paths)

    def field_hit(self, path: tuple[str, ...]) -> bool:
        """True when the field at ``path`` is named by a name or path rule."""
        return (bool(path) and path[-1].lower() in self.names) or self._path_hit(path)

    def may_hit(self, text: str) -> bool:
        """False when no name or path rule can hit a field of JSON in ``text``: it is not parsed.

        A rule's field name (a path's last part) must then appear in the text, as a key does;
        a path ending in ``*`` could hit any field, so it always parses.
        """
        keys = self._keys
        if keys is None:
            return True
        if not keys:
            return False  # no name or path rules: nothing to look for
        lowered = text.lower()  # one pass in C; a case-insensitive regex search is several times slower
        return any(key in lowered for key in keys)

    @functools.cached_property
    def _keys(self) -> tuple[str, ...] | None:
        """Every rule's field name, lowercased; None when a path ends in ``*`` (any field may hit)."""
        if any(rule[-1] == "*" for rule in self.paths):
            return None
        return tuple(sorted(self.names | {rule[-1].lower() for rule in self.paths}))

    def text(self, value: str) -> str:
        """``value`` with every pattern match replaced."""
        for pattern in self.patterns:
            value = pattern.sub(FILTERED, value)
        return value

    def apply(self, data: Any, path: tuple[str, ...] = (), *, strings: bool = True) -> Any:
        """A copy of JSON-like ``data`` with filtered fields and text replaced.

        ``strings``: look for fields in JSON held in string values too (an LLM tool call's
        ``arguments``). A caller holding the whole text passes ``may_hit(text)``, so a large body
        that names no rule's field costs no look at its strings.
        """
        if not self:
            return data
        if path and self.field_hit(path):
            return FILTERED
        if isinstance(data, Mapping):
            return {k: self.apply(v, (*path, str(k)), strings=strings) for k, v in data.items()}
        if isinstance(data, list):
            return [self.apply(v, (*path, str(i)), strings=strings) for i, v in enumerate(data)]
        if isinstance(data, str):
            inner = _embedded_json(data) if strings and data[:1] in ("{", "[") and self.may_hit(data) else None
            if inner is not None:
                # JSON held in a string: its fields are fields too.
                filtered = self.apply(inner, path)
                if filtered != inner:
                    data = json.dumps(filtered, ensure_ascii=False)
            data = self.text(data)
        for fn in self.callables:
            try:
                data = fn(".".join(path), data)
            except Exception:  # noqa: BLE001 - a user rule must not break the agent
                data = FILTERED
        return data


def _embedded_json(text: str) -> Any:
    """The object or array ``text`` holds as JSON, or None (only text shaped like one is parsed)."""
    stripped = text.strip()
    if len(stripped) < 2 or stripped[0] not in "{[" or stripped[-1] not in "}]":
        return None
    try:
        value = json.loads(stripped)
    except ValueError:
        return None
    return value if isinstance(value, (dict, list)) else None


EMPTY = Filter()

# A string entry starting with this is a regular expression, not a field name: the form a
# pattern takes where only text can be given (AGENTTRACE_FILTER).
PATTERN_PREFIX = "re:"


def compile_filter(spec: FilterSpec) -> Filter:
    """Compile a ``filter=`` argument; raise ConfigurationError naming a bad entry."""
    if spec is None:
        return EMPTY
    items: Iterable[Any] = [spec] if isinstance(spec, (str, re.Pattern)) or callable(spec) else spec
    names: set[str] = set()
    paths: list[tuple[str, ...]] = []
    patterns: list[re.Pattern[str]] = []
    callables: list[LeafRule] = []
    try:
        iterator = iter(items)
    except TypeError:
        raise ConfigurationError(
            f"filter {spec!r} is not valid; expected a field name, a path, a compiled pattern, "
            "a callable, or a list of these"
        ) from None
    for item in iterator:
        if isinstance(item, str) and item.startswith(PATTERN_PREFIX):
            if item == PATTERN_PREFIX:
                # An empty pattern matches between every two characters: every text would be ruined.
                raise ConfigurationError(
                    "filter entry 're:' has an empty pattern; expected 're:' followed by a pattern"
                )
            try:
                patterns.append(re.compile(item[len(PATTERN_PREFIX) :]))
            except re.error as exc:
                raise ConfigurationError(
                    f"filter entry {item!r} is not a valid regular expression ({exc}); expected 're:' "
                    "followed by a pattern of Python's re module"
                ) from None
        elif isinstance(item, str):
            text = item[2:] if item.startswith("$.") else item
            if not text:
                raise ConfigurationError("filter entry '' is empty; expected a field name or path")
            if "," in text:
                # Almost surely several rules in one string: as one field name it would filter nothing.
                rules = [part.strip() for part in item.split(",") if part.strip()]
                raise ConfigurationError(
                    f"filter entry {item!r} holds a comma; give several rules as a list, e.g. {rules!r}"
                )
            if "." in text:
                paths.append(tuple(text.split(".")))
            else:
                names.add(text.lower())
        elif isinstance(item, re.Pattern):
            patterns.append(item)
        elif callable(item):
            callables.append(item)
        else:
            raise ConfigurationError(
                f"filter entry {item!r} is not valid; expected a field name, a path such as "
                "'user.password', a compiled re pattern or 're:<pattern>', or a callable(path, value)"
            )
    return Filter(frozenset(names), tuple(paths), tuple(patterns), tuple(callables))
