"""Export wiring: which exporters a process uses, and the lanes that feed them without blocking.

On every ``init()`` (through ``runtime.on_configure``) this module decides the export targets:

* the AgentTrace backend, when an API key is set and ``backend`` is on (record mode);
* the exporters named by ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``, any entry point),
  configured by the standard ``OTEL_EXPORTER_OTLP_*`` variables, but only when AgentTrace
  created the tracer provider: a provider the user built is theirs, with their exporters, and
  AgentTrace only adds its backend next to them.

Each exporter gets an :class:`ExportLane`: ``on_end`` appends the span to a queue and returns
(no I/O, no encoding on the agent's thread); a daemon thread named ``agenttrace-export-*``
sends batches with OpenTelemetry's suppress-instrumentation flag set, so the exporter's own HTTP
traffic is never recorded. What cannot be delivered goes to the spool.

At process exit (``exit_upload``):

* ``"background"`` (the default): nothing waits on the network. Whatever is still queued or in
  flight is written to the spool at once, and when a lane's spool then holds something to send,
  the process starts one detached uploader (``python -I -c ...`` calling
  :func:`agenttrace._cli.upload.run_detached`) that sends those folders after the process is gone.
  A multiprocessing worker spools but starts nothing: its files are its parent's to hand off.
* ``"wait"``: the lanes get ``exit_timeout`` seconds in total; whatever is still queued or in
  flight then is spooled and the process goes on exiting. Also used where an uploader cannot
  be started (a frozen or embedded interpreter, the uploader itself, a container's PID 1,
  whose children die with it).

Nothing heavy is imported here: the OTLP exporter is loaded only when a target needs it.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from agenttrace._core.warn import warn_once
from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.KIND

if TYPE_CHECKING:
    from agenttrace.exporters.spool import Delivery, Spool

    from agenttrace._core.config import Settings

__all__ = [
    "ExportHub",
    "ExportLane",
    "exporting",
    "handed_off_to",
    "is_exporter_thread",
    "lane_for",
    "register",
    "shutdown_all",
]

_MAX_BATCH = 512
# Spans held in memory per lane before the oldest are moved to the spool. Large enough that a
# healthy lane never reaches it; a dead backend makes the lane spool batches directly instead.
_MAX_QUEUE = 8192
# After a failed export, batches go straight to the spool for this long before the next try,
# so a dead backend costs one timeout, not one per batch.
_COOLDOWN_FIRST = 2.0
_COOLDOWN_MAX = 60.0
# Seconds a lane holds spans before sending a partial batch: OpenTelemetry's BatchSpanProcessor
# default (OTEL_BSP_SCHEDULE_DELAY, in milliseconds, is honoured). A full batch, force_flush(), a
# worker's run end and process exit send at once. A short agent therefore sends nothing while it
# runs and nothing is in flight when it exits: exit hands the spans off without a duplicate.
_SCHEDULE_DELAY_DEFAULT_MS = 5000


def _schedule_delay() -> float:
    text = os.environ.get("OTEL_BSP_SCHEDULE_DELAY", "").strip()
    if text:
        try:
            value = float(text)
        except ValueError:
            warn_once(
                "bsp-delay",
                f"OTEL_BSP_SCHEDULE_DELAY={text!r} is not a number of milliseconds; using {_SCHEDULE_DELAY_DEFAULT_MS}",
            )
        else:
            if value >= 0:
                return value / 1000
    return _SCHEDULE_DELAY_DEFAULT_MS / 1000


_marker = threading.local()


@contextlib.contextmanager
def exporting() -> Iterator[None]:
    """Mark the current thread as doing export work while the block runs."""
    depth = getattr(_marker, "depth", 0)
    _marker.depth = depth + 1
    try:
        yield
    finally:
        _marker.depth = depth


def is_exporter_thread() -> bool:
    """True on AgentTrace's export threads and while an AgentTrace exporter sends on any thread.

    The replay sandbox uses it to exempt the exporter's own traffic from leak detection.
    """
    return bool(getattr(threading.current_thread(), "_agenttrace_exporter", False) or getattr(_marker, "depth", 0))


def _suppressed() -> object:
    return otel_context.attach(otel_context.set_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY, True))


# -- one lane per exporter ---------------------------------------------------------------------

_LANES: weakref.WeakSet[ExportLane] = weakref.WeakSet()


class ExportLane(SpanProcessor):
    """A span processor that never blocks: a queue, a thread, the spool for what fails.

    Unlike the SDK's ``BatchSpanProcessor`` it drops nothing when its queue fills (the overflow
    goes to the spool), stops trying a dead receiver for a while instead of timing out on every
    batch, and bounds the wait at exit, spooling what is left.
    """

    def __init__(self, exporter: SpanExporter, *, name: str | None = None, spool: Spool | None = None) -> None:
        self.exporter = exporter
        self.name: str = str(name or getattr(exporter, "target", type(exporter).__name__))
        self._spool = spool if spool is not None else getattr(exporter, "spool", None)
        self._init_state()
        _LANES.add(self)
        if self._spool is not None and self._spool.pending() and getattr(exporter, "deliver_serialized", None):
            with self._lock:
                self._start_thread()  # send what earlier runs left, while this one works

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: deque[ReadableSpan] = deque()
        self._inflight: list[ReadableSpan] | None = None
        self._abandoned = False  # the exit bound passed: the in-flight batch was spooled by shutdown
        self._closed = False
        self._thread: threading.Thread | None = None
        self._cooldown_until = 0.0
        self._cooldown = _COOLDOWN_FIRST
        self._last_failed = False  # the last send or spool drain failed, and none succeeded since
        self._backlog = True  # the spool may hold batches of earlier runs: send them when idle
        self._draining = False
        self._deadline = float("inf")  # set by close(): the exit bound
        self._first_at = 0.0  # when the oldest queued span arrived
        self._flush_now = False  # force_flush()/settle(): send what is queued without waiting
        self._delay = _schedule_delay()

    # -- SpanProcessor --

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        """Nothing to do until a span ends."""

    def on_end(self, span: ReadableSpan) -> None:
        """Queue ``span`` for export and return at once."""
        ctx = span.context
        if ctx is None or not ctx.trace_flags.sampled:
            return
        overflow: list[ReadableSpan] = []
        with self._lock:
            if self._closed:
                overflow.append(span)
            else:
                if not self._queue:
                    self._first_at = time.monotonic()
                self._queue.append(span)
                if len(self._queue) > _MAX_QUEUE:
                    overflow = [self._queue.popleft() for _ in range(_MAX_BATCH)]
                if self._thread is None:
                    self._start_thread()
                if len(self._queue) >= _MAX_BATCH:
                    self._wake.notify()
        if overflow:
            # Rare (the receiver is slow and the agent very busy, or spans end after exit began):
            # encoded and written here rather than dropped.
            self._keep(overflow, "export queue full" if not self._closed else "span ended after exit began")

    def shutdown(self) -> None:
        """The provider is shutting down (at exit): close every lane of the process, see :func:`shutdown_all`.

        All of them at once, so that one exit starts at most one background uploader.
        """
        shutdown_all()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Wait until everything queued so far was sent or spooled (at most ``timeout_millis``)."""
        deadline = time.monotonic() + timeout_millis / 1000
        with self._lock:
            if self._thread is None and self._queue:
                self._start_thread()
            self._flush_now = True
            self._wake.notify_all()
            while self._queue or self._inflight is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._wake.wait(remaining)
        return True

    # -- lifecycle --

    def close(self, deadline: float, *, exiting: bool = True) -> None:
        """Stop taking spans; wait until ``deadline`` for the queue, then spool the rest.

        ``exiting``: the process ends next, so a spool file its thread is still sending is given
        back for the next reader (at least once) instead of waiting for its dead claim to be noticed.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._deadline = deadline
            self._wake.notify_all()
            failing = None
            while self._busy() and self._thread is not None:
                failing = self._failing(deadline)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or failing is not None:
                    break  # a receiver already failing will not recover in the exit bound
                self._wake.wait(min(remaining, 0.05))
            left = list(self._queue)
            self._queue.clear()
            if self._inflight is not None:
                left = self._inflight + left
                self._abandoned = True
        if left:
            reason = failing or f"no answer within the exit bound of {_exit_timeout():g} s (AGENTTRACE_EXIT_TIMEOUT)"
            self._keep(left, reason)
        if exiting and self._spool is not None:
            self._spool.release_mine()
        if not self._abandoned:
            with contextlib.suppress(Exception):
                self.exporter.shutdown()

    def can_hand_off(self, spawn: bool) -> bool:
        """True when exit may spool this lane's work without waiting.

        It needs a spool and, when an uploader is to be started (``spawn``), an exporter that
        another process can rebuild from the environment to send the files the same way.
        """
        return self._spool is not None and (not spawn or self.uploader_env() is not None)

    def hand_off(self, spawn: bool) -> dict[str, str] | None:
        """Exit without waiting: stop taking spans and spool at once what is queued or in flight.

        Nothing is said unless the receiver is known to be failing (then the usual warning): the
        spans are not lost, only not sent yet. Returns the variables the background uploader
        needs for this lane when ``spawn`` and the lane's spool holds something to send (what
        was just spooled, a backlog it was sending, files its workers left), else None.
        """
        spool = self._spool
        if spool is None:
            return None
        with self._lock:
            if self._closed:
                return None
            self._closed = True
            self._deadline = time.monotonic()  # a spool drain in progress stops after its current file
            self._wake.notify_all()
            left = list(self._queue)
            self._queue.clear()
            if self._inflight is not None:
                left = self._inflight + left
                self._abandoned = True  # if its answer still comes, the thread does not spool it again
            busy = self._abandoned or self._draining
            failing = self._failing(time.monotonic()) if self._thread is not None else None
            troubled = failing is not None or self._last_failed
        for start in range(0, len(left), _MAX_BATCH):
            self._spool_at_exit(spool, left[start : start + _MAX_BATCH], failing)
        spool.release_mine()  # a spool file the thread is still sending: the uploader's now
        if not busy:
            with contextlib.suppress(Exception):
                self.exporter.shutdown()  # (not under a send in progress: it would fail and warn)
        if spawn and (left or (not troubled and spool.pending())):
            return self.uploader_env()
        return None

    def uploader_env(self) -> dict[str, str] | None:
        """Variables with which another process sends this lane's spool files as this lane would.

        None when it cannot (an exporter built with arguments the environment does not hold).
        """
        if self._spool is None or getattr(self.exporter, "deliver_serialized", None) is None:
            return None
        describe: Callable[[], dict[str, str] | None] | None = getattr(self.exporter, "uploader_env", None)
        if describe is not None:
            return describe()
        if self._spool.target == "otlp_grpc":
            return {}  # OpenTelemetry's gRPC exporter, made from the OTEL_EXPORTER_OTLP_* variables
        return None

    def destination(self) -> str:
        """Where this lane sends, for messages."""
        return str(getattr(self.exporter, "destination", self.name))

    def _busy(self) -> bool:
        return bool(self._queue) or self._inflight is not None or self._draining or self._backlog_due()

    def settle(self, deadline: float) -> None:
        """Wait until what is queued was sent; spool it if the receiver fails or ``deadline`` passes.

        For multiprocessing workers at the end of each run: a pool's workers are usually ended
        by ``terminate()`` (SIGTERM), with no exit hook at all, so their spans must leave at run end.
        """
        failing = None
        with self._lock:
            if self._thread is None:
                return
            self._flush_now = True
            self._wake.notify_all()
            while self._queue or self._inflight is not None:
                failing = self._failing(deadline)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or failing is not None:
                    break
                self._wake.wait(min(remaining, 0.05))
            left = list(self._queue)
            self._queue.clear()
        if left:
            self._keep(left, failing or f"no answer within {_exit_timeout():g} s (AGENTTRACE_EXIT_TIMEOUT)")

    def _failing(self, deadline: float) -> str | None:
        """Why the lane's receiver is known to be failing right now, if it is."""
        if time.monotonic() < self._cooldown_until:
            return "the receiver failed earlier in this process"
        if "agenttrace.exporters.backend" in sys.modules and self._thread is not None and self._thread.ident:
            from agenttrace.exporters.backend import retrying

            waiting = retrying(self._thread.ident)
            if waiting is not None and waiting[1] >= deadline:
                return waiting[0]  # its next try falls after the exit bound
        return None

    def _start_thread(self) -> None:
        thread = threading.Thread(target=self._run, name=f"agenttrace-export-{self.name}", daemon=True)
        thread._agenttrace_exporter = True  # type: ignore[attr-defined]  # read by is_exporter_thread()
        self._thread = thread
        thread.start()

    def _after_fork_in_child(self) -> None:
        # The parent exports what it had queued; the child starts empty, with its own lock,
        # thread and HTTP connections (a socket shared with the parent would mix the streams).
        self._init_state()
        self._backlog = False
        if self._spool is not None:
            self._spool.after_fork_in_child()
        clone = getattr(self.exporter, "clone", None)
        if clone is not None:
            with contextlib.suppress(Exception):
                self.exporter = clone()

    # -- the export thread --

    def _run(self) -> None:
        _suppressed()  # this thread's context: everything it does is export traffic
        while True:
            with self._lock:
                while not self._queue and not self._closed and not self._backlog_due():
                    self._flush_now = False
                    self._wake.wait()
                while self._queue and not self._closed and not self._flush_now and len(self._queue) < _MAX_BATCH:
                    remaining = self._first_at + self._delay - time.monotonic()
                    if remaining <= 0:
                        break
                    self._wake.wait(remaining)  # more spans, a flush or exit may come first
                batch: list[ReadableSpan] = []
                if self._queue:
                    batch = [self._queue.popleft() for _ in range(min(_MAX_BATCH, len(self._queue)))]
                    self._inflight = batch
                    self._first_at = time.monotonic()
                    if not self._queue:
                        self._flush_now = False
                elif self._backlog_due() and time.monotonic() < self._deadline:
                    self._draining = True
                elif self._closed:
                    self._backlog = False
                    self._wake.notify_all()
                    return
                else:
                    continue
            if not batch:
                try:
                    self._send_backlog()
                finally:
                    with self._lock:
                        self._draining = False
                        self._wake.notify_all()
                continue
            self._send(batch)
            with self._lock:
                self._inflight = None
                self._wake.notify_all()

    def _backlog_due(self) -> bool:
        return self._backlog and self._spool is not None and time.monotonic() >= self._cooldown_until

    def _send(self, batch: list[ReadableSpan]) -> None:
        if time.monotonic() < self._cooldown_until:
            self._keep_unless_abandoned(batch, None)
            return
        deliver: Callable[[Sequence[ReadableSpan]], Delivery] | None = getattr(self.exporter, "deliver", None)
        try:
            with exporting():
                if deliver is not None:
                    outcome = deliver(batch)
                    ok = outcome.ok
                else:
                    ok = self.exporter.export(batch) is SpanExportResult.SUCCESS
                    outcome = None
        except Exception as exc:  # noqa: BLE001 - an exporter bug must not kill the lane
            self._failed()
            self._keep_unless_abandoned(batch, repr(exc))
            return
        if ok:
            if self._cooldown_until:
                self._backlog = True  # the receiver is back: send what was spooled meanwhile
            self._cooldown_until = 0.0
            self._cooldown = _COOLDOWN_FIRST
            self._last_failed = False
            return
        self._failed()
        if outcome is not None:
            with self._lock:
                abandoned = self._abandoned
            if not abandoned:
                self.exporter.keep_outcome(outcome)  # type: ignore[attr-defined]
        else:
            self._keep_unless_abandoned(batch, "the exporter reported a failure")

    def _failed(self) -> None:
        self._last_failed = True
        self._cooldown_until = time.monotonic() + self._cooldown
        self._cooldown = min(self._cooldown * 2, _COOLDOWN_MAX)

    def _send_backlog(self) -> None:
        from agenttrace.exporters.spool import drain

        spool = self._spool
        send = getattr(self.exporter, "deliver_serialized", None)
        self._backlog = False
        if spool is None or send is None:
            return
        with exporting():
            outcome = drain(spool, send, stop=lambda: bool(self._queue) or time.monotonic() >= self._deadline)
        if outcome.reason is not None and not outcome.delivered:
            self._failed()
        elif outcome.delivered:
            self._last_failed = False
        if outcome.reason is not None or outcome.rejected:
            from agenttrace.exporters.spool import report_failure

            report_failure(self.destination(), outcome, spool)

    def _keep_unless_abandoned(self, batch: list[ReadableSpan], reason: str | None) -> None:
        with self._lock:
            if self._abandoned:
                return
        self._keep(batch, reason)

    def _spool_at_exit(self, spool: Spool, spans: list[ReadableSpan], failing: str | None) -> None:
        """Write ``spans`` to the spool as OTLP JSON; warn only if the receiver fails or the spool cannot keep them.

        OTLP JSON, not protobuf: on the exiting agent's thread it costs about a third of the
        OTLP protobuf encoder (readers convert it before sending, see ``_spool.request_bytes``).
        """
        from agenttrace.exporters.spool import Delivery, report_failure

        from agenttrace._format.otlp_json import traces_data_line

        try:
            data = traces_data_line(spans).encode("utf-8")
            stored = spool.put(data, len(spans), kind="json")
        except Exception as exc:  # noqa: BLE001 - the spool itself failed: say it, never raise
            warn_once(f"export-keep:{self.name}", f"could not keep {len(spans)} undelivered spans: {exc!r}")
            return
        if failing is not None or not stored:
            outcome = Delivery(kept=[(data, len(spans))], reason=failing or "not delivered before exit")
            report_failure(self.destination(), outcome, spool, stored)

    def _keep(self, spans: list[ReadableSpan], reason: str | None) -> None:
        keep = getattr(self.exporter, "keep", None)
        try:
            if keep is not None:
                keep(spans, reason or "the receiver is failing; retried later")
                return
            if self._spool is not None:
                from agenttrace.exporters.spool import Delivery, report_failure
                from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

                data = encode_spans(spans).SerializeToString()
                stored = self._spool.put(data, len(spans))
                report_failure(self.name, Delivery(kept=[(data, len(spans))], reason=reason), self._spool, stored)
                return
        except Exception as exc:  # noqa: BLE001 - the spool itself failed: say it, never raise
            warn_once(f"export-keep:{self.name}", f"could not keep {len(spans)} undelivered spans: {exc!r}")
            return
        warn_once(
            f"export:{self.name}",
            f"could not send traces with the {self.name} exporter ({reason}); {len(spans)} spans were dropped",
        )


