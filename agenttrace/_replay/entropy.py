"""Entropy the agent draws during a run: recorded, then served back in order on replay.

What is covered, and how:

* ``os.urandom`` (and through it ``uuid.uuid4()``, httpx multipart boundaries, ...): the module
  attribute is wrapped while a run is active.
* ``secrets`` and ``random.SystemRandom``: they read ``random._urandom``, wrapped the same way.
* the ``random`` module: its draws happen in C and cannot be seen one by one, so its state is:
  each run records the global generator's state when it starts (``random.getstate()``, source
  ``random.state``) and replay restores it, so every later ``random.random()``, ``choice``,
  ``shuffle`` ... repeats exactly. Every unseeded ``Random.seed()`` (which ``random.Random()``
  and ``random.seed()`` call) seeds from a recorded 32-byte draw (source ``random.seed``).

OpenTelemetry's ``RandomIdGenerator`` draws span ids from the global ``random`` generator; from
``init()`` on it uses a private generator instead (:func:`isolate_span_ids`), so creating spans
neither consumes the agent's sequence nor repeats the recording's ids.

Draws are attributed to the run of the calling context (or, from a thread without context, the
run that started last) and written as ``agenttrace.entropy`` events: ``agenttrace.entropy.sources``
and ``agenttrace.entropy.values`` (base64), in draw order, from draw number
``agenttrace.entropy.first``. The draws made since the run's previous call go on each call span as
it starts (with ``agenttrace.entropy.run_span_id`` and the run's name), so a run whose process is
killed keeps the draws its recorded calls depend on; the rest go on the run span when it ends.
In replay the session's :data:`server` supplies each value; it raises or returns None (relaxed:
the real value is used) when the recording cannot serve it.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import os
import random
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from agenttrace._core.scope import RunState, ThreadFlag, current_scope, export_thread
from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.ENTROPY_SOURCES

__all__ = [
    "CLOCK",
    "call_started",
    "clock_reading",
    "exempt",
    "install",
    "isolate_span_ids",
    "private_file",
    "private_folder",
    "real_time_ns",
    "run_ended",
    "run_started",
    "set_server",
    "uninstall",
]

CLOCK = "clock"  # the source of a wall-clock reading in a run's draw sequence (see agenttrace._replay.clock)

# (run, source, size) -> bytes to hand the agent, or None to draw for real.
Server = Callable[[RunState, str, int], "bytes | None"]

_lock = threading.RLock()
_exempt = ThreadFlag()
_real_urandom = os.urandom
real_time_ns = time.time_ns  # the wall clock itself, whatever agenttrace._replay.clock makes of time.time_ns
_real_random_urandom: Callable[[int], bytes] = random._urandom  # type: ignore[attr-defined]
_real_seed = random.Random.seed
_real_module_seed = random.seed
_draws: dict[int, list[tuple[str, bytes]]] = {}  # id(RunState) -> draws in order
_written: dict[int, int] = {}  # id(RunState) -> how many of its draws are on call spans already
_pids: dict[int, int] = {}  # id(RunState) -> the process that started the run
_state_held: set[int] = set()  # runs whose draw 0 (the random state) no call span has written yet
_active: list[RunState] = []
_server: Server | None = None
_installed = False
# Span ids come from here while runs are active: seeded from the OS, never from a replayed draw.
_id_rng = random.Random(int.from_bytes(_real_urandom(32), "big"))  # noqa: S311 - ids, not secrets


def _after_fork_in_child() -> None:
    # Forked workers must not repeat their parent's (and siblings') ids. The runs a worker
    # inherited are its parent's: the worker's draws are not logged for them (their sequence is
    # the parent's; a replay does not serve the worker from it either, see session.py).
    # Another thread of the parent may have held the lock at the fork (a clock reading): the
    # worker's copy would stay locked forever.
    global _lock  # noqa: PLW0603 - the worker's own lock
    _lock = threading.RLock()
    _id_rng.seed(int.from_bytes(_real_urandom(32), "big"))
    _draws.clear()
    _written.clear()
    _pids.clear()
    _state_held.clear()
    _active.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


_private_names = itertools.count()


def _private_name(folder: str | os.PathLike[str] | None, prefix: str, suffix: str) -> str:
    base = os.fspath(folder) if folder is not None else (os.environ.get("TMPDIR") or tempfile.tempdir or "/tmp")  # noqa: S108
    return os.path.join(base, f"{prefix}{os.getpid()}-{time.monotonic_ns():x}-{next(_private_names)}{suffix}")


def private_file(prefix: str, suffix: str = "", folder: str | os.PathLike[str] | None = None) -> tuple[int, str]:
    """A new file of AgentTrace's own, ``(descriptor, path)``, made without :mod:`tempfile`.

    tempfile's name generator is a ``random.Random`` seeded from ``os.urandom`` at its first use
    in the process: if AgentTrace made that first use, the agent's own first temporary file would
    draw nothing in replay where it drew in the recording, and every later draw would shift.
    """
    while True:
        path = _private_name(folder, prefix, suffix)
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600), path
        except FileExistsError:
            continue


def private_folder(prefix: str, folder: str | os.PathLike[str] | None = None) -> str:
    """A new folder of AgentTrace's own, made without :mod:`tempfile` (see :func:`private_file`)."""
    while True:
        path = _private_name(folder, prefix, "")
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        return path


