"""The replay session: serves recorded calls and entropy, and enforces the governance level.

One session exists per ``init(mode="replay")``; it is built (and the recording validated) while
``init()`` runs, and switched on while runs are active: the replay lookup of
:mod:`agenttrace._capture.record`, the sandbox's leak handler and the entropy server.

Decisions (process-global, under the session lock; contextvars only say which run and step):

* call found: the recorded exchange is served, no I/O;
* call not found, or found but cut at the size limit: ``relaxed`` prints one WARNING naming
  the call and lets the real call through; ``governance`` raises ``ReplayMismatchError``;
* a leak (raw DNS, a socket connect no served call accounts for, entropy the recording cannot
  serve): ``relaxed`` warns, ``governance`` raises ``DeterminismLeakError``.

A governance violation is remembered on the run (``RunState.add_violation``): later calls of
that run fail at once with the same error (so an SDK's retries cost nothing and its wrapper
keeps the violation as ``__cause__``), and the run fails at its end even if the agent's code
caught the error.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from agenttrace._capture.model import Exchange, RequestData
from agenttrace._core.config import Settings
from agenttrace._core.errors import (
    AgentTraceError,
    DeterminismLeakError,
    ReplayMismatchError,
    SocketLeakError,
    say,
    warn_once,
)
from agenttrace._core.scope import RunState, current_scope
from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.RUN_REPLAY_OF
from agenttrace._format.events import event_exchange
from agenttrace._replay import children as _children
from agenttrace._replay import entropy as _entropy
from agenttrace._replay import sandbox as _sandbox
from agenttrace._replay.live import LiveCall, parse_fork_point, parse_live
from agenttrace._replay.matcher import Entry, Matcher, Miss, json_differences

__all__ = ["ReplaySession", "RunStats", "swallowed_violation"]


@dataclass
class RunStats:
    """What one replay run did, for the end-of-run report."""

    run: RunState
    replay_of: str = ""
    recorded_run_span: str = ""
    nested: bool = False
    served: int = 0
    missed: list[str] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)
    entropy_served: int = 0
    entropy_resized: int = 0  # draws served from a recorded draw of another size (the clock split them)
    clock_served: int = 0  # wall-clock readings served from the recording
    halted: BaseException | None = None  # the first governance violation: later calls fail with it
    calls: int = 0  # calls looked up so far: the run's call numbers (#1, #2, ...)
    live: int = 0  # calls that went live (replay_live, or after the replay_live_from point)
    forked: str = ""  # where the run went live (replay_live_from), once it did
    diverged: str = ""  # where the run first left the recording, once it did
    step_starts: dict[str, int] = field(default_factory=dict)


class ReplaySession:
    """Serves one recording to the runs of this process."""

    def __init__(
        self,
        settings: Settings,
        events: Sequence[Mapping[str, Any]],
        source: str,
        exchanges: Sequence[Exchange] | None = None,
    ) -> None:
        """``exchanges``, when given, are the recorded calls in order (already built): call events
        in ``events`` are then not read (they may be absent, see ``_loader.load_recording``)."""
        self.settings = settings
        self.source = source
        self.governance = settings.governance
        self.live = parse_live(settings.replay_live)
        self.fork = parse_fork_point(settings.replay_live_from) if settings.replay_live_from else None
        self._lock = threading.RLock()
        _sessions.add(self)
        calls: list[Exchange] = list(exchanges) if exchanges is not None else []
        self._runs: list[Mapping[str, Any]] = []
        self._entropy: dict[str, deque[tuple[str, bytes]]] = {}
        draws: dict[str, list[tuple[int, str, bytes]]] = {}
        import base64

        for index, event in enumerate(events):
            kind = event.get("kind")
            if kind == "call":
                if exchanges is None:
                    calls.append(event_exchange(event, f"{source}, event #{index}"))
            elif kind == "run":
                self._runs.append(event)
            elif kind == "entropy":
                key = f"{event.get('trace_id', '')}/{event.get('run_span_id', '')}"
                value = base64.b64decode(str(event.get("value", "")))
                number = int(event.get("index", 0))
                draws.setdefault(key, []).append((number, str(event.get("source", "")), value))
        for key, numbered in draws.items():
            # In the order the run drew them: a run's draws are written on its call spans and
            # on its own span, and read in the order of the file's lines.
            numbered.sort(key=lambda draw: draw[0])
            self._entropy[key] = deque((source, value) for _, source, value in numbered)
        self.matcher = Matcher(calls)
        self._first_trace = next((c.trace_id for c in calls if c.trace_id), "")
        self._claimed: set[int] = set()
        self._stats: dict[int, RunStats] = {}  # id(RunState) -> stats
        self._order: list[RunStats] = []  # active runs, oldest first
        self._run_entropy: dict[int, deque[tuple[str, bytes]]] = {}
        self._run_clock: dict[int, _Clock] = {}
        self._armed = False

    # --- switched on while runs are active -------------------------------------------------------

    def activate(self) -> None:
        """The first run starts: serve calls and entropy, arm the sandbox."""
        from agenttrace._capture import record as _capture

        _sandbox.install()
        _sandbox.set_handler(self._leak)
        _entropy.set_server(self._serve_entropy)
        _capture.set_replay_lookup(self.lookup)
        _serving[0] = self
        _patch_sdk_retries()

    def deactivate(self) -> None:
        """The last run ended: back to plain behaviour."""
        from agenttrace._capture import record as _capture

        _capture.set_replay_lookup(None)
        if _serving[0] is self:
            _serving[0] = None
        _entropy.set_server(None)
        _sandbox.set_handler(None)
        if self._armed:
            self._armed = False
            _children.disarm()

    def run_started(self, run: RunState) -> None:
        """Map the new run to the recorded run it replays and mark its span as a replay."""
        with self._lock:
            trace_ids = {s.run.trace_id for s in self._order}
            stats = RunStats(run=run, nested=run.trace_id in trace_ids)
            recorded = self._claim(run.name)
            if recorded is not None:
                stats.replay_of = str(recorded.get("trace_id", ""))
                stats.recorded_run_span = str(recorded.get("span_id", ""))
                key = f"{stats.replay_of}/{stats.recorded_run_span}"
                recorded_draws = self._entropy.get(key, ())
                self._run_entropy[id(run)] = deque(d for d in recorded_draws if d[0] != _entropy.CLOCK)
                self._run_clock[id(run)] = _Clock(
                    deque(int.from_bytes(v, "big") for source, v in recorded_draws if source == _entropy.CLOCK)
                )
            else:
                stats.replay_of = self._first_trace
                if not _children.in_child():
                    self._run_entropy[id(run)] = deque()
                # A child process's run the recording holds no run for: its draws were never
                # recorded (nor the child's start-up's), so they are drawn for real, not governed.
            self._stats[id(run)] = stats
            self._order.append(stats)
            arm = not self._armed
            self._armed = True
        if arm:
            try:
                with _entropy.exempt():  # the channel's temporary name is AgentTrace's draw
                    _children.arm(self.settings, run.name)
            except Exception as exc:  # noqa: BLE001 - the parent's replay goes on; children then fail closed
                warn_once("replay-children", f"could not pass the replay on to child processes: {exc!r}")
        if stats.replay_of:
            run.span.set_attribute(S.RUN_REPLAY_OF, stats.replay_of)

    def _claim(self, name: str) -> Mapping[str, Any] | None:
        # The n-th run started replays the n-th recorded run (by start time), preferring the
        # next one with the same name; a recording without run events serves runs anyway. A
        # child process's run replays a recorded run of its own name only: the others are its
        # parent's (their entropy draws are not the child's).
        # A pool worker's run claims none: which worker ran which task is the scheduler's
        # choice, so a worker's draws cannot be matched to a recorded worker's (they are drawn
        # for real, not governed; its calls are served all the same). Nor do other runs fall
        # back on the runs of child processes.
        if _children.in_child() and name.endswith(_children.CHILD_RUN_SUFFIXES[0]):
            return None
        fallback = None if not _children.in_child() else -1
        for index, event in enumerate(self._runs):
            if index in self._claimed:
                continue
            if event.get("name") == name:
                self._claimed.add(index)
                return event
            if fallback is None and not str(event.get("name", "")).endswith(_children.CHILD_RUN_SUFFIXES):
                fallback = index
        if fallback is not None and fallback >= 0:
            self._claimed.add(fallback)
            return self._runs[fallback]
        return None

    def run_ended(self, run: RunState) -> RunStats | None:
        """Forget the run; its stats go to the report."""
        with self._lock:
            stats = self._stats.pop(id(run), None)
            self._run_entropy.pop(id(run), None)
            self._run_clock.pop(id(run), None)
            self._order = [s for s in self._order if s.run is not run]
        return stats

    def _current(self, scope: Any = None) -> RunStats | None:
        if scope is None:
            scope = current_scope()
        with self._lock:
            if scope is not None and scope.run is not None:
                stats = self._stats.get(id(scope.run))
                if stats is not None:
                    return stats
            # A thread without context (an executor): the run that started last.
            return self._order[-1] if self._order else None

    # --- calls ------------------------------------------------------------------------------------

    def lookup(self, request: RequestData, library: str) -> Exchange | LiveCall | None:
        """The recorded exchange for ``request``; None lets the real call through (relaxed); a
        :class:`LiveCall` lets it through because the settings open the door to it."""
        scope = current_scope()
        stats = self._current(scope)
        if stats is not None and stats.halted is not None:
            raise stats.halted  # the run already failed governance: no waiting, no new lookups
        number = 0
        if stats is not None:
            with self._lock:
                stats.calls += 1
                number = stats.calls
            fork = self.fork
            if fork is not None and fork.call is not None and not stats.forked and number >= fork.call:
                self._go_live(stats, fork.describe())
        step_path = scope.step_path if scope is not None else ()
        found = self.matcher.match(request, step_path)
        if (stats is not None and stats.forked) or (self.live and self.live.matches(request)):
            return self._live(stats, request, library, found, number)
        if isinstance(found, Entry):
            exchange = found.exchange
            response = exchange.response
            if response is not None and response.body.truncated:
                self._miss(
                    stats,
                    request,
                    library,
                    f"the recorded response to this call was cut at {len(response.body.data)} of "
                    f"{response.body.size} bytes (max_body_bytes) and cannot be served as if whole; "
                    "record again with a larger AGENTTRACE_MAX_BODY_BYTES",
                )
                return None
            if exchange.extra.get("response_body_filtered"):
                warn_once(
                    f"replay-filtered:{exchange.span_id}",
                    f"serving the recorded response to {request.method} {request.url} with the fields a "
                    "filter removed (the recording never held them)",
                )
            if stats is not None:
                with self._lock:
                    stats.served += 1
            if _children.in_child():
                _children.tell("served", f"{exchange.trace_id}/{exchange.span_id}")
            return exchange
        self._miss(stats, request, library, "not in the recording\n" + found.describe(), number)
        return None

    # --- replay with one thing changed (docs/replay.md) -------------------------------------------

    def _live(
        self, stats: RunStats | None, request: RequestData, library: str, found: Entry | Miss, number: int
    ) -> LiveCall:
        """Let ``request`` go live; the recorded call at its place (if any) is what its answer is compared with."""
        recorded = found.exchange if isinstance(found, Entry) else None
        label = f"{library} call #{number} {request.method} {request.url}"
        if recorded is None:
            # A request the recording lacks (the agent asks otherwise after an earlier live
            # answer): it takes the place of the recorded call at its position, if any.
            miss: Miss = found  # type: ignore[assignment]  # not an Entry
            stand_in = self.matcher.take_place_of(miss)
            recorded = stand_in  # its answer is what the live one is compared with
            differences = [line for line in miss.differences if not _volatile_answer_field(line)]
            if stats is not None and (stand_in is None or differences):
                # A request differing only in ids a live answer gave (a tool call's id) is the same request.
                why = "is not in the recording"
                if stand_in is not None:
                    why = "differs from the recorded request at its place: " + "; ".join(differences[:2])
                self._diverged(stats, f"{label} went live and {why}")
            if stand_in is not None and _children.in_child():
                _children.tell("consumed", f"{stand_in.trace_id}/{stand_in.span_id}")
        if stats is not None:
            with self._lock:
                stats.live += 1
        if _children.in_child():
            _children.tell("live", f"{request.method} {request.url}")
            if recorded is not None:
                _children.tell("consumed", f"{recorded.trace_id}/{recorded.span_id}")  # not unused

        def answered(status: int | None, body: bytes, error: str | None, headers: Sequence[tuple[str, str]]) -> None:
            if stats is None or recorded is None:
                return
            why = _answer_difference(recorded, status, body, error, headers)
            if why:
                self._diverged(stats, f"{label} went live and its answer differs from the recording: {why}")

        return LiveCall(recorded, answered)

    def _go_live(self, stats: RunStats, where: str) -> None:
        """From here on the run is not served: every call goes live, entropy is drawn for real (relaxed)."""
        with self._lock:
            if stats.forked:
                return
            stats.forked = where
            self._run_entropy.pop(id(stats.run), None)
            self._run_clock.pop(id(stats.run), None)
        if self._armed:
            # Child processes started from now on are past the point too: every call of theirs goes live.
            _children.set_child_env("AGENTTRACE_REPLAY_LIVE", "all")
        say(f"replay: run {stats.run.name!r} goes live from {where} (replay_live_from)")

    def _diverged(self, stats: RunStats | None, where: str) -> None:
        if stats is None:
            return
        with self._lock:
            if not stats.diverged:
                stats.diverged = where

    def step_started(self, name: str) -> None:
        """A step starts: the run goes live if this is the ``replay_live_from`` step's start."""
        fork = self.fork
        stats = self._current()
        if fork is None or fork.step != name or stats is None or stats.forked:
            return
        with self._lock:
            count = stats.step_starts[name] = stats.step_starts.get(name, 0) + 1
        if count == fork.occurrence:
            self._go_live(stats, fork.describe())

    def _miss(self, stats: RunStats | None, request: RequestData, library: str, why: str, number: int = 0) -> None:
        label = f"{request.method} {request.url}"
        if stats is not None:
            self._diverged(stats, f"{library} call #{number} {label} is not in the recording")
            with self._lock:
                stats.missed.append(label)
        if _children.in_child():
            _children.tell("missed", label)
        if self.governance:
            error = ReplayMismatchError(f"governance replay: {library} call {label} {why}")
            self._violation(stats, error)
            raise error
        say(f"WARNING: replay: {library} call {label} {why.splitlines()[0]}; making the real call (relaxed)")
        host = urlsplit(request.url).hostname
        if host:
            _sandbox.allow_host(host, urlsplit(request.url).port)

    def frame_diverged(self, library: str, label: str, why: str) -> ReplayMismatchError | None:
        """A frame a served WebSocket connection sent differs from the recording: in governance the
        run's violation, returned for the adapter to raise; relaxed warns and returns None."""
        stats = self._current()
        self._diverged(stats, f"{library} connection {label}: {why.splitlines()[0]}")
        if self.governance:
            error = ReplayMismatchError(f"governance replay: {library} connection {label}: {why}")
            self._violation(stats, error)
            return error
        say(
            f"WARNING: replay: {library} connection {label}: {why.splitlines()[0]}; "
            "the recorded frames are served on (relaxed)"
        )
        return None

    def _violation(self, stats: RunStats | None, error: AgentTraceError) -> None:
        if _children.in_child():
            _children.tell("violation", f"{type(error).__name__}\t{error}")
        with self._lock:
            targets = [stats] if stats is not None else list(self._order)
            for target in targets:
                target.run.add_violation(error)
                if target.halted is None:
                    target.halted = error

    # --- leaks (sandbox) and entropy ------------------------------------------------------------

    def _leak(self, event: str, description: str) -> None:
        stats = self._current()
        if stats is not None and stats.halted is not None and self.governance:
            raise stats.halted
        if stats is not None:
            with self._lock:
                stats.leaks.append(description)
        if _children.in_child():
            _children.tell("leak", description)
        if self.governance and not (stats is not None and stats.forked):
            # A raw connect or datagram is also a network call the recording lacks (the SDK
            # reference's ReplayMismatchError); DNS and the rest are leaks only.
            kind = SocketLeakError if event in _sandbox.SOCKET_EVENTS else DeterminismLeakError
            error = kind(
                f"governance replay: the agent attempted {description} ({event}) outside any recorded "
                "call; raw network access is not part of the recording. Route it through an "
                "instrumented client (httpx, requests, urllib3) or replay with governance_level='relaxed'"
            )
            self._violation(stats, error)
            raise error
        warn_once(
            f"replay-leak:{description}",
            f"replay: the agent attempted {description} outside any recorded call; allowed (relaxed)",
        )

    def _serve_entropy(self, run: RunState, source: str, size: int) -> bytes | None:
        if source == _entropy.CLOCK:
            return self._serve_clock(run)
        with self._lock:
            queue = self._run_entropy.get(id(run))
            stats = self._stats.get(id(run))
            if queue is None or stats is None or stats.forked:
                return None
            if queue and queue[0][0] == source:
                recorded_value = queue[0][1]
                if len(recorded_value) == size:
                    stats.entropy_served += 1
                    return queue.popleft()[1]
                if source in _RESIZABLE:
                    # Same source, another size: a clock-based id (uuid7 draws 10 bytes in a new
                    # millisecond, 4 in the same one) whose readings fell otherwise. Served from
                    # the recorded draw, so the sequence stays aligned and the replay deterministic.
                    queue.popleft()
                    stats.entropy_served += 1
                    stats.entropy_resized += 1
                    return _resized(recorded_value, size)
            recorded = (
                f"the next recorded draw is {queue[0][0]}({len(queue[0][1])} bytes)" if queue else "no draws are left"
            )
            number = stats.entropy_served + 1
        if source == "random.state":
            # No state recorded: the recorded run never drew from the global generator (its state
            # is only kept when it changed), so there is nothing to restore.
            return None
        description = f"entropy {source}({size} bytes), draw #{number} of run {run.name!r}, but {recorded}"
        with self._lock:
            stats.leaks.append(description)
        if _children.in_child():
            _children.tell("leak", description)
        if self.governance:
            if stats.halted is not None:
                raise stats.halted
            error = DeterminismLeakError(
                f"governance replay: the agent drew {description}; the recording cannot serve it "
                "(did the code change what it draws, or was it recorded without AgentTrace?)"
            )
            self._violation(stats, error)
            raise error
        warn_once(
            f"replay-entropy:{id(run)}", f"replay: the agent drew {description}; using a fresh random value (relaxed)"
        )
        return None

    def _serve_clock(self, run: RunState) -> bytes | None:
        """The run's next wall-clock reading: the recorded one, then the last one advanced by real time."""
        with self._lock:
            clock = self._run_clock.get(id(run))
            stats = self._stats.get(id(run))
            if clock is None or stats is None or stats.forked:
                return None
            now = time.monotonic_ns()
            if clock.readings:
                value = clock.readings.popleft()
                stats.clock_served += 1
            elif clock.last is None:
                return None  # the recorded run never read the clock: the real one
            else:
                value = clock.last + max(0, now - clock.at)
            clock.last, clock.at = value, now
            return value.to_bytes(8, "big")