BACKEND_TARGET = "agenttrace"  # the backend's spool folder (AgentTraceSpanExporter.target)


def backend_destination(api_url: str) -> str:
    """How messages name the AgentTrace backend at ``api_url``."""
    return f"the AgentTrace backend at {api_url}/v1/traces"


def backend_uploader_env(api_key: str, api_url: str, timeout: float) -> dict[str, str]:
    """The variables with which the background uploader sends to that backend (never a command line)."""
    return {
        "AGENTTRACE_API_KEY": api_key,
        "AGENTTRACE_API_URL": api_url,
        "AGENTTRACE_EXPORT_TIMEOUT": repr(float(timeout)),
    }


class DeferredExporter(SpanExporter):
    """Stands for the backend exporter until its lane first needs it.

    Building ``AgentTraceSpanExporter`` imports OpenTelemetry's OTLP/HTTP exporter, protobuf and
    ``requests``: about 0.15 s, which a short agent paid in ``init()`` only to hand its spans to
    the background uploader at exit. The lane builds it on its own thread when it first sends;
    what exit needs (the spool, the destination's name, the uploader's variables) is known
    without it.
    """

    def __init__(
        self,
        build: Callable[[], SpanExporter],
        *,
        target: str,
        spool: Spool,
        destination: str,
        uploader_env: dict[str, str] | None,
    ) -> None:
        self._build = build
        self._real: SpanExporter | None = None
        self._real_lock = threading.Lock()
        self.target = target
        self.spool = spool
        self.destination = destination
        self._uploader_env = uploader_env

    def real(self) -> SpanExporter:
        """The exporter, built on first use."""
        with self._real_lock:
            if self._real is None:
                self._real = self._build()
            return self._real

    def __getattr__(self, name: str) -> Any:
        # deliver, deliver_serialized, keep, keep_outcome, ...: the real exporter's.
        if name.startswith("__") or name in ("_build", "_real", "_real_lock"):
            raise AttributeError(name)
        return getattr(self.real(), name)

    def uploader_env(self) -> dict[str, str] | None:
        """The background uploader's variables for this destination."""
        return None if self._uploader_env is None else dict(self._uploader_env)

    def deliver_serialized(self, data: bytes) -> Delivery:
        """Send one spool file through the real exporter (defined here: asking whether it exists builds nothing)."""
        deliver: Callable[[bytes], Delivery] = self.real().deliver_serialized  # type: ignore[attr-defined]
        return deliver(data)

    def clone(self) -> DeferredExporter:
        """Another stand-in with the same settings, for a forked child (nothing built, nothing shared)."""
        return DeferredExporter(
            self._build,
            target=self.target,
            spool=self.spool,
            destination=self.destination,
            uploader_env=self._uploader_env,
        )

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Send through the real exporter."""
        return self.real().export(spans)

    def shutdown(self) -> None:
        """Shut the real exporter down, if it was ever built."""
        with self._real_lock:
            real = self._real
        if real is not None:
            real.shutdown()


def lane_for(exporter: SpanExporter, *args: Any, **kwargs: Any) -> ExportLane:
    """An :class:`ExportLane` for ``exporter``: the SDK configurator's ``export_span_processor``.

    OpenTelemetry's own OTLP/HTTP exporter is swapped for AgentTrace's subclass (same variables,
    same retry policy, plus batch splitting and the spool).
    """
    if type(exporter).__module__ == "opentelemetry.exporter.otlp.proto.http.trace_exporter":
        from agenttrace.exporters.backend import SpoolingOTLPSpanExporter

        exporter.shutdown()
        exporter = SpoolingOTLPSpanExporter()
    elif type(exporter).__module__ == "opentelemetry.exporter.otlp.proto.grpc.trace_exporter":
        from agenttrace.exporters.backend import grpc_deliverer

        # The spool's backlog is re-sent through the gRPC exporter's own channel.
        exporter.deliver_serialized = grpc_deliverer(exporter)  # type: ignore[attr-defined]
        return ExportLane(exporter, name="otlp_grpc", spool=_spool_for("otlp_grpc"))
    return ExportLane(exporter)


def _spool_for(target: str) -> Spool:
    from agenttrace.exporters.spool import Spool

    from agenttrace._core.config import resolve_settings

    settings = resolve_settings({})
    return Spool(settings.spool_dir, target, settings.spool_max_bytes)


# -- the processor AgentTrace adds to the provider ------------------------------------------------


class ExportHub(SpanProcessor):
    """Added once to the tracer provider; fans spans out to the current lanes.

    A provider's processors cannot be removed, so ``init()`` changing the targets swaps lanes
    here instead.
    """

    def __init__(self) -> None:
        self.lanes: dict[tuple[Any, ...], ExportLane] = {}

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        """Nothing to do until a span ends."""

    def on_end(self, span: ReadableSpan) -> None:
        """Hand ``span`` to every lane; in a multiprocessing worker, wait for them at each run's end."""
        lanes = tuple(self.lanes.values())
        for lane in lanes:
            lane.on_end(span)
        if span.attributes and span.attributes.get(S.KIND) == "run" and _in_worker_process():
            deadline = time.monotonic() + _exit_timeout()
            for lane in lanes:
                lane.settle(deadline)

    def set_lanes(self, wanted: dict[tuple[Any, ...], Callable[[], ExportLane]]) -> None:
        """Keep lanes whose key is still wanted, create the new ones, close the others."""
        current = dict(self.lanes)
        new = {key: current.get(key) or make() for key, make in wanted.items()}
        self.lanes = new
        for key, lane in current.items():
            if key not in new:
                lane.close(time.monotonic() + _exit_timeout(), exiting=False)

    def shutdown(self) -> None:
        """Close every lane of this process within the exit bound."""
        shutdown_all()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush every lane."""
        return all(lane.force_flush(timeout_millis) for lane in tuple(self.lanes.values()))


_hub = ExportHub()
_hub_provider: Any = None
_settings: Settings | None = None


def _in_worker_process() -> bool:
    multiprocessing = sys.modules.get("multiprocessing")
    return multiprocessing is not None and multiprocessing.parent_process() is not None


def _exit_timeout() -> float:
    if _settings is not None:
        return _settings.exit_timeout
    return 0.5


# Set in the environment of the background uploader: a process that is the uploader never starts another.
_UPLOADER_ENV = "_AGENTTRACE_UPLOADER"
# Run as `python -I -c _UPLOADER_CODE '<json>'`. -I keeps PYTHONPATH's sitecustomize (agenttrace-instrument,
# opentelemetry-instrument) out, so the uploader is not itself recorded; the parent's sys.path is
# put back in front so it imports the same agenttrace and libraries. Before that (its imports
# are its main cost) it lowers its CPU priority (Windows: a creation flag) and, on POSIX, waits
# until the agent is gone (it is then re-parented), for up to 2 s: started at exit, it would
# otherwise compete with the agent's own interpreter teardown and slow the agent's exit.
_UPLOADER_CODE = """\
import json, os, sys, time
a = json.loads(sys.argv[1])
if hasattr(os, "nice"):
    os.nice(10)
