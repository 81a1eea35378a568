"""SIGTERM (``docker stop``, Kubernetes, a supervisor): what the process recorded reaches the disk first.

The default action of SIGTERM ends the process at once, without ``atexit`` hooks: the spans of
the run in progress would be lost with it. :func:`install` (called by the first ``init()``, from
the main thread) puts a handler in front of the one in place when that is the default action or
a Python function; a handler installed in C, or SIGTERM ignored, is left alone; a multiprocessing
worker (forked or spawned) keeps the default action, see :func:`_after_fork_in_child`. The handler:

1. writes the spans that ended so far to the trace files and, when the process is about to die
   (the default action), moves each open run's file into sight as ``<trace_id>.incomplete.jsonl``
   and hands the export lanes' pending spans to the spool, as exit would;
2. then does what the signal did without AgentTrace: calls the agent's handler, or restores the
   default action and sends the signal again, so the process dies of SIGTERM as before.

Step 1 runs on a thread of its own and is waited for at most :data:`_BOUND` seconds plus the exit
bound: the thread the signal interrupted may hold a lock that work needs, and the handler must
never keep the process from ending.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import Any

from agenttrace.exporters.exit import exit_timeout, is_spawned_worker
from agenttrace.exporters.processor import secure_all

__all__ = ["install"]

# Seconds the trace files get; the export lanes get the exit bound on top.
_BOUND = 1.0

_previous: Any = None
_installed = False


def install() -> None:
    """Put AgentTrace's SIGTERM handler in front of the current one, once; never raises.

    Only from the main thread (Python's rule for signal handlers) and only over the default
    action or a Python callable.
    """
    global _previous, _installed  # noqa: PLW0603 - one handler per process
    if _installed or not hasattr(signal, "SIGTERM"):
        return
    if threading.current_thread() is not threading.main_thread():
        return  # a later init() from the main thread installs it
    if is_spawned_worker():
        _installed = True  # a spawned pool worker: the default action, as a forked one (below)
        return
    try:
        current = signal.getsignal(signal.SIGTERM)
        if current is not signal.SIG_DFL and not callable(current):
            _installed = True  # ignored, or a handler installed in C: not ours to wrap
            return
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not the main interpreter, or no signals here
        return
    _previous = current
    _installed = True


def _after_fork_in_child() -> None:
    # A forked worker writes its spans as each ends (see agenttrace.exporters.processor): nothing
    # waits in memory for the handler to save. And a Python-level handler can miss the SIGTERM
    # that multiprocessing's Pool.terminate() sends: one arriving just before the worker blocks
    # on the task queue's lock is only handled when that wait ends, which it never does. So the
    # worker gets the action it had without AgentTrace back. A spawned worker never gets the
    # handler (install) and writes its spans as each ends too (the processor's open_trace).
    global _installed  # noqa: PLW0603 - the worker's own state
    if not _installed or _previous is not signal.SIG_DFL:
        return
    try:
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            _installed = False
    except (ValueError, OSError):  # not the main thread here: the handler stays
        pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _on_sigterm(signum: int, frame: FrameType | None) -> Any:
    previous = _previous
    # A process that is PID 1 (a container's command with no init) does not die of a signal left
    # to its default action: the kernel ignores it. Then nothing ends; only what is pending is written.
    dying = not callable(previous) and os.getpid() != 1
    worker = threading.Thread(target=_secure, args=(dying,), name="agenttrace-sigterm", daemon=True)
    try:
        worker.start()
        worker.join(_BOUND + (exit_timeout() if dying else 0.0))
    except Exception:  # noqa: BLE001, S110 - nothing may change how the signal ends the process
        pass
    if callable(previous):
        return previous(signum, frame)
    if not dying:
        return None  # PID 1: the signal did nothing without AgentTrace either
    # The default action: die of SIGTERM, exactly as without AgentTrace.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
    return None


def _secure(dying: bool) -> None:
    try:
        secure_all(_BOUND, dying=dying)
        if dying:
            from agenttrace.exporters.lanes import shutdown_all

            shutdown_all()
    except Exception:  # noqa: BLE001, S110 - the process is ending: nothing to report to
        pass
