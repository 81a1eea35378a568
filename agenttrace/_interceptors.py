"""Installs every available instrumentor while runs are active (first run in, last run out).

Also makes ``ThreadPoolExecutor.submit`` (and so ``loop.run_in_executor``) carry the caller's
contextvars while runs are active, so work submitted from inside a step keeps its step.
"""

from __future__ import annotations

import contextvars
import importlib.util
import os
from typing import Any

from ._runtime import runtime
from ._scope import RunState, current_scope
from ._warn import warn_once

__all__ = ["INSTRUMENTORS", "install", "uninstall"]

# (entry-point name in pyproject.toml, module that must be importable, instrumentor module, class)
INSTRUMENTORS: tuple[tuple[str, str, str, str], ...] = (
    ("agenttrace_httpx", "httpx", "agenttrace.instrumentors.httpx", "HttpxInstrumentor"),
    ("agenttrace_httpx2", "httpx2", "agenttrace.instrumentors.httpx2", "Httpx2Instrumentor"),
    ("agenttrace_urllib3", "urllib3", "agenttrace.instrumentors.urllib3", "Urllib3Instrumentor"),
    ("agenttrace_socket", "socket", "agenttrace.instrumentors.socket", "SocketInstrumentor"),
)


def _disabled() -> set[str]:
    # The variable opentelemetry-instrument reads, honoured the same way when @run installs ours.
    raw = os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "")
    return {name.strip() for name in raw.split(",") if name.strip()}

# Instrumentors this module turned on, so teardown leaves alone those the user enabled.
_ours: list[Any] = []


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def install() -> None:
    """Instrument every library that is installed (called when the first run starts)."""
    disabled = _disabled()
    for entry_point, library, module_name, class_name in INSTRUMENTORS:
        if entry_point in disabled or not _available(library) or not _available(module_name):
            continue
        try:
            module = importlib.import_module(module_name)
            instrumentor = getattr(module, class_name)()
            if instrumentor.is_instrumented_by_opentelemetry:
                continue
            instrumentor.instrument(skip_dep_check=True)
            _ours.append(instrumentor)
        except Exception as exc:  # noqa: BLE001 - one library failing must not stop the run
            warn_once(f"instrument:{library}", f"could not instrument {library}: {exc!r}; its calls are not recorded")
    _patch_executor()


def uninstall() -> None:
    """Undo :func:`install` (called when the last run ends)."""
    _unpatch_executor()
    while _ours:
        instrumentor = _ours.pop()
        try:
            instrumentor.uninstrument()
        except Exception as exc:  # noqa: BLE001 - teardown must not raise into the agent
            warn_once(f"uninstrument:{type(instrumentor).__name__}", f"could not uninstrument: {exc!r}")


def _submit(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if current_scope() is None or not args:
        return wrapped(*args, **kwargs)
    ctx = contextvars.copy_context()
    fn, rest = args[0], args[1:]
    return wrapped(ctx.run, fn, *rest, **kwargs)


def _patch_executor() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from ._patch import wrap_innermost

    wrap_innermost(ThreadPoolExecutor, "submit", _submit)


def _unpatch_executor() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from ._patch import unwrap_ours

    unwrap_ours(ThreadPoolExecutor, "submit", _submit)


def _finish_run(state: RunState) -> None:
    from ._capture import finish_run

    finish_run(state)


def _configure(settings: Any) -> None:
    from ._payload import set_extra_redacted_headers

    set_extra_redacted_headers(getattr(settings, "redact_headers", ()))


runtime.on_runs(install, uninstall)
runtime.run_end_hooks.append(_finish_run)
runtime.on_configure(_configure)
