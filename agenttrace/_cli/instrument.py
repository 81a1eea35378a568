"""Zero-code activation: ``agenttrace-instrument`` and the ``opentelemetry-instrument`` entry points.

``agenttrace-instrument python agent.py [args]`` works like ``opentelemetry-instrument``: it puts
a folder holding a ``sitecustomize`` module first on ``PYTHONPATH`` and executes the command, so
every Python process it starts (the script, and Python subprocesses it runs) calls
:func:`bootstrap` before any user code: ``agenttrace.init()`` from the environment, then one run
per process, named after the script, ended (with the uncaught exception, if any) and exported
at exit. With ``AGENTTRACE_MODE=replay`` the same run replays.

Plain ``opentelemetry-instrument python agent.py`` activates AgentTrace through the
``opentelemetry_distro`` and ``opentelemetry_configurator`` entry points named ``agenttrace``:
the configurator sets up the SDK from the ``OTEL_*`` variables as OpenTelemetry's own does,
with AgentTrace's non-blocking, spooling export lanes in place of ``BatchSpanProcessor``, then
starts the same process run.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]  # untyped module
from opentelemetry.sdk._configuration import _OTelSDKConfigurator

from agenttrace._replay.children import (
    CHANNEL_VAR,
    CHILD_RUN_SUFFIXES,
    PROCESS_RUN_VAR,
    boot_pythonpath,
    parent_span,
)
from agenttrace.exporters.exit import is_spawned_worker

__all__ = [
    "AgentTraceConfigurator",
    "AgentTraceDistro",
    "bootstrap",
    "main",
    "start_process_run",
]

_lock = threading.Lock()
_started_in: int | None = None  # pid of the process whose run is open


def _run_name() -> str | None:
    """The process run's name from the command line; None when this process should not have one."""
    argv = list(getattr(sys, "orig_argv", sys.argv))
    parent = os.environ.get(PROCESS_RUN_VAR)
    if is_spawned_worker():
        return f"{parent}{CHILD_RUN_SUFFIXES[0]}" if parent else None
    args = argv[1:]
    while args and args[0].startswith("-") and args[0] not in ("-m", "-c"):
        args = args[1:]  # interpreter options such as -u, -X dev (their values are rare here)
    if not args:
        return None  # interactive
    if args[0] == "-m":
        return args[1] if len(args) > 1 else None
    if args[0] == "-c":
        if os.environ.get(CHANNEL_VAR) or parent_span() is not None:
            # A child of a replaying or recording process (a forkserver, a one-liner): it
            # replays or records too, so it gets a run (the forkserver's is inherited by every
            # worker it forks).
            return f"{parent or 'replay'}{CHILD_RUN_SUFFIXES[1]}"
        return None  # multiprocessing's resource tracker, one-liners: no run of their own
    return Path(args[0]).name


def start_process_run(name: str | None = None) -> None:
    """``init()`` from the environment and open one run for this process, ended at exit."""
    global _started_in  # noqa: PLW0603 - one process run per process
    import agenttrace
    from agenttrace._core.run import RunContext

    with _lock:
        if _started_in == os.getpid():
            return
        _started_in = os.getpid()
    name = name or _run_name()
    agenttrace.init()
    if name is None:
        return
    os.environ.setdefault(PROCESS_RUN_VAR, name)
    script = _script_path()
    # A child of a recording run joins it: its run is that run's child, in the same trace.
    from agenttrace._core.runtime import runtime

    joins = parent_span() if runtime.current_settings().mode == "record" else None
    run = RunContext(_entry_function(name, script), name, parent=joins)
    run.__enter__()
    failure: list[BaseException] = []
    previous_hook = sys.excepthook

    def excepthook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        failure.append(error)
        previous_hook(kind, error, tb)

    sys.excepthook = excepthook
    pid = os.getpid()

    def finish() -> None:
        if os.getpid() != pid:
            return  # a forked child that exits normally must not end its parent's run
        run.finish(error=failure[0] if failure else None)

    # Registered after init(): atexit runs it before the export lanes' own shutdown.
    atexit.register(finish)


def _script_path() -> str | None:
    argv0 = sys.argv[0] if sys.argv else ""
    return argv0 if argv0 and os.path.isfile(argv0) else None


def _entry_function(name: str, script: str | None) -> Any:
    # The run's metadata (source file and text) comes from the function's code object: one
    # compiled "in" the script gives the script's source without importing or running it twice.
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile("def main():\n    pass\n", script or "<agenttrace-instrument>", "exec"), namespace)  # noqa: S102
    function = namespace["main"]
    function.__qualname__ = name
    return function


