"""Local trace files: one ``<trace_id>.jsonl`` per run, OTLP JSON Lines, written atomically.

Spans are encoded as they end and appended to a hidden partial file in the trace folder
(``.<trace_id>.jsonl.partial-<pid>-<token>``): the writer thread hands each batch to the
operating system as soon as it has encoded it (every few tens of milliseconds while spans keep
coming), so a process killed with ``kill -9`` leaves every span that ended more than that long
before on disk, and a long run's payloads never pile up in memory. When the run ends the
partial file is fsynced and renamed into place: a reader never sees a half-written
``<trace_id>.jsonl``.

The writer holds an exclusive ``flock`` on its partial file for as long as it lives; the
operating system releases it when the process dies, however it dies. That lock, not a process
id, is how a later process tells an interrupted run's file (recovered as
``<trace_id>.incomplete.jsonl``) from a live one, so processes of different containers (each
perhaps PID 1) can share a trace folder.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from opentelemetry.sdk.trace import ReadableSpan

from agenttrace._core.errors import warn_once
from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.KIND
from agenttrace._format.otlp_json import group_parts, span_text

__all__ = ["SpanWriter", "TraceFile", "recover_interrupted"]

# Encoded spans are written out when this many characters are pending, when the oldest has waited
# _SYNC_DELAY seconds, and after each batch of the writer thread, whichever comes first.
_FLUSH_CHARS = 1 << 18
_SYNC_DELAY = 0.05

# Open files inherited across fork(), kept alive so their buffers are never flushed (see
# TraceFile.forget_after_fork).
_FORKED_AWAY: list[IO[str]] = []


@contextlib.contextmanager
def _merge_lock(path: Path) -> Iterator[None]:
    """Serialise merges into one trace file across processes (forked workers commit at once)."""
    try:
        import fcntl
    except ImportError:  # Windows: merges are not serialised there
        yield
        return
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:  # a file system without locks (NFS without lockd, some FUSE mounts)
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class TraceFile:
    """The file of one trace being recorded; thread-safe."""

    def __init__(self, folder: Path, trace_id: int) -> None:
        self.folder = folder
        self.trace_id = trace_id
        self.name = f"{trace_id:032x}.jsonl"
        self.path = folder / self.name
        # pid and the monotonic clock: unique among processes of several containers sharing the
        # folder, and no draw from os.urandom, which a replay serves from the agent's recording.
        self._token = f"{os.getpid()}-{time.monotonic_ns():x}"
        self._partial = folder / f".{self.name}.partial-{self._token}"
        self._lock = threading.Lock()
        self._pending: list[tuple[Any, Any, str]] = []
        self._pending_chars = 0
        self._pending_since = 0.0
        self._file: IO[str] | None = None
        self.spans = 0
        self.dropped = 0  # spans not written because the file could not be
        self.failed: OSError | None = None
        # Each span written as it is added: a forked worker's file of its parent's trace (the
        # worker may end with os._exit or a signal at any moment, and its parent merges the file).
        self.sync = False

    def add(self, span: ReadableSpan) -> None:
        """Encode ``span`` now (so the span object can be freed) and queue it for writing.

        What is pending is written when it is large or old enough; the writer thread also calls
        :meth:`write_out` after each batch.
        """
        with self._lock:
            if self.failed is not None:
                # The file cannot be written: keeping the span would make memory grow with the run.
                self.spans += 1
                self.dropped += 1
                return
        encoded = span_text(span)
        with self._lock:
            if not self._pending:
                self._pending_since = time.monotonic()
            self._pending.append((span.resource, span.instrumentation_scope, encoded))
            self._pending_chars += len(encoded)
            self.spans += 1
            if (
                self.sync
                or self._pending_chars >= _FLUSH_CHARS
                or time.monotonic() - self._pending_since >= _SYNC_DELAY
            ):
                self._write_pending()

    def claim(self) -> None:
        """Create (and lock) the partial file now, before any span: while it is held, other
        processes know this trace's run is going and leave its workers' files to it. Never raises
        (a file that cannot be made is reported by the first write)."""
        with self._lock:
            if self._file is None and self.failed is None:
                with contextlib.suppress(OSError):
                    self._file = self._open_partial()

    def write_out(self, timeout: float = -1) -> bool:
        """Hand what is pending to the operating system (a kill no longer loses it); False if busy.

        ``timeout``: how long to wait for the file's lock (-1: as long as it takes; a signal
        handler passes a bound, since the thread it interrupted may hold the lock).
        """
        if not self._lock.acquire(timeout=timeout):
            return False
        try:
            self._write_pending()
        finally:
            self._lock.release()
        return True

    def _open_partial(self) -> IO[str]:
        self.folder.mkdir(parents=True, exist_ok=True)
        # backslashreplace: a lone surrogate (only ever inside a JSON string) is written as its
        # \uXXXX escape, which reads back as the same string.
        try:
            import fcntl
        except ImportError:  # Windows: no lock; recovery falls back to the process id
            return open(self._partial, "w", encoding="utf-8", errors="backslashreplace")
        # Created under a name no recoverer looks at, locked, then renamed: a partial file is
        # never visible unlocked while its writer lives.
        creating = self.folder / f".{self.name}.creating-{self._token}"
        handle = open(creating, "w", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115 - kept open across calls
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise
            except OSError as exc:
                # A file system without locks (NFS without lockd, some FUSE mounts): the file is
                # written unlocked, and recovery goes by the writer's process id, as on Windows.
                warn_once(
                    f"trace-file-no-lock:{self.folder}",
                    f"{self.folder} has no file locks ({exc}); trace files there are recovered by process id",
                )
            os.replace(creating, self._partial)
        except OSError:
            handle.close()
            with contextlib.suppress(OSError):
                creating.unlink()
            raise
        return handle

    def _write_pending(self) -> None:
        if not self._pending or self.failed is not None:
            return
        try:
            if self._file is None:
                self._file = self._open_partial()
            parts = group_parts(self._pending)
            parts.append("\n")
            # One write of the whole line: a process killed mid-run leaves whole lines behind
            # (but for a line the kill cuts in the middle, which readers skip with a warning).
            self._file.write("".join(parts))
            self._file.flush()
        except OSError as exc:
            self._fail(exc)
            return
        self._pending.clear()
        self._pending_chars = 0

    def _fail(self, exc: OSError) -> None:
        """The file cannot be written: say so now, drop what is pending and what comes (counted)."""
        self.failed = exc
        self.dropped += len(self._pending)
        self._pending.clear()
        self._pending_chars = 0
        warn_once(
            f"trace-file:{self.folder}",
            f"could not write trace file {self.path}: {exc}; the run itself is unaffected, "
            "and the spans of its trace are dropped (the count is reported at the run's end)",
        )

    def commit(self, target: Path | None = None, *, only_into_existing: bool = False) -> Path | None:
        """Write what is left and move the file into place; return its path, or None on failure.

        ``target``: where to (default ``<trace_id>.jsonl``); the spans of an earlier file there
        are kept. ``only_into_existing``: merge only if ``target`` exists already (a worker whose
        run ended first); otherwise write out and leave the file for that run to take in.
        """
        target = target or self.path
        with self._lock:
            self._write_pending()
            if self.failed is not None:
                self._keep_written()
                return None
            try:
                if self._file is None:
                    return None
                self._file.flush()
                os.fsync(self._file.fileno())
                with _merge_lock(self.folder / ".merge.lock"):
                    if only_into_existing and not target.exists():
                        return None
                    self._take_workers_files()
                    if target.exists():
                        # Another run in the same trace got there first (a second top-level run
                        # under the user's span, a forked worker): keep both runs' spans.
                        with open(target, encoding="utf-8") as earlier:
                            self._file.write(earlier.read())
                        self._file.flush()
                    # Renamed while still open, so locked: no recoverer takes it in between.
                    os.replace(self._partial, target)
                self._file.close()
                self._file = None
            except OSError as exc:
                warn_once(
                    f"trace-file:{self.folder}",
                    f"could not write trace file {self.path}: {exc}; the run itself is unaffected",
                )
                self._report_dropped()
                self._discard()
                return None
            return target

    def _take_workers_files(self) -> None:
        """Append the partial files of this trace whose writers are gone (worker processes) to ours.

        A worker process of the run (forked, or spawned and joined to the run's trace) writes
        the trace's spans to a partial file of its own and may end without committing it (a
        pool's workers end with ``os._exit`` or SIGTERM). Its whole lines are kept; a last line
        its death cut is not. A worker still alive keeps its file (it commits it itself, or
        recovery keeps it as incomplete). Called under the merge lock, with our file open.
        """
        assert self._file is not None
        for partial in self.folder.glob(f".{self.name}.partial-*"):
            if partial == self._partial:
                continue
            owner = partial.name.rpartition(".partial-")[2]
            with contextlib.suppress(OSError), _claim(partial, owner) as claimed:
                if not claimed:
                    continue
                data = partial.read_bytes()
                whole = data[: data.rfind(b"\n") + 1]
                if whole:
                    self._file.write(whole.decode("utf-8", "replace"))
                    self._file.flush()
                partial.unlink()

    def _report_dropped(self, kept: Path | None = None) -> None:
        if self.dropped:
            where = f"; the spans written before are in {kept}" if kept is not None else ""
            warn_once(
                f"trace-file-dropped:{self.path}",
                f"{self.dropped} of the {self.spans} spans of trace {self.trace_id:032x} were dropped: "
                f"they could not be written to {self.folder} ({self.failed}){where}",
            )

    def _keep_written(self) -> None:
        """Writing failed mid-run (a full disk): keep what reached the file, as ``<trace_id>.incomplete.jsonl``.

        Its last line may be cut where the failure came; readers read the lines before it.
        """
        kept: Path | None = None
        if self._file is not None:
            target = self.folder / self.name.replace(".jsonl", ".incomplete.jsonl")
            try:
                if self._partial.stat().st_size > 0:
                    if target.exists():
                        # Another process's cut-short file of this trace is there: leave ours as
                        # it is (unlocked once closed), for the next recovery to merge, not delete.
                        kept = self._partial
                    else:
                        os.replace(self._partial, target)  # a rename needs no free space
                        kept = target
            except OSError:
                pass
        self._report_dropped(kept)
        if kept is self._partial:
            self._close_file()
        else:
            self._discard()

    def forget_after_fork(self) -> None:
        """In a forked child: let go of the parent's partial file without writing to it.

        The child's copy of the open file still holds the parent's unflushed buffer; closing the
        descriptor first makes any later flush of that copy fail harmlessly instead of writing
        the parent's spans a second time. The object is kept so it is never flushed by GC.
        """
        if self._file is not None:
            with contextlib.suppress(OSError, ValueError):
                os.close(self._file.fileno())
            _FORKED_AWAY.append(self._file)
            self._file = None
        self._pending.clear()

    def _close_file(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None

    def _discard(self) -> None:
        self._close_file()
        try:
            self._partial.unlink(missing_ok=True)
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by someone else
        return True
    return True


def recover_interrupted(folder: Path) -> list[Path]:
    """Keep the spans of runs whose process died mid-run, as ``<trace_id>.incomplete.jsonl``.

    A partial file whose writer is gone will never be committed; renaming it makes the spans it
    holds visible to ``agenttrace show`` and to replay, marked as incomplete by the name. A
    partial file is its writer's while the writer's lock on it is held (the operating system
    drops the lock when the process dies): process ids are not compared, so processes of other
    containers sharing the folder never lose a live file. Nor is a dead writer's file taken while
    another file of the same trace is still being written: it is a worker's of a run still going,
    which that run takes in when it ends.
    """
    recovered: list[Path] = []
    try:
        candidates = list(folder.glob(".*.jsonl.partial-*"))
    except OSError:
        return recovered
    from agenttrace._format.files import being_written

    going = {p.name[1:].rpartition(".partial-")[0] for p in candidates if being_written(p)}
    for partial in candidates:
        name, _, owner = partial.name[1:].rpartition(".partial-")
        if name in going:
            continue
        with contextlib.suppress(OSError), _claim(partial, owner) as claimed:
            if claimed and partial.stat().st_size == 0:
                partial.unlink()  # a run that died before its first span: nothing to keep
                continue
        target = folder / name.replace(".jsonl", ".incomplete.jsonl")
        with contextlib.suppress(OSError), _claim(partial, owner) as claimed:
            if not claimed:
                continue
            with _merge_lock(folder / ".merge.lock"):
                if target.exists():
                    # Another interrupted process of the same trace (a worker): keep both.
                    with open(target, "rb") as earlier, open(partial, "ab") as out:
                        out.write(earlier.read())
                os.replace(partial, target)
            recovered.append(target)
    # A writer killed between creating its file and naming it (microseconds) leaves an empty file
    # behind; one a minute old is no live writer's, which locks and renames it at once.
    with contextlib.suppress(OSError):
        for creating in folder.glob(".*.jsonl.creating-*"):
            with contextlib.suppress(OSError):
                if time.time() - creating.stat().st_mtime > 60:
                    creating.unlink()
    return recovered


@contextlib.contextmanager
def _claim(partial: Path, owner: str) -> Iterator[bool]:
    """True while this process holds ``partial``'s lock (its writer is gone); False if the writer lives."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; the writer's process id decides
        pid = owner.partition("-")[0]
        yield pid.isdigit() and not _alive(int(pid))
        return
    with open(partial, "rb") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        except OSError:  # a file system without locks: the writer's process id decides
            pid = owner.partition("-")[0]
            yield pid.isdigit() and not _alive(int(pid))
            return
        yield True


# Spans waiting for the writer thread, in estimated bytes: beyond this the agent's thread encodes
# its spans itself, so a burst of large responses can never pile up in memory.
_MAX_QUEUED_BYTES = 32 << 20
# The writer picks up queued spans every _LINGER seconds while they keep coming, or at once when
# this many bytes are waiting.
_LINGER = 0.02
_WAKE_BYTES = 4 << 20


def _span_size(span: ReadableSpan) -> int:
    size = 512
    events = span.events
    for event in events:
        body = (event.attributes or _NO_ATTRIBUTES).get(S.BODY)
        if type(body) is str:
            size += len(body)
    if size > 512:
        # A call span: its weight is its bodies, the rest is a few short strings. (Reading the
        # span's own attributes goes through the SDK's BoundedAttributes, a Python-level walk.)
        return size
    for attributes in (span.attributes, *(event.attributes for event in events)):
        for value in (attributes or _NO_ATTRIBUTES).values():
            if type(value) is str:
                size += len(value)
    return size


_NO_ATTRIBUTES: dict[str, object] = {}


class SpanWriter:
    """One thread per process that encodes spans and writes trace files off the agent's thread.

    Encoding a call span with its payloads costs about as much as the call itself; the agent's
    thread only queues the finished span, and the writer does the work while the agent waits on
    its next response (the GIL is free then). :meth:`flush` waits until everything queued for a
    file is written, so a run's file is complete when it is committed.
    """

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[tuple[TraceFile, ReadableSpan | None, int, threading.Event | None]] = deque()
        # Bytes queued so far and bytes the writer has finished with: what is waiting or being
        # encoded is the difference. Each counter has one writer (submitters under the lock, the
        # writer thread alone), so the writer never takes the lock per span.
        self._queued_bytes = 0
        self._done_bytes = 0
        self._thread: threading.Thread | None = None
        self._sleeping = False  # True while the writer waits with no timeout: the next span wakes it

    def submit(self, file: TraceFile, span: ReadableSpan) -> None:
        """Queue ``span`` for ``file``; encode it here instead when the queue is full."""
        size = _span_size(span)
        with self._cond:
            waiting = self._queued_bytes - self._done_bytes
            if waiting + size <= _MAX_QUEUED_BYTES and self._ensure_thread():
                self._queue.append((file, span, size, None))
                self._queued_bytes += size
                if self._sleeping or waiting + size >= _WAKE_BYTES:
                    # Waking a thread costs the agent a futex call per span; while spans keep
                    # coming, the writer polls every _LINGER seconds instead (see _loop).
                    self._sleeping = False
                    self._cond.notify()
                return
        file.add(span)

    def flush(self, file: TraceFile, timeout: float = 60.0, *, quiet: bool = False) -> bool:
        """Wait until every span queued so far for ``file`` is written to it; False if it was not.

        ``quiet``: a bounded attempt (from a signal handler, whose interrupted thread may hold
        the queue's lock): no warning when it does not finish.
        """
        done = threading.Event()
        if not self._cond.acquire(timeout=timeout):
            return False
        try:
            if self._thread is None:
                return True
            self._queue.append((file, None, 0, done))
            self._cond.notify()
        finally:
            self._cond.release()
        if not done.wait(timeout):
            if not quiet:
                warn_once("trace-writer-stuck", f"the trace writer did not finish within {timeout:.0f} s")
            return False
        return True

    def _ensure_thread(self) -> bool:
        if self._thread is not None:
            return True
        try:
            thread = threading.Thread(target=self._loop, name="agenttrace-trace-writer", daemon=True)
            thread.start()
        except RuntimeError:  # interpreter shutting down: no new threads
            return False
        self._thread = thread
        return True

    def _loop(self) -> None:
        while True:
            with self._cond:
                if not self._queue:
                    # A light sleep first: spans arriving now are picked up when it ends, in one
                    # batch, without a wake-up per span. Then a deep one until the next span.
                    self._cond.wait(_LINGER)
                    if not self._queue:
                        while not self._queue:
                            self._sleeping = True
                            self._cond.wait()
                        self._sleeping = False
                        # The first span after a quiet spell has just ended: its agent is likely
                        # busy right now (reading the result, sending the next request). Encoding
                        # it at once would compete with that work for the GIL; waiting _LINGER
                        # moves it into the agent's next wait on I/O. A flush, or a burst of
                        # large spans, cuts the wait short (both notify).
                        if self._queue[-1][3] is None and self._queued_bytes - self._done_bytes < _WAKE_BYTES:
                            self._cond.wait(_LINGER)
                # Take everything queued in one step: the lock is held for a moment once per
                # batch, not once per span. (Held per span, the agent's thread would often find
                # it taken by a writer that had just lost the GIL, and wait for both.)
                batch, self._queue = self._queue, deque()
            touched: dict[int, TraceFile] = {}
            while batch:
                file, span, size, done = batch.popleft()  # popped: the span can be freed once written
                if done is not None:
                    self._write_out(touched)
                    done.set()
                    continue
                try:
                    file.add(span)  # type: ignore[arg-type]  # None only with a flush marker
                except Exception as exc:  # noqa: BLE001 - the writer must outlive a bad span
                    warn_once("trace-file-encode", f"could not record a span in the trace file: {exc!r}")
                touched[id(file)] = file
                self._done_bytes += size
                if size >= _WAKE_BYTES:
                    self._write_out(touched)  # a large body goes out now, not with the whole batch
            # The batch goes to the operating system now: a kill after this point loses none of it.
            self._write_out(touched)

    @staticmethod
    def _write_out(touched: dict[int, TraceFile]) -> None:
        for file in touched.values():
            try:
                write_out = getattr(file, "write_out", None)  # (a test's stand-in may have none)
                if write_out is not None:
                    write_out()
            except Exception as exc:  # noqa: BLE001 - the writer must outlive a bad file
                warn_once("trace-file-encode", f"could not record a span in the trace file: {exc!r}")
        touched.clear()