@dataclass
class _Clock:
    """A replay run's wall clock: the recorded readings left, and the last one served (and when, monotonic)."""

    readings: deque[int]
    last: int | None = None
    at: int = 0


# Forked workers serve their own calls from their copy of the session: another thread of the parent
# may have held its lock at the fork (serving a clock reading, say), so the worker's copy gets a new one.
_sessions: weakref.WeakSet[ReplaySession] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for session in list(_sessions):
        session._lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

# Sources whose draws may be served at another size than recorded (see ReplaySession._serve_entropy).
_RESIZABLE = frozenset({"urandom", "sysrandom"})


def _resized(value: bytes, size: int) -> bytes:
    """``size`` bytes derived from ``value`` alone: its first bytes, extended by hashing it when too short."""
    out = value[:size]
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(value + counter.to_bytes(4, "big")).digest()
        counter += 1
    return out[:size]


def swallowed_violation(run: RunState) -> AgentTraceError | None:
    """The error to end a run with whose governance violations the agent's code caught."""
    if not run.violations:
        return None
    first = run.violations[0]
    if len(run.violations) == 1 and first.__traceback__ is None and isinstance(first, AgentTraceError):
        return first  # found at run end (unused calls), never raised: it is its own report
    cls = type(first) if isinstance(first, AgentTraceError) else ReplayMismatchError
    count = len(run.violations)
    error = cls(
        f"governance replay: {count} violation(s) happened during run {run.name!r} and were caught by "
        f"the agent's code; the first: {first}"
    )
    error.__cause__ = first
    return error


