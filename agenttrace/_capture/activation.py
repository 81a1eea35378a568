"""Installs every available instrumentor while runs are active (first run in, last run out).

Also makes ``ThreadPoolExecutor.submit`` (and so ``loop.run_in_executor``) and
``threading.Thread.start`` carry the caller's contextvars while runs are active, so work
submitted, or a thread started, from inside a step keeps its run and step.
"""

from __future__ import annotations

import contextvars
import functools
import importlib.util
import os
import sys
import threading
from typing import Any, NamedTuple

from agenttrace._core.config import Settings
from agenttrace._core.errors import warn_once
from agenttrace._core.scope import current_scope, export_thread

__all__ = ["INSTRUMENTORS", "install", "uninstall"]


class Library(NamedTuple):
    """One instrumented library: its OTel instrumentor, and the adapter that ``@run`` installs."""

    entry_point: str  # in pyproject.toml; what OTEL_PYTHON_DISABLED_INSTRUMENTATIONS names
    library: str  # the module that must be importable
    instrumentor: str  # "module:Class" where the BaseInstrumentor is defined (opentelemetry-instrument, by hand)
    adapter: str  # "module:function" returning the patch both share (install, uninstall, installed)


# @run installs each library's adapter directly, not through the instrumentor classes: they
# derive from BaseInstrumentor, and importing opentelemetry.instrumentation (with packaging and
# the semantic-convention helpers) would slow every process's first run.
INSTRUMENTORS: tuple[Library, ...] = (
    Library(
        "agenttrace_httpx",
        "httpx",
        "agenttrace.instrumentors.httpx.instrumentor:HttpxInstrumentor",
        "agenttrace.instrumentors.httpx.adapter:httpx_adapter",
    ),
    Library(
        "agenttrace_httpx2",
        "httpx2",
        "agenttrace.instrumentors.httpx2:Httpx2Instrumentor",
        "agenttrace.instrumentors.httpx.adapter:httpx2_adapter",
    ),
    Library(
        "agenttrace_urllib3",
        "urllib3",
        "agenttrace.instrumentors.urllib3.instrumentor:Urllib3Instrumentor",
        "agenttrace.instrumentors.urllib3.adapter:urllib3_adapter",
    ),
    Library(
        "agenttrace_aiohttp",
        "aiohttp",
        "agenttrace.instrumentors.aiohttp.instrumentor:AiohttpInstrumentor",
        "agenttrace.instrumentors.aiohttp.adapter:aiohttp_adapter",
    ),
    Library(
        "agenttrace_websockets",
        "websockets",
        "agenttrace.instrumentors.websockets.instrumentor:WebSocketsInstrumentor",
        "agenttrace.instrumentors.websockets.adapter:websockets_adapter",
    ),
    Library(
        "agenttrace_socket",
        "socket",
        "agenttrace.instrumentors.socket.instrumentor:SocketInstrumentor",
        "agenttrace.instrumentors.socket.adapter:socket_adapter",
    ),
)


def _disabled() -> set[str]:
    # The variable opentelemetry-instrument reads, honoured the same way when @run installs ours.
    raw = os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "")
    return {name.strip() for name in raw.split(",") if name.strip()}


