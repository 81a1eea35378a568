"""The span processor AgentTrace adds to the tracer provider: routes a run's spans to its file."""

from __future__ import annotations

import os
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from agenttrace.exporters.exit import is_spawned_worker
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from agenttrace._core.errors import say, warn_once

if TYPE_CHECKING:
    from agenttrace.exporters.local import SpanWriter, TraceFile

__all__ = ["RunFileProcessor", "secure_all"]

_PROCESSORS: weakref.WeakSet[RunFileProcessor] = weakref.WeakSet()


def secure_all(timeout: float, *, dying: bool) -> None:
    """Put every open trace of every processor on disk (SIGTERM), within about ``timeout`` seconds.

    ``dying``: the process ends right after without running its exit hooks, so each open run's
    file is also moved into sight as ``<trace_id>.incomplete.jsonl``.
    """
    deadline = time.monotonic() + timeout
    for processor in list(_PROCESSORS):
        processor.secure(deadline, dying=dying)


class RunFileProcessor(SpanProcessor):
    """Writes every span of a trace that holds an open ``@run`` to that trace's local file.

    Runs register their trace with :meth:`open_trace` and release it with :meth:`close_trace`;
    the file is committed when the last run of the trace ends (nested and concurrent runs in
    one trace share a file). Spans of traces with no open run are not this processor's business.
    """

    agenttrace_own = True  # see agenttrace._core.runtime.Runtime.traced

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[int, tuple[TraceFile, int]] = {}
        self.enabled = True
        self.folder = Path(".agenttrace/traces")
        self.quiet = False
        self._checked: set[Path] = set()  # folders already searched for interrupted runs
        self._joined: set[int] = set()  # traces whose run lives in a parent process (see open_trace)
        # Traces whose last run ended, while close_trace waits for the writer thread: secure()
        # still writes them (a pool worker's SIGTERM often comes as its exit hooks end its run).
        self._closing: dict[int, TraceFile] = {}
        self._writer: SpanWriter | None = None  # made with the first file (keeps import light)
        self._spawned_worker = is_spawned_worker()
        os.register_at_fork(before=self._before_fork, after_in_child=self._after_fork_in_child)
        _PROCESSORS.add(self)

    def _before_fork(self) -> None:
        # A forked child writes its inherited traces' spans on its own thread: the modules that
        # takes must be imported before the fork, since a module lock another thread (the trace
        # writer) holds at the fork stays held forever in the child.
        if self._open:
            import contextlib

            from agenttrace._format.exactjson import orjson_module

            orjson_module()
            with contextlib.suppress(ImportError):
                import fcntl  # noqa: F401 - imported for the child, see above

    def _after_fork_in_child(self) -> None:
        # A forked child (a multiprocessing worker) writes its own partial file, named by its pid,
        # for the traces it inherited, each span as it ends (the worker may end with os._exit or
        # a signal at any moment); the parent's runs are not its to end, so the count starts at
        # zero. The parent takes the file into the trace's file when its run commits; the
        # child's own runs in that trace commit their spans when they end, merged the same way.
        from agenttrace.exporters.local import TraceFile

        self._lock = threading.Lock()
        for closing in self._closing.values():
            closing.forget_after_fork()  # another thread of the parent was committing it
        self._closing.clear()
        for trace_id, (inherited, _) in list(self._open.items()):
            inherited.forget_after_fork()
            file = TraceFile(self.folder, trace_id)
            file.sync = True
            self._open[trace_id] = (file, 0)
            self._joined.add(trace_id)
        mp_util = sys.modules.get("multiprocessing.util")
        if mp_util is not None and self._open:
            # A multiprocessing worker ends with os._exit (no atexit), but runs multiprocessing's
            # finalizers; its registry is cleared in the child before the after-fork hooks run.
            mp_util.register_after_fork(self, _install_worker_finalizer)

    def release_joined(self) -> None:
        """A worker ends: its files of runs in its parent go into the trace's file if that run
        ended already (a worker outliving the run), else stay for the run to take in."""
        with self._lock:
            files = [entry[0] for trace_id, entry in self._open.items() if trace_id in self._joined]
        for file in files:
            if file.spans:
                file.commit(only_into_existing=True)

    def open_trace(self, trace_id: int, *, joined: bool = False) -> None:
        """Start (or join) the file of ``trace_id``.

        ``joined``: the trace's run lives in another process (this process's run was started by
        a run of its parent): if this process dies mid-run, its file is left for that run to
        take in, not kept as an incomplete trace of its own.
        """
        from agenttrace.exporters.local import TraceFile

        with self._lock:
            if not self.enabled:
                return
            if joined:
                self._joined.add(trace_id)
            if self.folder not in self._checked:
                self._checked.add(self.folder)
                self._recover()
            if self._writer is None:
                from agenttrace.exporters.local import SpanWriter

                self._writer = SpanWriter()
            entry = self._open.get(trace_id)
            if entry is None:
                file = TraceFile(self.folder, trace_id)
                # A spawned pool worker may die of SIGTERM (Pool.terminate) at any moment and has
                # no handler to write what waits (see agenttrace.exporters.termination).
                file.sync = self._spawned_worker
                if not joined:
                    file.claim()  # its workers' files are its to take in, see recover_interrupted
                self._open[trace_id] = (file, 1)
            else:
                self._open[trace_id] = (entry[0], entry[1] + 1)

    def _recover(self) -> None:
        from agenttrace.exporters.local import recover_interrupted

        for path in recover_interrupted(self.folder):
            say(f"kept the spans of an interrupted run (its process died mid-run) in {_display(path)}")

    def close_trace(self, trace_id: int) -> Path | None:
        """Release ``trace_id``; the last release commits its file and says where it went."""
        with self._lock:
            entry = self._open.get(trace_id)
            if entry is None:
                return None
            if entry[1] > 1:
                self._open[trace_id] = (entry[0], entry[1] - 1)
                return None
            del self._open[trace_id]
            self._closing[trace_id] = entry[0]
        try:
            if self._writer is not None:
                self._writer.flush(entry[0])
        finally:
            with self._lock:
                if self._closing.get(trace_id) is entry[0]:
                    del self._closing[trace_id]
        path = entry[0].commit()
        if path is not None and not self.quiet:
            say(f"trace written to {_display(path)} ({entry[0].spans} spans)")
        return path

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Nothing to do until a span ends."""

    def on_end(self, span: ReadableSpan) -> None:
        """Append ``span`` to its trace's file when that trace has an open run."""
        ctx = span.context
        if ctx is None:
            return
        entry = self._open.get(ctx.trace_id)
        if entry is None:
            return
        try:
            if self._writer is not None and not entry[0].sync:
                self._writer.submit(entry[0], span)
            else:
                entry[0].add(span)
        except Exception as exc:  # noqa: BLE001 - never raise into the span's owner
            warn_once("trace-file-encode", f"could not record a span in the trace file: {exc!r}")

    def shutdown(self) -> None:
        """Commit every trace still open (the process is ending mid-run)."""
        with self._lock:
            open_ids = list(self._open)
        for trace_id in open_ids:
            with self._lock:
                if trace_id in self._open:
                    self._open[trace_id] = (self._open[trace_id][0], 1)
            self.close_trace(trace_id)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Hand every span that ended so far to the operating system (files are committed at run end)."""
        return self.secure(time.monotonic() + timeout_millis / 1000, dying=False)

    def secure(self, deadline: float, *, dying: bool) -> bool:
        """Write every span that ended so far to its partial file before ``deadline``; False if some were not.

        Never waits on a lock past the deadline (it runs when a signal interrupts a thread that
        may hold one). ``dying``: then move each open run's file into sight as
        ``<trace_id>.incomplete.jsonl`` (the process ends without committing it).
        """
        if not self._lock.acquire(timeout=max(deadline - time.monotonic(), 0.01)):
            return False
        try:
            files = [(entry[0], trace_id in self._joined) for trace_id, entry in self._open.items()]
            files += [(file, trace_id in self._joined) for trace_id, file in self._closing.items()]
            if dying:
                self._open.clear()
                self._closing.clear()
        finally:
            self._lock.release()
        done = True
        for file, joined in files:
            remaining = max(deadline - time.monotonic(), 0.01)
            if self._writer is not None and not self._writer.flush(file, remaining, quiet=True):
                done = False
            if not file.write_out(timeout=max(deadline - time.monotonic(), 0.01)):
                done = False
            elif dying and file.spans and joined:  # a joined trace's file is its parent's run's to take in
                file.commit(only_into_existing=True)  # unless that run ended already
            elif dying and file.spans:
                path = file.commit(file.folder / file.name.replace(".jsonl", ".incomplete.jsonl"))
                if path is not None and not self.quiet:
                    say(f"the process is ending mid-run: kept the spans so far in {_display(path)}")
        return done


def _install_worker_finalizer(processor: RunFileProcessor) -> None:
    import multiprocessing.util

    multiprocessing.util.Finalize(None, processor.release_joined, exitpriority=90)


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