def exempt() -> contextlib.AbstractContextManager[None]:
    """Draws made inside this block are AgentTrace's own: neither recorded nor served."""
    return _exempt.raised()


def set_server(server: Server | None) -> None:
    """Serve draws from a recording (replay) with ``server``, or draw for real (None)."""
    global _server  # noqa: PLW0603 - process-global mode
    with _lock:
        _server = server


def _current_run() -> RunState | None:
    scope = current_scope()
    if scope is not None and scope.run is not None:
        return scope.run
    with _lock:
        return _active[-1] if _active else None


def _exempt_thread() -> bool:
    if _exempt.up:
        return True
    # The export pipeline's own threads: their timing differs between record and replay.
    return export_thread()


def _draw(source: str, size: int, real: Callable[[int], bytes], *, in_context: bool = False) -> bytes:
    if _exempt_thread():
        return real(size)
    if in_context:  # only the run of the calling context, never a thread's guess (clock readings)
        scope = current_scope()
        run = scope.run if scope is not None else None
    else:
        run = _current_run()
    if run is None:
        return real(size)
    with _lock:
        log = _draws.get(id(run))
        if log is None or _pids.get(id(run)) != os.getpid():
            # A run this process did not start (a forked worker's inherited run): the draw is
            # the worker's own, neither logged into nor served from the parent run's sequence.
            # OpenTelemetry's own refresh of service.instance.id after a fork is one of these.
            return real(size)
    server = _server
    value = server(run, source, size) if server is not None else None
    if value is None:
        value = real(size)
    with _lock:
        log.append((source, value))
    return value


def _urandom(size: int) -> bytes:
    return _draw("urandom", size, _real_urandom)


def _sysrandom(size: int) -> bytes:
    return _draw("sysrandom", size, _real_random_urandom)


def clock_reading(real_ns: int) -> int:
    """The wall-clock reading (ns) to hand the agent: ``real_ns``, or in replay the recorded one.

    Readings are logged in the run's draw sequence as draws of source ``clock`` (8 bytes, big
    endian): written, numbered and cut short exactly as random draws are. Only a reading made in
    a run's context counts; in a thread that carries no run, the clock is the real one.
    """
    value = _draw(CLOCK, 8, lambda _size: real_ns.to_bytes(8, "big"), in_context=True)
    return int.from_bytes(value, "big")


def _seed(self: random.Random, a: Any = None, version: int = 2) -> None:
    if a is None:
        a = int.from_bytes(_draw("random.seed", 32, _real_urandom), "big")
    _real_seed(self, a, version)


def _span_id(self: Any) -> int:
    span_id = 0
    while span_id == 0:
        span_id = _id_rng.getrandbits(64)
    return span_id


def _trace_id(self: Any) -> int:
    trace_id = 0
    while trace_id == 0:
        trace_id = _id_rng.getrandbits(128)
    return trace_id


def isolate_span_ids() -> None:
    """Make OTel's ``RandomIdGenerator`` draw from a private generator (idempotent, permanent).

    Done at ``init()``, before any run span exists: the run span's own id must not consume the
    agent's ``random`` sequence either. Ids are as random as OpenTelemetry's own (the private
    generator is seeded from the OS), and do not repeat when the agent calls ``random.seed(42)``.
    """
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    with _lock:
        if RandomIdGenerator.__dict__.get("generate_span_id") is _span_id:
            return
        RandomIdGenerator.generate_span_id = _span_id  # type: ignore[method-assign]
        RandomIdGenerator.generate_trace_id = _trace_id  # type: ignore[method-assign]


def install() -> None:
    """Wrap the entropy sources (the first run starts)."""
    global _installed  # noqa: PLW0603 - one set of patches per process

    with _lock:
        if _installed:
            return
        _installed = True
        os.urandom = _urandom
        random._urandom = _sysrandom  # type: ignore[attr-defined]
        random.Random.seed = _seed  # type: ignore[method-assign]
        # random.seed is a method bound at import time to the original; rebind it to the wrapper.
        random.seed = random._inst.seed
    from agenttrace._capture.record import set_call_started

    set_call_started(call_started)


