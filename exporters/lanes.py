"""Export lanes: one per exporter, feeding it without ever blocking the agent.

:class:`ExportLane`'s ``on_end`` appends the span to a queue and returns (no I/O, no encoding on
the agent's thread); a daemon thread named ``agenttrace-export-*`` sends batches with
OpenTelemetry's suppress-instrumentation flag set, so the exporter's own HTTP traffic is never
recorded. What cannot be delivered goes to the spool. At exit every lane of the process is closed
at once (:func:`shutdown_all`), as :mod:`agenttrace.exporters.exit` decides.

Nothing heavy is imported here: the OTLP exporter is loaded only when a lane needs it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from agenttrace.exporters.deferred import BACKEND_TARGET
from agenttrace.exporters.exit import close_lanes, exit_timeout, run_metadata_exported
from agenttrace.exporters.traffic import exporting, mark_exporter_thread, suppress_instrumentation
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from agenttrace._core.errors import warn_once
from agenttrace._format.schema import RUN_DISTRIBUTIONS, RUN_SOURCE

if TYPE_CHECKING:
    from agenttrace.exporters.spool import Delivery, Spool

__all__ = [
    "ExportLane",
    "after_fork_in_child",
    "after_fork_in_parent",
    "before_fork",
    "every_lane",
    "lane_for",
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


# -- the lanes of this process -------------------------------------------------------------------

_LANES: weakref.WeakSet[ExportLane] = weakref.WeakSet()


def every_lane() -> list[ExportLane]:
    """Every lane of this process that is still referenced (closed ones included)."""
    return list(_LANES)


def shutdown_all() -> None:
    """Close every lane of this process at exit, sharing one exit bound between them.

    All at once, so that one exit starts at most one background uploader; what each lane does is
    :func:`agenttrace.exporters.exit.close_lanes`'s decision.
    """
    close_lanes(every_lane())


def before_fork() -> None:
    """Hold every lane's lock across ``fork()``, so that no lane is forked in the middle of a change."""
    for lane in every_lane():
        lane._lock.acquire()


def after_fork_in_parent() -> None:
    """Release what :func:`before_fork` held."""
    for lane in every_lane():
        with contextlib.suppress(RuntimeError):
            lane._lock.release()


def after_fork_in_child() -> None:
    """Give every lane of a forked child its own empty state (see :meth:`ExportLane._after_fork_in_child`)."""
    for lane in every_lane():
        lane._after_fork_in_child()


# -- one lane per exporter ---------------------------------------------------------------------


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
        # The run's source code and installed distributions (up to 1 MiB) are AgentTrace's own:
        # other destinations get them only with export_run_metadata.
        # Run metadata stays out of destinations other than the backend unless the setting in
        # force (read at each span: a later init() may change it) sends it there too.
        self._other_destination = getattr(exporter, "target", None) != BACKEND_TARGET
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
        self._confirmed = False  # the receiver accepted something from this process
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
        if self._other_destination and not run_metadata_exported():
            span = _without_run_metadata(span)
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
            reason = failing or f"no answer within the exit bound of {exit_timeout():g} s (AGENTTRACE_EXIT_TIMEOUT)"
            self._keep(left, reason)
        if exiting and self._spool is not None:
            self._spool.release_mine()
        if not self._abandoned:
            with contextlib.suppress(Exception):
                self.exporter.shutdown()

    def wait_inflight(self, deadline: float) -> None:
        """Wait (until ``deadline``, or until its receiver is known to fail) for the batch being sent to be answered.

        Exit in a multiprocessing worker: a batch abandoned in flight is spooled, and the
        parent's uploader sends it again if the receiver had read it; the worker's exit is not
        what the agent waits for, so it lets the answer come first.
        """
        with self._lock:
            while self._inflight is not None and self._thread is not None and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._failing(deadline) is not None:
                    return
                self._wake.wait(min(remaining, 0.05))

    def can_hand_off(self, spawn: bool) -> bool:
        """True when exit may spool this lane's work without waiting.

        It needs a spool and, when an uploader is to be started (``spawn``), an exporter that
        another process can rebuild from the environment to send the files the same way.
        """
        return self._spool is not None and (not spawn or self.uploader_env() is not None)

    def hand_off(self, spawn: bool) -> dict[str, str] | None:
        """Exit without waiting: stop taking spans and spool at once what is queued or in flight.

        Nothing is said unless the receiver is known to be failing (then the usual warning): the
        spans are not lost, only not sent yet. When nothing was confirmed by the receiver yet, a
        connect bounded by :data:`agenttrace.exporters.probe.PROBE_BOUND` finds out whether its
        address refuses connections (then that warning, at once). Returns the variables the
        background uploader needs for this lane when ``spawn`` and the lane's spool holds
        something to send (what was just spooled, a backlog it was sending, files its workers
        left), else None.
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
            unconfirmed = not self._confirmed and not self._last_failed
        if spawn and left and failing is None and unconfirmed:
            # Nothing says yet whether the receiver is there: one connect, bounded, tells a refused
            # or unresolvable address (said below, in the usual warning) from a slow receiver.
            # (Not in a multiprocessing worker: its parent hands the spool off, and says it.)
            endpoint = getattr(self.exporter, "probe_endpoint", None)
            if isinstance(endpoint, str):
                from agenttrace.exporters.probe import unreachable

                failing = unreachable(endpoint)
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

    @property
    def spool(self) -> Spool | None:
        """Where this lane keeps what it could not deliver (None: it drops it, with a warning)."""
        return self._spool

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
            self._keep(left, failing or f"no answer within {exit_timeout():g} s (AGENTTRACE_EXIT_TIMEOUT)")

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
        mark_exporter_thread(thread)
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
        suppress_instrumentation()  # this thread's context: everything it does is export traffic
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
            self._confirmed = True
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
            self._confirmed = True
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
        OTLP protobuf encoder (readers convert it before sending, see :func:`agenttrace.exporters.spool.request_bytes`).
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


_RUN_METADATA = (RUN_SOURCE, RUN_DISTRIBUTIONS)


def _without_run_metadata(span: ReadableSpan) -> ReadableSpan:
    """``span``, or a copy of it without the run's source and distributions when it has them."""
    attributes = span.attributes
    if not attributes or (RUN_SOURCE not in attributes and RUN_DISTRIBUTIONS not in attributes):
        return span
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes={k: v for k, v in attributes.items() if k not in _RUN_METADATA},
        events=span.events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def lane_for(exporter: SpanExporter, *args: Any, **kwargs: Any) -> ExportLane:
    """An :class:`ExportLane` for ``exporter``: the SDK configurator's ``export_span_processor``.

    OpenTelemetry's own OTLP/HTTP exporter is swapped for AgentTrace's (same variables, the OTLP
    retry policy, plus batch splitting and the spool).
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
