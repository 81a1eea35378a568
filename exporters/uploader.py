"""The background uploader: one detached process that sends an exited process's spool folders.

At exit (``exit_upload="background"``, see :mod:`agenttrace.exporters.exit`) a process calls
:func:`start`, which runs this very file as a script::

    python -I .../agenttrace/exporters/uploader.py '{"parent": ..., "path": [...], "folders": [...], ...}'

* ``-I`` keeps ``PYTHONPATH``'s ``sitecustomize`` (``agenttrace-instrument``,
  ``opentelemetry-instrument``) out, so the uploader is not itself recorded. It also leaves
  ``PYTHONPATH`` and the script's folder off ``sys.path``, so the parent's ``sys.path`` is put
  back in front (:func:`main`) and the uploader imports the same agenttrace and libraries.
* A file, not ``-m agenttrace.exporters.uploader``: ``-m`` would look the module up before that
  path is back (an agenttrace found through ``PYTHONPATH`` would not be found), and would import
  the whole ``agenttrace`` package before the first line of :func:`main`. Its imports are the
  uploader's main cost, so :func:`main` first lowers its CPU priority (Windows: a creation flag)
  and, on POSIX, waits until the agent is gone (it is then re-parented), for up to 2 s: started
  at exit, it would otherwise compete with the agent's own interpreter teardown and slow the
  agent's exit. Run as a script, this module's top level therefore imports the standard library
  only.
* The variables it needs (the API key above all) come through its environment, never its
  command line; a process that is the uploader never starts another.

:func:`sender` is what the uploader and ``agenttrace upload`` send a spool folder with.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agenttrace.exporters.spool import Delivery

__all__ = ["UPLOADER_ENV", "command", "main", "run_detached", "sender", "start"]

# Set in the environment of the background uploader: a process that is the uploader never starts another.
UPLOADER_ENV = "_AGENTTRACE_UPLOADER"
_PYTHONS = ("python", "pypy", "graalpy")


# -- in the exiting process -------------------------------------------------------------------------


def command() -> list[str] | None:
    """The uploader's command line without its argument; None where it cannot be started."""
    if os.environ.get(UPLOADER_ENV) or getattr(sys, "frozen", False):
        return None
    executable = sys.executable
    if not executable or not os.path.basename(executable).lower().startswith(_PYTHONS):
        return None  # an embedding application (uwsgi, ...): its binary is not a Python to run a script with
    script = os.path.abspath(__file__)
    if not os.path.isfile(script):
        return None  # imported from a zip archive: there is no file to run
    return [executable, "-I", script]


def start(folders: list[dict[str, Any]], env: dict[str, str], timeout: float) -> int:
    """Start the uploader for the spool ``folders`` with the variables ``env``; its pid.

    ``timeout`` is the export timeout; the uploader starts no new file after three of them.
    Raises when the process cannot be started.
    """
    argv = command()
    if argv is None:
        raise RuntimeError("no Python interpreter to run it with")
    payload = {
        "parent": os.getpid(),
        "path": [p for p in sys.path if isinstance(p, str)],
        "folders": folders,
        "lifetime": max(3 * timeout, 1.0),  # no new file is started after it
        "timeout": timeout,
    }
    return _spawn_detached([*argv, json.dumps(payload)], {**env, UPLOADER_ENV: "1"})


def _spawn_detached(argv: list[str], env: dict[str, str]) -> int:
    """Start ``argv`` detached from this process (its own session, no terminal, no inherited files)."""
    import subprocess
    import warnings

    devnull = subprocess.DEVNULL
    if sys.platform == "win32":
        flags = (
            subprocess.DETACHED_PROCESS | subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.BELOW_NORMAL_PRIORITY_CLASS
        )
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and code
            argv, stdin=devnull, stdout=devnull, stderr=devnull, close_fds=True, env=env, creationflags=flags
        )
    else:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and code
            argv, stdin=devnull, stdout=devnull, stderr=devnull, close_fds=True, env=env, start_new_session=True
        )
    pid = process.pid
    with warnings.catch_warnings():
        # Never waited for: it outlives this process. Popen's "still running" ResourceWarning
        # would only be noise on stderr (or an error under -W error).
        warnings.simplefilter("ignore", ResourceWarning)
        del process
    return pid


# -- in the uploader ------------------------------------------------------------------------------


def main(argv: Sequence[str]) -> None:
    """The uploader's entry: ``argv[0]`` is the JSON :func:`start` wrote. Yield to the agent, then send."""
    args = json.loads(argv[0])
    if hasattr(os, "nice"):
        os.nice(10)
    until = time.monotonic() + 2.0
    while os.name == "posix" and os.getppid() == args["parent"] and time.monotonic() < until:
        time.sleep(0.01)
    sys.path[:0] = [p for p in args["path"] if p not in sys.path]
    run_detached(args)


def run_detached(args: Mapping[str, Any]) -> None:
    """Send the spool folders ``args["folders"]`` names, then return.

    Started detached at another process's exit, with no terminal: it says nothing. Each file is
    claimed before it is sent, as by ``agenttrace upload``, so it can run next to agents and
    uploads. It starts no new file after ``args["lifetime"]`` seconds, stops at a folder's first
    failure, and is ended one export timeout (plus a margin) after its lifetime whatever it is
    doing: what it did not send stays in the spool for the next run or ``agenttrace upload`` (a
    claim it held then is released by the next reader, its process being gone).
    """
    import contextlib
    import threading
    from pathlib import Path

    from agenttrace.exporters.spool import Spool, drain

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
            send, _ = sender(spool.target)
            drain(spool, send, stop=lambda: time.monotonic() >= deadline)


def sender(target: str) -> tuple[Callable[[bytes], Delivery], str]:
    """How to send the files of the spool folder ``target``, and where they go (for messages).

    The exporter is made from the current environment: ``AGENTTRACE_*`` for ``agenttrace`` (the
    backend), ``OTEL_EXPORTER_OTLP_*`` for ``otlp`` and ``otlp_grpc``. Raises
    :class:`agenttrace.ConfigurationError` when the backend has no API key.
    """
    # Imported here: the OTLP exporter is heavy and only needed when there is something to send.
    from agenttrace.exporters.backend import AgentTraceSpanExporter, SpoolingOTLPSpanExporter

    if target == "otlp_grpc":
        from agenttrace.exporters.backend import grpc_deliverer, grpc_destination
        from agenttrace.exporters.grpc import grpc_span_exporter

        grpc_exporter = grpc_span_exporter()  # endpoint, headers, TLS from OTEL_EXPORTER_OTLP_* as usual
        return grpc_deliverer(grpc_exporter), grpc_destination(grpc_exporter)
    exporter = AgentTraceSpanExporter(_managed=True) if target == "agenttrace" else SpoolingOTLPSpanExporter()
    return exporter.deliver_serialized, exporter.destination


if __name__ == "__main__":
    main(sys.argv[1:])
