"""The ``agenttrace`` command: one subcommand per module, registered in :data:`COMMANDS`."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

__all__ = ["main"]

# name -> (module, help). Each module defines ``add_arguments(parser)`` and ``run(args) -> int``;
# modules are imported only when their command runs, so `agenttrace --help` stays instant.
COMMANDS: dict[str, tuple[str, str]] = {
    "show": ("agenttrace._cli.show", "print a trace file as a tree of runs, steps and calls"),
    "upload": ("agenttrace._cli.upload", "send the traces waiting in the spool (undelivered uploads)"),
    "replay": ("agenttrace._cli.replay", "run any command in replay: agenttrace replay FILE -- python agent.py"),
    "reseal": ("agenttrace._cli.reseal", "recompute body digests of a deliberately edited trace file"),
    "demo": ("agenttrace._cli.demo", "record a bundled agent against a local fake LLM, then replay it offline"),
    "download": ("agenttrace._cli.download", "fetch a trace from the backend as a file agenttrace replay runs"),
    "server": ("agenttrace._cli.server", "run the self-hosted backend: OTLP ingest, trace store, API and web UI"),
    "diff": ("agenttrace._cli.diff", "compare two traces (a recording and its replay): runs, steps and calls"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``agenttrace`` console script."""
    parser = argparse.ArgumentParser(prog="agenttrace", description="Record and replay AI agent runs.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(_module=module_name)
        importlib.import_module(module_name).add_arguments(command)
    args = parser.parse_args(argv)
    module = importlib.import_module(args._module)
    code: int = module.run(args)
    return code