def uninstall() -> None:
    """Restore the entropy sources exactly (the last run ended)."""
    global _installed  # noqa: PLW0603 - one set of patches per process

    with _lock:
        if not _installed:
            return
        _installed = False
        os.urandom = _real_urandom
        random._urandom = _real_random_urandom  # type: ignore[attr-defined]
        random.Random.seed = _real_seed  # type: ignore[method-assign]
        random.seed = _real_module_seed
    from agenttrace._capture.record import set_call_started

    set_call_started(None)


def _state_bytes() -> bytes:
    version, internal, gauss = random.getstate()
    gauss_bytes = b"\0" * 9 if gauss is None else b"\1" + struct.pack(">d", gauss)
    return struct.pack(">B625I", version, *internal) + gauss_bytes


def _set_state(value: bytes) -> None:
    version, *internal = struct.unpack(">B625I", value[:2501])
    gauss = None if value[2501] == 0 else struct.unpack(">d", value[2502:2510])[0]
    random.setstate((version, tuple(internal), gauss))


_STATE_SIZE = len(_state_bytes())


def run_started(run: RunState) -> None:
    """Start the run's draw log and capture (or, in replay, restore) the ``random`` state."""
    with _lock:
        _draws[id(run)] = []
        _written[id(run)] = 0
        _pids[id(run)] = os.getpid()
        _active.append(run)
    if not _installed:
        return
    # The global generator's state is recorded rather than reseeded, so an agent that seeded
    # random itself (random.seed(42)) behaves exactly as without AgentTrace.
    current = _state_bytes()
    value = _draw("random.state", _STATE_SIZE, lambda _size: current)
    if value != current:
        _set_state(value)


def call_started(run: RunState, span: Any) -> None:
    """Write the draws ``run`` made since its previous call on ``span``, the call span starting now.

    The random state (draw 0) is written only once it differs from the generator's state now:
    while the agent has not used the global generator it is not worth 2.5 kB, and a later call
    (or the run's end) writes it if that changes.
    """
    try:
        with _lock:
            log = _draws.get(id(run))
            first = _written.get(id(run), 0)
            if log is None or len(log) <= first:
                return
            chunk = log[first:]
            _written[id(run)] = len(log)
            if first == 0 and chunk[0][0] == "random.state":
                if chunk[0][1] == _state_bytes():
                    _state_held.add(id(run))
                    chunk, first = chunk[1:], 1
            elif id(run) in _state_held and log[0][1] != _state_bytes():
                _state_held.discard(id(run))
                _add_event(span, run, log[:1], 0)
            if not chunk:
                return
        _add_event(span, run, chunk, first)
    except Exception as exc:  # noqa: BLE001 - never cost the agent its call's recording
        from agenttrace._core.errors import warn_once

        warn_once("entropy-call", f"could not record the run's random draws on a call span: {exc!r}")


def _add_event(span: Any, run: RunState | None, draws: list[tuple[str, bytes]], first: int) -> None:
    """One ``agenttrace.entropy`` event on ``span``: ``draws``, numbered from ``first``."""
    from agenttrace._capture.record import add_event

    attributes: dict[str, Any] = {
        S.ENTROPY_SOURCES: tuple(source for source, _ in draws),
        S.ENTROPY_VALUES: tuple(base64.b64encode(value).decode("ascii") for _, value in draws),
    }
    if first:
        attributes[S.ENTROPY_FIRST] = first
    if run is not None:  # on a call span: which run, even when the run's own span never gets written
        attributes[S.ENTROPY_RUN_SPAN_ID] = format(run.span.get_span_context().span_id, "016x")
        attributes[S.RUN_NAME] = run.name
    add_event(span, S.EVENT_ENTROPY, attributes)  # its values are built valid: no SDK re-check


def run_ended(run: RunState) -> None:
    """Write the run's draws not yet on a call span as ``agenttrace.entropy`` events on its span (a run end hook)."""
    with _lock:
        log = _draws.pop(id(run), [])
        written = _written.pop(id(run), 0)
        _pids.pop(id(run), None)
        held = id(run) in _state_held
        _state_held.discard(id(run))
        for i, active in enumerate(_active):
            if active is run:  # identity: RunState compares by value
                del _active[i]
                break
    if held and log[0][1] != _state_bytes():
        _add_event(run.span, None, log[:1], 0)  # the random state, changed since a call span skipped it
    if written:
        if len(log) > written:
            _add_event(run.span, None, log[written:], written)
        return
    if log and log[0][0] == "random.state" and log[0][1] == _state_bytes():
        # The run never drew from the global generator: its state is not worth 2.5 kB per run.
        del log[0]
        if log:
            _add_event(run.span, None, log, 1)
        return
    if log:
        _add_event(run.span, None, log, 0)