until = time.monotonic() + 2.0
while os.name == "posix" and os.getppid() == a["parent"] and time.monotonic() < until:
    time.sleep(0.01)
sys.path[:0] = [p for p in a["path"] if p not in sys.path]
from agenttrace._cli.upload import run_detached
run_detached(a)
"""
_PYTHONS = ("python", "pypy", "graalpy")

handed_off_to: int | None = None  # pid of the background uploader this process started at exit


def _exit_plan() -> str | None:
    """How exit treats what is not delivered yet.

    ``"spawn"``: spool it at once and start the background uploader. ``"leave"``: spool it at once
    and start nothing (a multiprocessing worker: its parent hands the spool off). None: wait up to
    ``exit_timeout``, then spool (``exit_upload="wait"``, or no uploader can be started here).
    """
    if _settings is not None and _settings.exit_upload == "wait":
        return None
    if _in_worker_process():
        return "leave"
    if os.getpid() == 1 or _uploader_argv() is None:
        return None  # PID 1: a container's main process, whose children are killed with it
    return "spawn"


def _uploader_argv() -> list[str] | None:
    """The uploader's command line without its argument; None where it cannot be started."""
    if os.environ.get(_UPLOADER_ENV) or getattr(sys, "frozen", False):
        return None
    executable = sys.executable
    if not executable or not os.path.basename(executable).lower().startswith(_PYTHONS):
        return None  # an embedding application (uwsgi, ...): its binary is not a Python to run -c with
    return [executable, "-I", "-c", _UPLOADER_CODE]


