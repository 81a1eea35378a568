"""Method patches that survive other instrumentors: ours always sits innermost, and comes out exactly.

OpenTelemetry's own instrumentations wrap the same transport methods and undo themselves with
``unwrap()``, which strips whatever wrapper is outermost. If ours were outermost, their
uninstrument would silently remove ours and leave theirs behind. So :func:`wrap_innermost`
slides our wrapper directly above the original function, below every other wrapper, and
:func:`unwrap_ours` splices exactly our wrapper out of the chain wherever it now sits: both
orders of instrument and uninstrument leave every party's patch as it expects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import wrapt

__all__ = ["is_wrapped", "unwrap_ours", "wrap_innermost"]

_Proxy: type[Any] = getattr(wrapt, "BaseObjectProxy", wrapt.ObjectProxy)

Wrapper = Callable[[Any, Any, tuple[Any, ...], dict[str, Any]], Any]


def _chain(owner: type[Any], name: str) -> list[Any]:
    nodes: list[Any] = []
    node = owner.__dict__.get(name)
    while node is not None:
        nodes.append(node)
        if not isinstance(node, _Proxy):
            break
        try:
            node = node.__wrapped__
        except AttributeError:
            break
    return nodes


def is_wrapped(owner: type[Any], name: str, wrapper: Wrapper) -> bool:
    """True when ``wrapper`` is somewhere in the wrapper chain of ``owner.name``."""
    return any(getattr(n, "_self_wrapper", None) is wrapper for n in _chain(owner, name))


def wrap_innermost(owner: type[Any], name: str, wrapper: Wrapper) -> None:
    """Wrap ``owner.name`` with ``wrapper`` just above the original function; idempotent."""
    nodes = _chain(owner, name)
    if not nodes:
        raise AttributeError(f"{owner.__qualname__} has no attribute {name!r} to wrap")
    if any(getattr(n, "_self_wrapper", None) is wrapper for n in nodes):
        return
    original = nodes[-1]
    ours = wrapt.FunctionWrapper(original, wrapper)
    if len(nodes) == 1:
        setattr(owner, name, ours)
    else:
        nodes[-2].__wrapped__ = ours


def unwrap_ours(owner: type[Any], name: str, wrapper: Wrapper) -> None:
    """Remove ``wrapper`` from the chain of ``owner.name``, leaving every other wrapper in place."""
    nodes = _chain(owner, name)
    for i, node in enumerate(nodes):
        if getattr(node, "_self_wrapper", None) is wrapper:
            inner = node.__wrapped__
            if i == 0:
                setattr(owner, name, inner)
            else:
                nodes[i - 1].__wrapped__ = inner
            return
