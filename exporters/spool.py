"""The spool: traces that could not be delivered, kept on disk until the next run or ``agenttrace upload``.

Layout: ``<spool_dir>/<target>/<time_ns>-<pid>-<seq>-<spans>.pb``, one serialized OTLP
``ExportTraceServiceRequest`` per file, or ``...-<spans>.json``, one OTLP JSON ``TracesData``
(the OpenTelemetry file exporter's format): what a process hands off at exit, written as JSON
because that encoding costs the exiting agent a third of the protobuf one. Readers convert it
(:func:`request_bytes`) before sending. ``target`` names where the data was going
(``agenttrace`` for the backend, ``otlp`` for an OTLP/HTTP collector, ``otlp_grpc``).

* Written atomically: a hidden temporary file, fsynced, then renamed into place, so a reader
  (another process, ``agenttrace upload``) never sees half a batch.
* Claimed by rename before sending (``<name>.claimed-<pid>``): of several processes draining
  one spool (multiprocessing workers, a run, the background uploader a run started at exit and
  ``agenttrace upload``), exactly one sends each file. The claimer holds an exclusive ``flock``
  on the file while it has it, which the operating system releases when the process dies: a
  claim whose lock can be taken is a dead process's, and the next reader releases it. Process
  ids are not compared (they mean nothing across the containers that may share a spool
  volume), but on Windows, where there is no ``flock``. A process handing its spool to the
  background uploader at exit releases its own claims first (:meth:`Spool.release_mine`).
* Bounded: a batch that would take the folder past ``spool_max_bytes`` is dropped, counted,
  and reported once, with the total at exit.

This module imports nothing heavy: protobuf is only touched by the callers that send.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import itertools
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from agenttrace._core.errors import say, warn_once

__all__ = ["Delivery", "Spool", "drain", "report_failure", "request_bytes"]

_NAME = re.compile(r"^\d+-\d+-\d+-(\d+)\.(?:pb|json)$")
_CLAIMED = re.compile(r"^(.+\.(?:pb|json))\.claimed-(\d+)$")
_KINDS = ("pb", "json")
_seq = itertools.count()


@dataclass
class Delivery:
    """What one attempt to send a batch achieved."""

    delivered: int = 0  # spans the receiver accepted
    kept: list[tuple[bytes, int]] = field(default_factory=list)  # (request, spans) to retry later
    rejected: int = 0  # spans the receiver refused for good (HTTP 400 and kin), or too large to send alone
    reason: str | None = None  # why something was not delivered, for the warning
    auth_failed: bool = False  # the receiver refused the API key (401/403)

    @property
    def ok(self) -> bool:
        """True when every span was delivered."""
        return not self.kept and not self.rejected and self.reason is None

    def merge(self, other: Delivery) -> None:
        """Add ``other``'s outcome to this one (the halves of a split batch)."""
        self.delivered += other.delivered
        self.kept.extend(other.kept)
        self.rejected += other.rejected
        self.reason = self.reason or other.reason
        self.auth_failed = self.auth_failed or other.auth_failed