def shutdown_all() -> None:
    """Close every lane of this process at exit, sharing one exit bound between them.

    With ``exit_upload="background"`` the lanes that can hand off spool their undelivered spans at
    once and one uploader is started for all of them; the others (and every lane in ``"wait"``
    mode) wait for the network until the bound, then spool.
    """
    deadline = time.monotonic() + _exit_timeout()
    plan = _exit_plan()
    spawn = plan == "spawn"
    waiting: list[ExportLane] = []
    jobs: list[tuple[ExportLane, dict[str, str]]] = []
    for lane in list(_LANES):
        if plan is None or not lane.can_hand_off(spawn):
            waiting.append(lane)
            continue
        env = lane.hand_off(spawn)
        if env is not None:
            jobs.append((lane, env))
    if jobs:
        _start_uploader(jobs)
    for lane in waiting:
        lane.close(deadline)
    spool = sys.modules.get("agenttrace.exporters.spool")
    if spool is not None:
        spool.DROPS.report()


def _start_uploader(jobs: list[tuple[ExportLane, dict[str, str]]]) -> None:
    """Start the one detached process that sends the spool folders of ``jobs``; never raises.

    If it cannot start, the data is already in the spool: the usual warning says so.
    """
    global handed_off_to  # noqa: PLW0603 - one uploader per process
    # Only the variables the lanes need: an AGENTTRACE_* value that init() arguments overrode
    # here must not stop the uploader's own settings from resolving.
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTTRACE_")}
    env[_UPLOADER_ENV] = "1"
    folders: list[dict[str, Any]] = []
    started: list[ExportLane] = []
    for lane, extra in jobs:
        spool = lane._spool
        if spool is None or any(env.get(key, value) != value for key, value in extra.items()):
            continue  # another lane needs other values of the same variables: these files wait for the next run
        env.update(extra)
        folder = {"target": spool.target, "spool_dir": os.path.abspath(spool.root), "spool_max_bytes": spool.max_bytes}
        if folder not in folders:
            folders.append(folder)
        started.append(lane)
    if not folders:
        return
    timeout = _settings.export_timeout if _settings is not None else 10.0
    payload = {
        "parent": os.getpid(),
        "path": [p for p in sys.path if isinstance(p, str)],
        "folders": folders,
        "lifetime": max(3 * timeout, 1.0),  # no new file is started after it
        "timeout": timeout,
    }
    argv = _uploader_argv()
    try:
        if argv is None:
            raise RuntimeError("no Python interpreter to run it with")
        handed_off_to = _spawn_detached([*argv, json.dumps(payload)], env)
    except Exception as exc:  # noqa: BLE001 - no fork allowed, exec failed, ...: the spool keeps the data
        from agenttrace.exporters.spool import Delivery, report_failure

        for lane in started:
            reason = f"not delivered before exit, and the background upload could not start: {exc}"
            report_failure(lane.destination(), Delivery(reason=reason), lane._spool)


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


