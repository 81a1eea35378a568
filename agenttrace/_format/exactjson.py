"""JSON parsed fast and exactly: orjson where it reads a document exactly, the standard library elsewhere.

orjson (a core dependency) parses trace lines about twice as fast as ``json``, but reads an
integer literal beyond 64 bits as a rounded float where ``json`` keeps it exact. Readers that
turn JSON numbers into integers use :func:`exact_int` (or :func:`has_inexact`) and, on
:class:`InexactNumberError`, parse the text again with ``json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["InexactNumberError", "exact_int", "exact_loads", "fast_loads", "has_inexact", "leaves", "orjson_module"]

_UNSET: Any = object()
_orjson: Any = _UNSET


def orjson_module() -> Any:
    """The ``orjson`` module (imported on first use), or None when it is not installed."""
    global _orjson  # noqa: PLW0603 - imported once, on first use
    if _orjson is _UNSET:
        try:
            import orjson
        except ImportError:
            _orjson = None
        else:
            _orjson = orjson
    return _orjson


def fast_loads() -> Callable[[Any], Any] | None:
    """``orjson.loads``, or None when orjson is not installed."""
    module = orjson_module()
    return None if module is None else module.loads


class InexactNumberError(ValueError):
    """A number orjson may have rounded: the document must be parsed again by ``json``."""


# orjson returns exact ints from -2**63 to 2**64 - 1 and a float beyond; a float of that size in
# place of an integer may have been rounded (or was written as a float: parsing again is harmless).
_INEXACT = 2.0**63


def exact_int(value: Any) -> int:
    """``int(value)`` for a value of a parsed document; InexactNumberError when orjson may have rounded it."""
    if type(value) is float and not -_INEXACT < value < _INEXACT:
        raise InexactNumberError(f"{value!r} may be a rounded integer")
    return int(value)


def leaves(value: Any) -> Iterator[Any]:
    """Every value of a parsed JSON document that is not a dict or a list (no recursion)."""
    stack = [value]
    pop, push = stack.pop, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is dict:
            push(item.values())
        elif kind is list:
            push(item)
        else:
            yield item


def has_inexact(value: Any) -> bool:
    """True if ``value`` (a parsed JSON document) holds a float orjson may have made of an integer."""
    return any(type(item) is float and not -_INEXACT < item < _INEXACT for item in leaves(value))


def exact_loads(text: str | bytes) -> Any:
    """``text`` parsed by orjson, or by json where orjson may have rounded an integer; ValueError if not JSON."""
    fast = fast_loads()
    if fast is not None:
        document = fast(text)
        if not has_inexact(document):
            return document
    return json.loads(text)
