"""``agenttrace upload``: send the traces waiting in the spool to where they were going.

``agenttrace`` files go to the backend of the current settings (``AGENTTRACE_API_KEY``,
``AGENTTRACE_API_URL``); ``otlp`` files to the OTLP/HTTP endpoint of the current
``OTEL_EXPORTER_OTLP_*`` variables. Each file is claimed before it is sent, so an upload running
next to agents never sends a file twice. Exit status 0 when the spool is empty afterwards.

:func:`run_detached` is the background uploader a process starts at exit
(``exit_upload="background"``, see :mod:`agenttrace.exporters.lanes`): the same sending, silent, for
a bounded time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from agenttrace._core.config import resolve_settings
from agenttrace._core.errors import ConfigurationError
from agenttrace.exporters.spool import Delivery, Spool, drain

__all__ = ["add_arguments", "run", "run_detached"]

_TARGETS = ("agenttrace", "otlp", "otlp_grpc")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``agenttrace upload``."""
    parser.add_argument(
        "--spool-dir", type=Path, default=None, help="spool folder (default: AGENTTRACE_SPOOL_DIR, ./.agenttrace/spool)"
    )
    parser.add_argument(
        "--target", choices=(*_TARGETS, "all"), default="all", help="which destination's files to send (default: all)"
    )


def _sender(target: str) -> tuple[Callable[[bytes], Delivery], str]:
    # Imported here: the OTLP exporter is heavy and only needed when there is something to send.
    from agenttrace.exporters.backend import AgentTraceSpanExporter, SpoolingOTLPSpanExporter

    if target == "otlp_grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        from agenttrace.exporters.backend import grpc_deliverer

        grpc_exporter = GrpcExporter()  # endpoint, headers, TLS from OTEL_EXPORTER_OTLP_* as usual
        return grpc_deliverer(grpc_exporter), f"the OTLP/gRPC endpoint {grpc_exporter._endpoint}"
    exporter = AgentTraceSpanExporter(_managed=True) if target == "agenttrace" else SpoolingOTLPSpanExporter()
    return exporter.deliver_serialized, exporter.destination


def run(args: argparse.Namespace) -> int:
    """Send every spooled file; print what was sent and what is left; 0 when nothing is left."""
    settings = resolve_settings({} if args.spool_dir is None else {"spool_dir": str(args.spool_dir)})
    targets = _TARGETS if args.target == "all" else (args.target,)
    left = 0
    for target in targets:
        spool = Spool(settings.spool_dir, target, settings.spool_max_bytes)
        files = list(spool.files())
        if not files:
            continue
        spans = sum(count for _, count in files)
        try:
            send, destination = _sender(target)
        except ConfigurationError as exc:
            print(f"{len(files)} files ({spans} spans) wait in {spool.folder}, not sent: {exc}")
            left += len(files)
            continue
        outcome = drain(spool, send)
        remaining = list(spool.files())
        left += len(remaining)
        still = f"; {len(remaining)} files left" if remaining else ""
        print(f"sent {outcome.delivered} spans to {destination}{still}")
        if outcome.rejected:
            print(f"{destination} refused {outcome.rejected} spans for good ({outcome.reason}); they were dropped")
        if remaining and outcome.reason:
            print(f"stopped: {outcome.reason}{' (check AGENTTRACE_API_KEY)' if outcome.auth_failed else ''}")
    if left == 0:
        print(f"the spool {settings.spool_dir} is empty")
    return 0 if left == 0 else 1


def run_detached(args: Mapping[str, Any]) -> None:
    """The background uploader: send the spool folders ``args["folders"]`` names, then exit.

    Started detached at another process's exit, with no terminal: it says nothing. Each file is
    claimed before it is sent, as by ``agenttrace upload``, so it can run next to agents and
    uploads. It starts no new file after ``args["lifetime"]`` seconds, stops at a folder's first
    failure, and is ended one export timeout (plus a margin) after its lifetime whatever it is
    doing: what it did not send stays in the spool for the next run or ``agenttrace upload`` (a
    claim it held then is released by the next reader, its process being gone).
    """
    lifetime = float(args.get("lifetime", 30.0))
    timeout = float(args.get("timeout", 10.0))
    watchdog = threading.Timer(lifetime + timeout + 5.0, os._exit, (0,))
    watchdog.daemon = True
    watchdog.start()
    deadline = time.monotonic() + lifetime
    for folder in args.get("folders", ()):
        with contextlib.suppress(Exception):  # a broken folder or sender: leave it to the next run
            spool = Spool(Path(folder["spool_dir"]), str(folder["target"]), int(folder["spool_max_bytes"]))
            if not spool.pending():
                continue
            send, _ = _sender(spool.target)
            drain(spool, send, stop=lambda: time.monotonic() >= deadline)