class _Drops:
    """Spans dropped at the spool's size bound in this process, reported once more at exit."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.where: set[str] = set()
        self._registered = False

    def add(self, spans: int, folder: Path, limit: int) -> None:
        with self.lock:
            self.count += spans
            self.where.add(str(folder))
            if not self._registered:
                self._registered = True
                atexit.register(self.report)
        warn_once(
            f"spool-full:{folder}",
            f"the spool folder {folder} reached its size bound of {limit} bytes (AGENTTRACE_SPOOL_MAX_BYTES): "
            "traces that cannot be delivered are now dropped; the count is reported at exit",
        )

    def report(self) -> None:
        """Say how many spans were dropped since the last report (at exit)."""
        with self.lock:
            count, where = self.count, sorted(self.where)
            self.count = 0
        if count:
            say(
                f"WARNING: {count} spans were dropped in this process: the spool could not keep them "
                f"({', '.join(where)} full or not writable)"
            )


DROPS = _Drops()


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if sys.platform == "win32":
        return _windows_pid_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, owned by someone else
        return True
    return True


if sys.platform == "win32":
    import ctypes

    def _windows_pid_alive(pid: int) -> bool:
        # os.kill(pid, 0) is not a probe on Windows: signal 0 is CTRL_C_EVENT.
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return bool(ctypes.get_last_error() == 5)  # ERROR_ACCESS_DENIED: alive, someone else's
        try:
            code = ctypes.c_ulong()
            if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
                return True
            return bool(code.value == 259)  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)


def _locked(path: Path) -> tuple[bool, IO[bytes] | None]:
    """``(True, path opened and locked)``; ``(False, None)`` if another process holds or took it.

    ``(True, None)`` where there is no ``flock`` (Windows).
    """
    try:
        import fcntl
    except ImportError:
        return True, None
    try:
        handle = open(path, "rb")  # noqa: SIM115 - kept open (locked) while the claim lasts
    except OSError:
        return False, None  # gone: another process took it
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return False, None
    except OSError:  # a file system without locks (NFS without lockd): the process id decides
        handle.close()
        return True, None
    return True, handle


def _release_if_dead(claimed: Path, original: Path, pid: int) -> None:
    """Give ``claimed`` back under its ``original`` name if the process that claimed it is gone."""
    free, handle = _locked(claimed)
    if not free:
        return  # its claimer holds it: alive, whatever its process id says here
    if handle is None and _pid_alive(pid):
        return  # no flock (Windows): the process id decides
    try:
        os.replace(claimed, original)
    except OSError:
        pass
    finally:
        if handle is not None:
            handle.close()


class Spool:
    """The spool folder of one export target."""

    def __init__(self, root: Path, target: str, max_bytes: int) -> None:
        self.root = root
        self.target = target
        self.folder = root / target
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._size: int | None = None  # bytes under root; scanned once, then kept up to date
        self.write_error: OSError | None = None  # why the last write failed, for the warning
        # Files this process claimed and has not finished with, each with the open file that holds
        # its lock (None where there is no flock).
        self._claims: dict[Path, IO[bytes] | None] = {}

    def after_fork_in_child(self) -> None:
        """A forked child starts with its own lock (another thread may have held the parent's) and no claims."""
        self._lock = threading.Lock()
        inherited, self._claims = self._claims, {}
        for handle in inherited.values():
            if handle is not None:
                # The child's copy of the descriptor would keep the parent's claim locked after
                # the parent died; the parent's own descriptor keeps it locked while it lives.
                with contextlib.suppress(OSError):
                    handle.close()

    def _root_size(self) -> int:
        total = 0
        try:
            for kind in _KINDS:
                for path in self.root.rglob(f"*.{kind}*"):
                    try:
                        total += path.stat().st_size
                    except OSError:
                        continue
        except OSError:
            return 0
        return total

    def put(self, data: bytes, spans: int, kind: str = "pb") -> bool:
        """Write one request atomically; False (and the spans counted as dropped) at the size bound.

        ``kind`` is ``"pb"`` (a serialized ``ExportTraceServiceRequest``) or ``"json"`` (an OTLP
        JSON ``TracesData``).
        """
        with self._lock:
            if self._size is None:
                self._size = self._root_size()
            if self._size + len(data) > self.max_bytes:
                DROPS.add(spans, self.root, self.max_bytes)
                return False
            name = f"{time.time_ns():020d}-{os.getpid()}-{next(_seq):06d}-{spans}.{kind}"
            temporary = self.folder / f".{name}.tmp"
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                with open(temporary, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temporary, self.folder / name)
            except OSError as exc:
                try:
                    temporary.unlink(missing_ok=True)
                except OSError:
                    pass
                self.write_error = exc
                with DROPS.lock:
                    DROPS.count += spans
                    DROPS.where.add(str(self.root))
                warn_once(f"spool-write:{self.root}", f"could not write to the spool folder {self.root}: {exc}")
                return False
            self._size += len(data)
            return True

    def pending(self) -> list[Path]:
        """Unclaimed files, oldest first; claims left by dead processes are released on the way."""
        try:
            names = os.listdir(self.folder)
        except OSError:
            return []
        for name in names:
            claimed = _CLAIMED.match(name)
            if claimed and self.folder / name not in self._claims:
                _release_if_dead(self.folder / name, self.folder / claimed.group(1), int(claimed.group(2)))
        try:
            names = os.listdir(self.folder)
        except OSError:
            return []
        return [self.folder / n for n in sorted(names) if _NAME.match(n)]

    def claim(self, path: Path) -> Path | None:
        """Take ``path`` for sending; None when another process took it first."""
        claimed = path.with_name(f"{path.name}.claimed-{os.getpid()}")
        free, handle = _locked(path)
        if not free:
            return None  # another process holds it (it is claiming it right now)
        try:
            os.rename(path, claimed)
        except OSError:
            if handle is not None:
                handle.close()
            return None
        with self._lock:
            self._claims[claimed] = handle
        return claimed

    def release(self, claimed: Path) -> None:
        """Give a claimed file back (it was not delivered)."""
        with self._lock:
            handle = self._claims.pop(claimed, None)
        match = _CLAIMED.match(claimed.name)
        try:
            if match is not None:
                os.replace(claimed, claimed.with_name(match.group(1)))  # still locked while renamed
        except OSError:
            pass  # already given back (release_mine) or gone
        finally:
            if handle is not None:
                handle.close()

    def release_mine(self) -> None:
        """Give back every file this process claimed and is still sending (at exit, for the uploader).

        Its send may still arrive: the file is then delivered twice (at least once, as a batch
        in flight at exit).
        """
        with self._lock:  # every claim here is this process's: a forked child starts with none
            mine = list(self._claims)
        for claimed in mine:
            self.release(claimed)

    def done(self, claimed: Path) -> None:
        """Delete a claimed file that was delivered."""
        with self._lock:
            handle = self._claims.pop(claimed, None)
        try:
            size = claimed.stat().st_size
            claimed.unlink()
        except OSError:
            return
        finally:
            if handle is not None:
                handle.close()
        with self._lock:
            if self._size is not None:
                self._size = max(0, self._size - size)

    def files(self) -> Iterator[tuple[Path, int]]:
        """Each pending file with the number of spans it holds."""
        for path in self.pending():
            match = _NAME.match(path.name)
            yield path, int(match.group(1)) if match else 0


def _hex_ids_to_base64(document: Any) -> None:
    # OTLP JSON writes trace and span ids in hex; the proto3 JSON mapping protobuf parses wants base64.
    for resource_spans in document.get("resourceSpans", ()):
        for scope_spans in resource_spans.get("scopeSpans", ()):
            for span in scope_spans.get("spans", ()):
                for item in (span, *span.get("links", ())):
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if item.get(key):
                            item[key] = base64.b64encode(bytes.fromhex(item[key])).decode("ascii")


def request_bytes(name: str, data: bytes) -> bytes:
    """The serialized ``ExportTraceServiceRequest`` of spool file ``name`` holding ``data``.

    OTLP JSON files are converted; protobuf files are returned as they are. Raises ValueError
    for a file that cannot be read as either.
    """
    if not name.endswith(".json"):
        return data
    from google.protobuf import json_format  # type: ignore[import-untyped]  # protobuf ships no type stubs
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    try:
        document = json.loads(data)
        _hex_ids_to_base64(document)
        return bytes(json_format.ParseDict(document, ExportTraceServiceRequest()).SerializeToString())
    except (json_format.ParseError, AttributeError, TypeError, KeyError) as exc:
        raise ValueError(f"not an OTLP JSON TracesData: {exc}") from exc


def drain(spool: Spool, send: Callable[[bytes], Delivery], stop: Callable[[], bool] | None = None) -> Delivery:
    """Send the spool's files oldest first until one fails or ``stop()`` says so; return the sum."""
    total = Delivery()
    for path in spool.pending():
        if stop is not None and stop():
            break
        claimed = spool.claim(path)
        if claimed is None:
            continue  # another process is sending it
        try:
            data = request_bytes(path.name, claimed.read_bytes())
        except OSError:
            continue
        except ValueError:
            # Written atomically, so never half a file; but a file no reader understands must not
            # block the queue: set aside under a name no reader picks up, kept for inspection.
            try:
                os.replace(claimed, path.with_name(f"{path.name}.unreadable"))
            except OSError:
                pass
            spool.release(claimed)
            continue
        try:
            outcome = send(data)
        except Exception as exc:  # noqa: BLE001 - a failed send leaves the file for later
            outcome = Delivery(reason=repr(exc), kept=[(data, 0)])
        if outcome.delivered == 0 and outcome.kept and not outcome.rejected:
            spool.release(claimed)  # nothing got through: keep the file as it was
            total.merge(Delivery(reason=outcome.reason, auth_failed=outcome.auth_failed))
            break
        # Some or all of it was delivered (a split batch): the rest is spooled again as new files.
        for request, spans in outcome.kept:
            spool.put(request, spans)
        spool.done(claimed)
        total.merge(outcome)
        if outcome.kept:
            break
    return total


def report_failure(destination: str, outcome: Delivery, spool: Spool | None, stored: bool = True) -> None:
    """Say once per process and destination what failed and where the data is kept."""
    if spool is None:
        where = "dropped (no spool for this exporter)"
    elif not stored and spool.write_error is not None:
        where = f"dropped: the spool folder {spool.root} cannot be written ({spool.write_error})"
    elif not stored:
        where = f"dropped: the spool folder {spool.root} is full"
    else:
        where = f"kept in {spool.folder} and sent on the next run or by `agenttrace upload`"
    if outcome.auth_failed:
        warn_once(
            f"export-auth:{destination}",
            f"{destination} rejected the API key ({outcome.reason}): check AGENTTRACE_API_KEY; traces are {where}",
        )
        return
    if outcome.kept or (outcome.reason and not outcome.rejected):
        warn_once(
            f"export:{destination}",
            f"could not send traces to {destination} ({outcome.reason}); they are {where}",
        )
    if outcome.rejected:
        warn_once(
            f"export-rejected:{destination}",
            f"{destination} refused {outcome.rejected} spans for good ({outcome.reason}); they were dropped",
        )