def _configure(settings: Settings) -> None:
    global _hub_provider, _settings  # noqa: PLW0603 - the process's one export setup
    from agenttrace._core.runtime import runtime

    _settings = settings
    provider = runtime.provider
    if provider is None or not hasattr(provider, "add_span_processor"):
        return
    wanted: dict[tuple[Any, ...], Callable[[], ExportLane]] = {}
    if settings.backend and settings.mode == "record":
        _want_backend(settings, wanted)
    if runtime.owns_provider:
        _want_otel_env(wanted)
    if not wanted and not _hub.lanes:
        return  # nothing to export (local files only): no thread, no import
    if _hub_provider is not provider:
        provider.add_span_processor(_hub)
        _hub_provider = provider
    _hub.set_lanes(wanted)


def _want_backend(settings: Settings, wanted: dict[tuple[Any, ...], Callable[[], ExportLane]]) -> None:
    if settings.api_key is None:
        warn_once(
            "backend-no-key",
            "the backend is on (AGENTTRACE_BACKEND) but no API key is set (AGENTTRACE_API_KEY): nothing is sent",
        )
        return
    if "agenttrace.exporters.backend" in sys.modules:
        from agenttrace.exporters.backend import standalone_backend_exporters

        if standalone_backend_exporters():
            return  # OTEL_TRACES_EXPORTER=agenttrace or the user's code already sends to the backend
    key = (
        "agenttrace",
        settings.api_url,
        settings.api_key,
        settings.export_timeout,
        str(settings.spool_dir),
        settings.spool_max_bytes,
    )

    api_key = settings.api_key

    def make() -> ExportLane:
        from agenttrace.exporters.spool import Spool

        spool = Spool(settings.spool_dir, BACKEND_TARGET, settings.spool_max_bytes)

        def build() -> SpanExporter:
            from agenttrace.exporters.backend import AgentTraceSpanExporter

            return AgentTraceSpanExporter(
                api_key, settings.api_url, settings.export_timeout, spool=spool, _managed=True
            )

        return ExportLane(
            DeferredExporter(
                build,
                target=BACKEND_TARGET,
                spool=spool,
                destination=backend_destination(settings.api_url),
                uploader_env=backend_uploader_env(api_key, settings.api_url, settings.export_timeout),
            )
        )

    wanted[key] = make


