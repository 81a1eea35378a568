"""Installs every available instrumentor while runs are active (first run in, last run out).

Also makes ``ThreadPoolExecutor.submit`` (and so ``loop.run_in_executor``) carry the caller's
contextvars while runs are active, so work submitted from inside a step keeps its step.
"""

from __future__ import annotations

import contextvars
import importlib.util
import os
import sys
import threading
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
# While runs are active: the instrumentors waiting for their library's first import, by library.
_deferred: dict[str, tuple[str, str]] = {}  # library -> (instrumentor module, class)
# Libraries with an import hook registered and not fired yet (wrapt keeps a hook until it fires).
_hooked: set[str] = set()
_lock = threading.Lock()
# Bumped when the last run ends: an instrumentor turned on by a hook from an earlier generation is
# turned off again instead of being kept.
_generation = [0]


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def install() -> None:
    """Instrument every library that is installed (called when the first run starts).

    A library the process has not imported yet is instrumented when it is first imported (a
    wrapt post-import hook), not imported here: a run that never uses urllib3 or httpx2 does not
    pay for importing them.
    """
    disabled = _disabled()
    for entry_point, library, module_name, class_name in INSTRUMENTORS:
        if entry_point in disabled:
            continue
        if library not in sys.modules:
            if not _available(library) or not _available(module_name):
                continue
            with _lock:
                _deferred[library] = (module_name, class_name)
                if library in _hooked:
                    continue
                _hooked.add(library)
            try:
                _when_imported(library)
            except Exception as exc:  # noqa: BLE001 - instrument it now instead
                warn_once(f"import-hook:{library}", f"could not watch for {library}'s import: {exc!r}")
                _instrument_deferred(library)
            continue
        with _lock:
            generation = _generation[0]
        _instrument(library, module_name, class_name, generation)
    _patch_executor()


def _when_imported(library: str) -> None:
    import wrapt

    wrapt.register_post_import_hook(_on_import, library)


def _on_import(module: Any) -> None:
    # Runs inside the agent's import statement: it must never raise into it.
    library = getattr(module, "__name__", "")
    with _lock:
        _hooked.discard(library)
    _instrument_deferred(library)


def _instrument_deferred(library: str) -> None:
    with _lock:
        entry = _deferred.pop(library, None)
        generation = _generation[0]
    if entry is not None:  # runs are still active
        _instrument(library, *entry, generation)


def _instrument(library: str, module_name: str, class_name: str, generation: int) -> None:
    # Not under _lock: importing the instrumentor must not wait on another thread's import.
    try:
        module = importlib.import_module(module_name)
        instrumentor = getattr(module, class_name)()
        if instrumentor.is_instrumented_by_opentelemetry:
            return
        instrumentor.instrument(skip_dep_check=True)
    except Exception as exc:  # noqa: BLE001 - one library failing must not stop the run
        warn_once(f"instrument:{library}", f"could not instrument {library}: {exc!r}; its calls are not recorded")
        return
    with _lock:
        current = generation == _generation[0]
        if current:
            _ours.append(instrumentor)
    if not current:  # the last run ended meanwhile (a hook fired in another thread)
        _uninstrument(instrumentor)


def _uninstrument(instrumentor: Any) -> None:
    try:
        instrumentor.uninstrument()
    except Exception as exc:  # noqa: BLE001 - teardown must not raise into the agent
        warn_once(f"uninstrument:{type(instrumentor).__name__}", f"could not uninstrument: {exc!r}")


def uninstall() -> None:
    """Undo :func:`install` (called when the last run ends)."""
    _unpatch_executor()
    with _lock:
        _generation[0] += 1
        _deferred.clear()  # a hook firing later finds nothing to do
        ours = _ours[::-1]
        _ours.clear()
    for instrumentor in ours:
        _uninstrument(instrumentor)


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
