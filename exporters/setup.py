"""Export set-up: on every ``init()``, where the process's traces go; on the first, the process hooks.

:func:`configure` decides the export targets from the settings:

* the AgentTrace backend, when an API key is set and ``backend`` is on (record mode);
* the exporters named by ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``, any entry point),
  configured by the standard ``OTEL_EXPORTER_OTLP_*`` variables, but only when AgentTrace
  created the tracer provider: a provider the user built is theirs, with their exporters, and
  AgentTrace only adds its backend next to them.

Each target gets an :class:`~agenttrace.exporters.lanes.ExportLane`, fed by the one
:class:`~agenttrace.exporters.hub.ExportHub` added to the provider. The first call also installs
the process hooks: the lanes' shutdown at exit (:mod:`agenttrace.exporters.exit`), their
fork handlers, and the SIGTERM handler that writes what is pending first
(:mod:`agenttrace.exporters.termination`).

Nothing heavy is imported here: the OTLP exporter is loaded only when a target needs it.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agenttrace.exporters.deferred import BACKEND_TARGET, DeferredExporter, backend_destination, backend_uploader_env
from agenttrace.exporters.exit import use_settings
from agenttrace.exporters.hub import ExportHub
from agenttrace.exporters.lanes import (
    ExportLane,
    after_fork_in_child,
    after_fork_in_parent,
    before_fork,
    every_lane,
    lane_for,
    shutdown_all,
)
from opentelemetry.sdk.trace.export import SpanExporter

from agenttrace._core.errors import warn_once

if TYPE_CHECKING:
    from agenttrace._core.config import Settings

__all__ = ["configure", "exporter_names", "exporting"]

_hub = ExportHub()
_hub_provider: Any = None
_hooks_installed = False


def configure(settings: Settings, provider: Any, *, owns_provider: bool) -> None:
    """Set up export for ``settings`` on ``provider``, the tracer provider ``init()`` joined; never raises.

    ``owns_provider``: AgentTrace created that provider, so ``OTEL_TRACES_EXPORTER`` is its to
    apply. Called on every ``init()``; the first call also installs the process hooks (the lanes'
    shutdown at exit, their fork handlers). A failure is said once, as a warning, and the agent
    runs on without export.
    """
    global _hooks_installed  # noqa: PLW0603 - installed once per process
    if not _hooks_installed:
        _hooks_installed = True
        _install_process_hooks()
    from agenttrace.exporters import termination

    termination.install()  # from the main thread only: a later init() may be the first there
    try:
        _configure(settings, provider, owns_provider)
    except Exception as exc:  # noqa: BLE001 - export set-up must never stop the agent
        warn_once("export-setup", f"could not set up trace export: {exc}; the agent runs unaffected")


def exporting() -> bool:
    """True while an export lane is on (the backend, an OTLP exporter): spans have a receiver."""
    return bool(_hub.lanes)


def _configure(settings: Settings, provider: Any, owns_provider: bool) -> None:
    global _hub_provider  # noqa: PLW0603 - the process's one export setup
    use_settings(settings)
    if provider is None or not hasattr(provider, "add_span_processor"):
        return
    wanted: dict[tuple[Any, ...], Callable[[], ExportLane]] = {}
    if settings.backend and settings.mode == "record":
        _want_backend(settings, wanted)
    if owns_provider:
        _want_otel_env(wanted)
    if not wanted and not _hub.lanes:
        return  # nothing to export (local files only): no thread, no import
    if _hub_provider is not provider:
        provider.add_span_processor(_hub)
        _hub_provider = provider
    _hub.set_lanes(wanted)


def _want_backend(settings: Settings, wanted: dict[tuple[Any, ...], Callable[[], ExportLane]]) -> None:
    if settings.api_key is None:
        warn_once(
            "backend-no-key",
            "the backend is on (AGENTTRACE_BACKEND) but no API key is set (AGENTTRACE_API_KEY): nothing is sent",
        )
        return
    if "agenttrace.exporters.backend" in sys.modules:
        from agenttrace.exporters.backend import standalone_backend_exporters

        if standalone_backend_exporters():
            return  # OTEL_TRACES_EXPORTER=agenttrace or the user's code already sends to the backend
    key = (
        "agenttrace",
        settings.api_url,
        settings.api_key,
        settings.export_timeout,
        str(settings.spool_dir),
        settings.spool_max_bytes,
    )

    api_key = settings.api_key

    def make() -> ExportLane:
        from agenttrace.exporters.spool import Spool

        spool = Spool(settings.spool_dir, BACKEND_TARGET, settings.spool_max_bytes)

        def build() -> SpanExporter:
            from agenttrace.exporters.backend import AgentTraceSpanExporter

            return AgentTraceSpanExporter(
                api_key, settings.api_url, settings.export_timeout, spool=spool, _managed=True
            )

        return ExportLane(
            DeferredExporter(
                build,
                target=BACKEND_TARGET,
                spool=spool,
                destination=backend_destination(settings.api_url),
                uploader_env=backend_uploader_env(api_key, settings.api_url, settings.export_timeout),
                probe_endpoint=f"{settings.api_url}/v1/traces",
            )
        )

    wanted[key] = make


def _want_otel_env(wanted: dict[tuple[Any, ...], Callable[[], ExportLane]]) -> None:
    names = exporter_names()
    if not names:
        return
    env_key = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("OTEL_EXPORTER_OTLP")))
    for name in dict.fromkeys(names):
        if name == "agenttrace":
            continue  # the backend lane, already decided by the settings

        def make(name: str = name) -> ExportLane:
            if name == "otlp_proto_http":
                from agenttrace.exporters.backend import SpoolingOTLPSpanExporter

                return ExportLane(SpoolingOTLPSpanExporter())
            if name == "otlp_proto_grpc":
                from agenttrace.exporters.grpc import grpc_span_exporter

                return lane_for(grpc_span_exporter())  # ModuleNotFoundError with the install hint
            from importlib.metadata import entry_points

            found = list(entry_points(group="opentelemetry_traces_exporter", name=name))
            if not found:
                raise RuntimeError(f"OTEL_TRACES_EXPORTER names {name!r}, which no installed package provides")
            return lane_for(found[0].load()())

        wanted[("otel", name, env_key)] = make


def exporter_names() -> list[str]:
    """The trace exporters ``OTEL_TRACES_EXPORTER`` names, ``otlp`` resolved by the OTLP protocol variables.

    As in OpenTelemetry Python: ``otlp`` is ``otlp_proto_grpc`` unless
    ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` (or ``OTEL_EXPORTER_OTLP_PROTOCOL``) is ``http/protobuf``;
    ``none`` or unset is no exporter. Raises RuntimeError for another protocol.
    """
    text = os.environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if not text or text.lower() == "none":
        return []
    names = []
    for raw in text.split(","):
        name = raw.strip()
        if name == "otlp":
            protocol = (
                os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "").strip()
                or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip()
                or "grpc"
            )
            if protocol not in _OTLP_PROTOCOLS:
                raise RuntimeError(
                    f"OTEL_EXPORTER_OTLP_PROTOCOL is {protocol!r}; expected one of {', '.join(_OTLP_PROTOCOLS)}"
                )
            name = _OTLP_PROTOCOLS[protocol]
        if name:
            names.append(name)
    return names


_OTLP_PROTOCOLS = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}


# -- process hooks -------------------------------------------------------------------------------


def _install_process_hooks() -> None:
    # atexit runs last-registered first: this runs before the shutdown of a provider created
    # earlier (and after a zero-code run registered later has ended), within the exit bound either way.
    atexit.register(shutdown_all)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(
            before=before_fork, after_in_parent=after_fork_in_parent, after_in_child=_after_fork_in_child
        )


def _after_fork_in_child() -> None:
    after_fork_in_child()
    # multiprocessing's fork children end with os._exit(): atexit never runs there, but
    # multiprocessing's own finalizers do. Register ours through its after-fork hook (its
    # finalizer registry is cleared in the child before the hooks run).
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None and every_lane():
        mp_util.register_after_fork(_hub, _install_mp_finalizer)


def _install_mp_finalizer(_: object) -> None:
    import multiprocessing.util

    multiprocessing.util.Finalize(None, shutdown_all, exitpriority=100)