def _want_otel_env(wanted: dict[tuple[Any, ...], Callable[[], ExportLane]]) -> None:
    names_text = os.environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if not names_text or names_text.lower() == "none":
        return
    # The SDK's own reading of OTEL_TRACES_EXPORTER and OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL,
    # so `otlp` means what it means in OpenTelemetry Python.
    from opentelemetry.sdk._configuration import _get_exporter_names
    from opentelemetry.util._importlib_metadata import entry_points

    env_key = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("OTEL_EXPORTER_OTLP")))
    for name in dict.fromkeys(_get_exporter_names("traces")):
        if name == "agenttrace":
            continue  # the backend lane, already decided by the settings

        def make(name: str = name) -> ExportLane:
            if name == "otlp_proto_http":
                from agenttrace.exporters.backend import SpoolingOTLPSpanExporter

                return ExportLane(SpoolingOTLPSpanExporter())
            found = list(entry_points(group="opentelemetry_traces_exporter", name=name))
            if not found:
                raise RuntimeError(f"OTEL_TRACES_EXPORTER names {name!r}, which no installed package provides")
            return lane_for(found[0].load()())

        wanted[("otel", name, env_key)] = make


def _on_configure(settings: Settings) -> None:
    try:
        _configure(settings)
    except Exception as exc:  # noqa: BLE001 - export set-up must never stop the agent
        warn_once("export-setup", f"could not set up trace export: {exc}; the agent runs unaffected")


