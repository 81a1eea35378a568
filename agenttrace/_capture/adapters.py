"""What every AgentTrace instrumentor shares: lazy import of its library with an install hint,
and one adapter (the patch) per library for the process."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, TypeVar

__all__ = ["import_library", "lazy_instrumentors", "shared_adapter"]

_T = TypeVar("_T")
_adapters: dict[str, Any] = {}
_adapters_lock = threading.Lock()


def shared_adapter(library: str, make: Callable[[], _T]) -> _T:
    """The process's one adapter of ``library``, made by ``make()`` the first time it is asked for.

    Its instrumentor and ``@run`` (see agenttrace._capture.activation) share it: a patch is recognised by the
    identity of its wrapper, so whichever installed it, either can see and remove it. ``make``
    runs outside the lock, since it imports the library and an import may run hooks that ask for
    an adapter; of two made at once, the first stored is kept.
    """
    found = _adapters.get(library)
    if found is None:
        made = make()
        with _adapters_lock:
            found = _adapters.setdefault(library, made)
    return found  # type: ignore[no-any-return]


def import_library(module_name: str, extra: str | None) -> ModuleType:
    """Import ``module_name``, or raise ModuleNotFoundError saying how to install it."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        hint = f"pip install 'agenttrace[{extra}]'" if extra else f"pip install {module_name}"
        raise ModuleNotFoundError(
            f"{module_name} is not installed, so AgentTrace cannot instrument it; install it with: {hint}",
            name=module_name,
        ) from exc


def lazy_instrumentors(package: str, names: Sequence[str]) -> Callable[[str], Any]:
    """The ``__getattr__`` of an instrumentor package: ``names`` load from its ``instrumentor`` on first use.

    The classes derive from BaseInstrumentor, whose import (opentelemetry.instrumentation)
    costs tens of milliseconds; ``@run`` imports only the adapter beside them (PEP 562).
    """

    def __getattr__(name: str) -> Any:  # noqa: N807 - a module's __getattr__
        if name in names:
            return getattr(importlib.import_module(f"{package}.instrumentor"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