# The session serving while runs are active (set by activate, cleared by deactivate).
_serving: list[ReplaySession | None] = [None]


_sdk_patched = False


def _patch_sdk_retries() -> None:
    """Make the openai/anthropic SDKs' retry waits zero while replaying (the delays are not I/O)."""
    global _sdk_patched  # noqa: PLW0603 - patched once per process; the wrapper checks the mode
    if _sdk_patched:
        return
    _sdk_patched = True
    import wrapt

    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        # The original still runs: its jitter draws from random, as it did when recorded.
        delay = wrapped(*args, **kwargs)
        session = _serving[0]
        if session is not None and session.settings.replay_pacing == "instant":
            return 0.0
        return delay

    for module in ("openai._base_client", "anthropic._base_client"):
        wrapt.register_post_import_hook(
            lambda mod: wrapt.wrap_function_wrapper(mod, "BaseClient._calculate_retry_timeout", wrapper), module
        )


def _answer_difference(
    recorded: Exchange, status: int | None, body: bytes, error: str | None, headers: Sequence[tuple[str, str]]
) -> str:
    """How a live answer differs from the recorded one ("" when it does not): status, error, JSON paths, bytes.

    Bodies are compared as the agent reads them: decoded (gzip, ...), and a stream of server-sent
    events as its list of ``data:`` JSON values; fields that differ on every call (ids, times,
    token counts) are left out.
    """
    response = recorded.response
    if response is None:
        recorded_error = recorded.error.type if recorded.error is not None else "nothing"
        if error is not None and error == recorded_error:
            return ""
        return f"recorded {recorded_error}, live {error or status}"
    if status is None:
        return f"recorded status {response.status_code}, live {error or 'no response'}"
    if status != response.status_code:
        return f"status: recorded {response.status_code}, live {status}"
    if body == response.body.data:
        return ""
    from agenttrace._capture.payload import decoded_body

    was, now = decoded_body(response.body.data, response.headers), decoded_body(body, headers)
    try:
        lines = json_differences(_answer_value(was), _answer_value(now), ("recorded", "live"))
    except ValueError:
        return "" if was == now else f"the body differs ({len(was)} bytes recorded, {len(now)} live)"
    paths = [line for line in lines if not _volatile_answer_field(line)]
    return "; ".join(paths[:3]) + (f" (and {len(paths) - 3} more)" if len(paths) > 3 else "") if paths else ""


def _answer_value(data: bytes) -> Any:
    """A body as data: its JSON, or a stream of events as the list of its ``data:`` values; ValueError otherwise."""
    import json

    text = data.decode("utf-8")
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        return json.loads(text)
    events = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
    if not events:
        raise ValueError("neither JSON nor server-sent events")
    values: list[Any] = []
    for event in events:
        try:
            values.append(json.loads(event))
        except ValueError:
            values.append(event)  # "[DONE]" and other plain text
    return values


# Fields of a model's answer that differ on every call whatever it says: its id, its time, the
# serving system, the token counts, the ids it gives tool calls (which the next request repeats,
# as tool_call_id). A live answer, or the request after it, differing only there is the same.
_VOLATILE_ANSWER_KEYS = frozenset({"id", "tool_call_id", "created", "created_at", "system_fingerprint", "usage"})
_ANSWER_PATH = re.compile(r"^body (\$\S*):")


def _volatile_answer_field(line: str) -> bool:
    found = _ANSWER_PATH.match(line)
    if found is None:
        return False
    keys = re.findall(r"\.([A-Za-z_][\w-]*)", found.group(1))
    return bool(keys) and (keys[-1] in _VOLATILE_ANSWER_KEYS or "usage" in keys)