# The patches this module turned on (library, patch), so teardown leaves alone those the user enabled.
_ours: list[tuple[Library, Any]] = []
# While runs are active: the libraries waiting for their first import, by module name.
_deferred: dict[str, Library] = {}
# Libraries with an import hook registered and not fired yet (wrapt keeps a hook until it fires).
_hooked: set[str] = set()
_lock = threading.Lock()
# Bumped when the last run ends: a patch turned on by a hook from an earlier generation is
# turned off again instead of being kept.
_generation = [0]


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _load(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def install() -> None:
    """Instrument every library that is installed (called when the first run starts).

    A library the process has not imported yet is instrumented when it is first imported (a
    wrapt post-import hook), not imported here: a run that never uses urllib3 or httpx2 does not
    pay for importing them.
    """
    disabled = _disabled()
    for lib in INSTRUMENTORS:
        if lib.entry_point in disabled:
            continue
        if lib.library not in sys.modules:
            if not _available(lib.library):
                continue
            with _lock:
                _deferred[lib.library] = lib
                if lib.library in _hooked:
                    continue
                _hooked.add(lib.library)
            try:
                _when_imported(lib.library)
            except Exception as exc:  # noqa: BLE001 - instrument it now instead
                warn_once(f"import-hook:{lib.library}", f"could not watch for {lib.library}'s import: {exc!r}")
                _instrument_deferred(lib.library)
            continue
        with _lock:
            generation = _generation[0]
        _instrument(lib, generation)
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
        lib = _deferred.pop(library, None)
        generation = _generation[0]
    if lib is not None:  # runs are still active
        _instrument(lib, generation)


def _held_by_instrumentor(lib: Library) -> bool:
    """True when the library's OTel instrumentor is on (by hand, or opentelemetry-instrument).

    Its class cannot have been instrumented if its module was never imported: checking costs
    no import.
    """
    module_name, _, class_name = lib.instrumentor.partition(":")
    module = sys.modules.get(module_name)
    cls = getattr(module, class_name, None) if module is not None else None
    return cls is not None and bool(cls().is_instrumented_by_opentelemetry)  # a singleton


def _instrument(lib: Library, generation: int) -> None:
    # Not under _lock: importing an adapter must not wait on another thread's import.
    try:
        if _held_by_instrumentor(lib):
            return  # the user's: theirs to turn off
        patch = _load(lib.adapter)()
        if patch.installed:
            return
        patch.install()
    except Exception as exc:  # noqa: BLE001 - one library failing must not stop the run
        warn_once(
            f"instrument:{lib.library}", f"could not instrument {lib.library}: {exc!r}; its calls are not recorded"
        )
        return
    with _lock:
        current = generation == _generation[0]
        if current:
            _ours.append((lib, patch))
    if not current:  # the last run ended meanwhile (a hook fired in another thread)
        _uninstrument(lib, patch)


def _uninstrument(lib: Library, patch: Any) -> None:
    try:
        if not _held_by_instrumentor(lib):  # the user turned it on meanwhile: leave it on
            patch.uninstall()
    except Exception as exc:  # noqa: BLE001 - teardown must not raise into the agent
        warn_once(f"uninstrument:{lib.library}", f"could not uninstrument {lib.library}: {exc!r}")


def uninstall() -> None:
    """Undo :func:`install` (called when the last run ends)."""
    _unpatch_executor()
    with _lock:
        _generation[0] += 1
        _deferred.clear()  # a hook firing later finds nothing to do
        ours = _ours[::-1]
        _ours.clear()
    for lib, patch in ours:
        _uninstrument(lib, patch)


def _submit(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if current_scope() is None or not args:
        return wrapped(*args, **kwargs)
    ctx = contextvars.copy_context()
    fn, rest = args[0], args[1:]
    return wrapped(ctx.run, fn, *rest, **kwargs)


def _start(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # A thread started inside a run runs in a copy of the starter's context: its calls belong
    # to the run and step that started it. A pool's worker thread is left alone (it outlives
    # the task that happened to start it; submit() carries each task's context instead), and so
    # is an exporter's thread.
    if current_scope() is not None and not _is_pool_worker(instance):
        ctx = contextvars.copy_context()
        target_run = instance.run
        instance.run = functools.partial(ctx.run, target_run)
    return wrapped(*args, **kwargs)


def _is_pool_worker(thread: Any) -> bool:
    """A pool's worker, or a thread of the export machinery: neither belongs to the run that started it."""
    target = getattr(thread, "_target", None)
    module = getattr(target, "__module__", "") or ""
    return (
        module.startswith("concurrent.futures")
        or bool(getattr(thread, "_agenttrace_exporter", False))
        or export_thread(thread)
    )


def _patch_executor() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from agenttrace._capture.patch import wrap_innermost

    wrap_innermost(ThreadPoolExecutor, "submit", _submit)
    wrap_innermost(threading.Thread, "start", _start)


def _unpatch_executor() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from agenttrace._capture.patch import unwrap_ours

    unwrap_ours(threading.Thread, "start", _start)
    unwrap_ours(ThreadPoolExecutor, "submit", _submit)


def configure(settings: Settings) -> None:
    """Apply the settings capture reads at every call: the extra headers to redact."""
    from agenttrace._capture.payload import set_extra_redacted_headers

    set_extra_redacted_headers(settings.redact_headers)