# -- process events ------------------------------------------------------------------------------


def _before_fork() -> None:
    for lane in list(_LANES):
        lane._lock.acquire()


def _after_fork_in_parent() -> None:
    for lane in list(_LANES):
        with contextlib.suppress(RuntimeError):
            lane._lock.release()


def _after_fork_in_child() -> None:
    for lane in list(_LANES):
        lane._after_fork_in_child()
    # multiprocessing's fork children end with os._exit(): atexit never runs there, but
    # multiprocessing's own finalizers do. Register ours through its after-fork hook (its
    # finalizer registry is cleared in the child before the hooks run).
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None and _LANES:
        mp_util.register_after_fork(_hub, _install_mp_finalizer)


def _install_mp_finalizer(_: object) -> None:
    import multiprocessing.util

    multiprocessing.util.Finalize(None, shutdown_all, exitpriority=100)


_registered = False


def register() -> None:
    """Attach export to every ``init()`` of this process (called once from ``agenttrace``)."""
    global _registered  # noqa: PLW0603
    if _registered:
        return
    _registered = True
    from agenttrace._core.runtime import runtime

    runtime.on_configure(_on_configure)
    # atexit runs last-registered first: this runs before the provider's own shutdown (and
    # after a zero-code run registered later has ended), within the exit bound either way.
    atexit.register(shutdown_all)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(
            before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
        )


register()
