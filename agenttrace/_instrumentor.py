"""What every AgentTrace instrumentor shares: lazy import of its library with an install hint."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["import_library"]


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
