"""``agenttrace upload``: send the traces waiting in the spool to where they were going.

``agenttrace`` files go to the backend of the current settings (``AGENTTRACE_API_KEY``,
``AGENTTRACE_API_URL``); ``otlp`` files to the OTLP/HTTP endpoint of the current
``OTEL_EXPORTER_OTLP_*`` variables. Each file is claimed before it is sent, so an upload running
next to agents never sends a file twice. Exit status 0 when the spool is empty afterwards.

The background uploader a process starts at exit sends the same way, silently:
:mod:`agenttrace.exporters.uploader`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from agenttrace._core.config import resolve_settings
from agenttrace._core.errors import ConfigurationError
from agenttrace.exporters.spool import Spool, drain
from agenttrace.exporters.uploader import sender

__all__ = ["add_arguments", "run"]

_TARGETS = ("agenttrace", "otlp", "otlp_grpc")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``agenttrace upload``."""
    parser.add_argument(
        "--spool-dir", type=Path, default=None, help="spool folder (default: AGENTTRACE_SPOOL_DIR, ./.agenttrace/spool)"
    )
    parser.add_argument(
        "--target", choices=(*_TARGETS, "all"), default="all", help="which destination's files to send (default: all)"
    )


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
            send, destination = sender(target)
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