def bootstrap() -> None:
    """Called from the ``sitecustomize`` of ``agenttrace-instrument``; never raises.

    A replay that cannot start (a missing or unreadable recording, a bad setting) stops the
    process here, before the agent's code runs, with exit code 2 and the error ``agenttrace
    replay`` gives: running the agent live instead would reach the network the replay was meant
    to keep it from. Any other failure turns AgentTrace off for the process with one warning.
    """
    try:
        start_process_run()
    except Exception as exc:  # noqa: BLE001 - a broken setting must not stop the user's program
        if _replay_requested():
            sys.stderr.write(
                f"agenttrace replay: {exc}\n"
                "agenttrace: the replay cannot start; the process stops before the agent runs\n"
            )
            sys.stderr.flush()
            os._exit(2)  # from sitecustomize or a configurator, SystemExit would be caught and ignored
        from agenttrace._core.errors import warn_once

        warn_once("zero-code", f"AgentTrace is off for this process: {exc}")


def _replay_requested() -> bool:
    """True when the environment asks for a replay (``AGENTTRACE_MODE=replay``, however written)."""
    from agenttrace._core.runtime import replay_requested

    return replay_requested()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``agenttrace-instrument COMMAND [ARGS...]``: run COMMAND with AgentTrace on."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(
            "usage: agenttrace-instrument COMMAND [ARGS...]\n\n"
            "Run COMMAND (for example `python agent.py`) with AgentTrace recording every Python\n"
            "process it starts: one run per process, named after the script. Settings come from\n"
            "the AGENTTRACE_* and OTEL_* variables; AGENTTRACE_MODE=replay replays.",
            file=sys.stderr if not args else sys.stdout,
        )
        return 0 if args else 2
    executable = shutil.which(args[0])
    if executable is None:
        print(f"agenttrace-instrument: command not found: {args[0]}", file=sys.stderr)
        return 127
    os.environ["PYTHONPATH"] = boot_pythonpath(os.environ.get("PYTHONPATH", ""))
    os.execl(executable, executable, *args[1:])  # noqa: S606 - running the user's command is the point
    return 0  # not reached


class AgentTraceDistro(BaseDistro):  # type: ignore[misc]  # BaseDistro is untyped
    """The ``opentelemetry_distro`` entry point: no defaults forced on the ``OTEL_*`` variables.

    Unlike ``opentelemetry-distro`` it does not default ``OTEL_TRACES_EXPORTER`` to ``otlp``:
    AgentTrace's own targets (local files, the backend) are on by its settings, and OTLP is added
    when the user names it. Its one default is ``OTEL_PYTHON_CONFIGURATOR=agenttrace``.
    """

    def _configure(self, **kwargs: Any) -> None:
        """Choosing this distro is consent to capture, and selects AgentTrace's configurator unless one is named."""
        from agenttrace._core.runtime import runtime

        runtime.chosen = True
        # opentelemetry-instrument runs the distro first, then the configurator OTEL_PYTHON_CONFIGURATOR
        # names (else the first installed): with several installed, this distro brings its own.
        os.environ.setdefault("OTEL_PYTHON_CONFIGURATOR", "agenttrace")

    def load_instrumentor(self, entry_point: Any, **kwargs: Any) -> None:
        """Instrument as OpenTelemetry does; one already on is left as it is (instrumenting it again only warns).

        The configurator's process run has usually patched the library already, through the
        library's adapter: the instrumentor then only takes the patch over (it is idempotent),
        and the process run's end leaves it on.
        """
        instrumentor = entry_point.load()()
        if instrumentor.is_instrumented_by_opentelemetry:
            return
        instrumentor.instrument(**kwargs)


class AgentTraceConfigurator(_OTelSDKConfigurator):
    """The ``opentelemetry_configurator`` entry point: the OTel SDK set-up, then AgentTrace's run.

    ``opentelemetry-instrument`` runs the first configurator it finds when
    ``OTEL_PYTHON_CONFIGURATOR`` names none, so this one may run in a process that chose another
    distro (``OTEL_PYTHON_DISTRO=distro``). It then sets up the SDK exactly as OpenTelemetry's own
    configurator does and nothing of AgentTrace's: AgentTrace acts only when its distro was
    chosen (the distro runs first), ``OTEL_PYTHON_CONFIGURATOR=agenttrace`` names it, or
    ``AGENTTRACE_MODE=replay`` asks for a replay.
    """

    def _configure(self, **kwargs: Any) -> None:
        """Configure the SDK from ``OTEL_*`` with AgentTrace's export lanes, then start the process run."""
        from agenttrace._core.runtime import runtime

        if not (runtime.chosen or os.environ.get("OTEL_PYTHON_CONFIGURATOR", "").strip() == "agenttrace"):
            # Another distro's process: not ours to record (runtime.chosen covers AGENTTRACE_MODE=replay).
            super()._configure(**kwargs)  # type: ignore[no-untyped-call]  # OpenTelemetry's set-up, untouched
            return
        from agenttrace.exporters.lanes import lane_for

        # export_span_processor: the SDK's hook for a distro's span processor, since 1.40.0
        # (pyproject's lower bound for that reason).
        kwargs.setdefault("export_span_processor", lane_for)
        super()._configure(**kwargs)  # type: ignore[no-untyped-call]  # the SDK's method is untyped
        bootstrap()
