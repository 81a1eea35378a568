"""The AgentTrace backend exporter, and the OTLP/HTTP exporter it is built on.

Both are OpenTelemetry ``SpanExporter`` s sending OTLP/HTTP protobuf through
:class:`~agenttrace.exporters.otlp_http.OTLPHTTPSender` (the standard ``OTEL_EXPORTER_OTLP_*``
variables, compression, and the OTLP retry policy: 429/502/503/504 and connection errors retried
with exponential backoff and jitter, ``Retry-After`` honoured, everything else not retried), with
what OpenTelemetry's own exporter lacks:

* a batch the receiver finds too large (HTTP 413, or over ``max_request_size``) is split in
  halves and each half sent, down to single spans;
* what could not be delivered goes to the spool (:mod:`agenttrace.exporters.spool`) instead of being
  logged and lost, and one warning per process says so on stderr;
* a refused API key (401/403) is said once, plainly, and the data is kept for
  ``agenttrace upload`` once the key is fixed.

Only OpenTelemetry's public parts are used (the span encoder, the protobuf messages, the
``SpanExporter`` interface), so every supported OpenTelemetry release behaves the same.

Usage in a user's own OpenTelemetry setup (the ``agenttrace`` traces-exporter entry point)::

    OTEL_TRACES_EXPORTER=otlp,agenttrace AGENTTRACE_API_KEY=at_live_... opentelemetry-instrument python app.py

or by hand::

    provider.add_span_processor(BatchSpanProcessor(AgentTraceSpanExporter(api_key="at_live_...")))
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agenttrace.exporters.deferred import BACKEND_TARGET, backend_destination, backend_uploader_env
from agenttrace.exporters.otlp_http import OTLPHTTPSender, reason_text, retrying
from agenttrace.exporters.spool import Delivery, Spool, report_failure
from agenttrace.exporters.traffic import exporting, suppress_instrumentation
from opentelemetry import context as otel_context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from agenttrace._core.config import resolve_settings
from agenttrace._core.errors import ConfigurationError, warn_once

__all__ = [
    "AgentTraceSpanExporter",
    "SpoolingOTLPSpanExporter",
    "count_spans",
    "grpc_deliverer",
    "retrying",
    "split_request",
]

_AUTH_CODES = frozenset({401, 403})
_TOO_LARGE = 413
# Answers that will not change if the same bytes are sent again: the batch is dropped and said.
_PERMANENT = frozenset({400, 404, 405, 410, 415, 422})
_DEFAULT_MAX_REQUEST_SIZE = 64 * 2**20  # OpenTelemetry's OTLP/HTTP default (64 MiB, before compression)

# Backend exporters made outside AgentTrace's own wiring (the entry point, a user's code), so
# that init() does not add a second one next to them.
_standalone: weakref.WeakSet[AgentTraceSpanExporter] = weakref.WeakSet()


def count_spans(request: ExportTraceServiceRequest) -> int:
    """Number of spans in an OTLP request."""
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


def split_request(
    request: ExportTraceServiceRequest,
) -> tuple[ExportTraceServiceRequest, ExportTraceServiceRequest] | None:
    """Two requests holding the first and second half of ``request``'s spans; None for one span."""
    flat = [
        (ri, si, span)
        for ri, rs in enumerate(request.resource_spans)
        for si, ss in enumerate(rs.scope_spans)
        for span in ss.spans
    ]
    if len(flat) < 2:
        return None
    half = len(flat) // 2
    return _build(request, flat[:half]), _build(request, flat[half:])


def _build(request: ExportTraceServiceRequest, items: list[tuple[int, int, Any]]) -> ExportTraceServiceRequest:
    out = ExportTraceServiceRequest()
    groups: dict[tuple[int, int], Any] = {}
    resources: dict[int, Any] = {}
    for ri, si, span in items:
        scope_spans = groups.get((ri, si))
        if scope_spans is None:
            resource_spans = resources.get(ri)
            if resource_spans is None:
                source = request.resource_spans[ri]
                resource_spans = out.resource_spans.add()
                resource_spans.resource.CopyFrom(source.resource)
                resource_spans.schema_url = source.schema_url
                resources[ri] = resource_spans
            source_scope = request.resource_spans[ri].scope_spans[si]
            scope_spans = resource_spans.scope_spans.add()
            scope_spans.scope.CopyFrom(source_scope.scope)
            scope_spans.schema_url = source_scope.schema_url
            groups[(ri, si)] = scope_spans
        scope_spans.spans.append(span)
    return out


class SpoolingOTLPSpanExporter(SpanExporter):
    """OTLP/HTTP protobuf span exporter that splits oversized batches and spools what fails.

    Takes the arguments of OpenTelemetry's ``OTLPSpanExporter`` (and reads the same
    ``OTEL_EXPORTER_OTLP_*`` variables), plus ``spool``: where undelivered batches go (default:
    the ``spool_dir`` setting, folder ``otlp``).
    """

    target = "otlp"

    def __init__(  # noqa: PLR0917 - OpenTelemetry's OTLPSpanExporter takes these positionally too
        self,
        endpoint: str | None = None,
        certificate_file: str | None = None,
        client_key_file: str | None = None,
        client_certificate_file: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        compression: Any = None,
        session: Any = None,
        *,
        max_request_size: int | None = None,
        spool: Spool | None = None,
    ) -> None:
        self._init_args: dict[str, Any] = {
            name: value
            for name, value in (
                ("endpoint", endpoint),
                ("certificate_file", certificate_file),
                ("client_key_file", client_key_file),
                ("client_certificate_file", client_certificate_file),
                ("headers", headers),
                ("timeout", timeout),
                ("compression", compression),
                ("max_request_size", max_request_size),
            )
            if value is not None
        }
        self._sender = OTLPHTTPSender(
            endpoint=endpoint,
            certificate_file=certificate_file,
            client_key_file=client_key_file,
            client_certificate_file=client_certificate_file,
            headers=headers,
            timeout=timeout,
            compression=compression,
            session=session,
        )
        self.max_request_size = _DEFAULT_MAX_REQUEST_SIZE if max_request_size is None else max_request_size
        self._is_shut_down = False
        if spool is None:
            settings = resolve_settings({})
            spool = Spool(settings.spool_dir, self.target, settings.spool_max_bytes)
        self.spool = spool

    @property
    def endpoint(self) -> str:
        """The URL the requests are posted to."""
        return self._sender.endpoint

    @property
    def destination(self) -> str:
        """Where the data goes, for messages."""
        return f"the OTLP endpoint {self.endpoint}"

    @property
    def probe_endpoint(self) -> str:
        """Where exit may try a connect when nothing was confirmed yet (agenttrace.exporters.probe)."""
        return self.endpoint

    def clone(self) -> SpoolingOTLPSpanExporter:
        """A fresh exporter with the same settings (new HTTP session), for a forked child."""
        return type(self)(spool=self.spool, **self._init_args)

    def uploader_env(self) -> dict[str, str] | None:
        """Variables with which another process (the background uploader) sends as this exporter does.

        Made from the ``OTEL_EXPORTER_OTLP_*`` variables alone, it is rebuilt from the inherited
        environment; made with arguments, it cannot be (None: its lane waits at exit instead).
        """
        return {} if not self._init_args else None

    # -- sending ------------------------------------------------------------------------------

    def deliver(self, spans: Sequence[ReadableSpan]) -> Delivery:
        """Send ``spans``; nothing is spooled or said (the caller decides)."""
        return self.deliver_request(encode_spans(spans))

    def deliver_serialized(self, data: bytes) -> Delivery:
        """Send one serialized ``ExportTraceServiceRequest`` (a spool file)."""
        return self.deliver_request(ExportTraceServiceRequest.FromString(data), data)

    def deliver_request(self, request: ExportTraceServiceRequest, data: bytes | None = None) -> Delivery:
        """Send ``request``, splitting it in halves while the receiver says it is too large."""
        if data is None:
            data = request.SerializeToString()
        spans = count_spans(request)
        if 0 < self.max_request_size < len(data):
            return self._split(request, data, spans, f"{len(data)} bytes, over max_request_size")
        token = suppress_instrumentation()
        try:
            with exporting():
                result = self._sender.send(data)
        finally:
            otel_context.detach(token)
        if result.success:
            return Delivery(delivered=spans)
        code = result.status_code
        reason = reason_text(code, result.reason, result.error)
        if result.gave_up is not None and code is None and result.error is None:
            reason = f"{result.gave_up}; gave up at the export deadline"
        if code == _TOO_LARGE:
            return self._split(request, data, spans, reason)
        if code in _PERMANENT:
            return Delivery(rejected=spans, reason=reason)
        return Delivery(kept=[(data, spans)], reason=reason, auth_failed=code in _AUTH_CODES)

    def _split(self, request: ExportTraceServiceRequest, data: bytes, spans: int, reason: str) -> Delivery:
        halves = split_request(request)
        if halves is None:
            return Delivery(rejected=spans, reason=f"one span too large to send ({reason})")
        outcome = Delivery()
        for half in halves:
            outcome.merge(self.deliver_request(half))
        return outcome

    # -- the SpanExporter interface (used by a BatchSpanProcessor in a user's setup) ----------------

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Send ``spans``; what fails is spooled and said once; SUCCESS only when all arrived."""
        if self._is_shut_down:
            self.keep(spans, "exporter already shut down")
            return SpanExportResult.FAILURE
        try:
            outcome = self.deliver(spans)
        except Exception as exc:  # noqa: BLE001 - encoding or transport bug: keep the data, say it
            self.keep(spans, repr(exc))
            return SpanExportResult.FAILURE
        self.keep_outcome(outcome)
        return SpanExportResult.SUCCESS if outcome.ok else SpanExportResult.FAILURE

    def keep_outcome(self, outcome: Delivery) -> None:
        """Spool what ``outcome`` left undelivered and say what failed (once per process)."""
        stored = True
        for request, count in outcome.kept:  # every part is written, even after one did not fit
            stored = self.spool.put(request, count) and stored
        if not outcome.ok:
            report_failure(self.destination, outcome, self.spool, stored)

    def keep(self, spans: Sequence[ReadableSpan], reason: str) -> None:
        """Spool ``spans`` unsent (queue full, exit bound reached) and say why, once."""
        if not spans:
            return
        request = encode_spans(spans)
        self.keep_outcome(Delivery(kept=[(request.SerializeToString(), count_spans(request))], reason=reason))

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered in the exporter itself."""
        return True

    def shutdown(self) -> None:
        """Stop: a send waiting to retry gives up, and later batches go to the spool."""
        self._is_shut_down = True
        self._sender.close()


class AgentTraceSpanExporter(SpoolingOTLPSpanExporter):
    """Sends spans to the AgentTrace backend: OTLP/HTTP protobuf, gzip, the API key as a bearer token.

    Arguments left as None come from the settings (``AGENTTRACE_API_KEY``, ``AGENTTRACE_API_URL``,
    ``AGENTTRACE_EXPORT_TIMEOUT``, ``AGENTTRACE_SPOOL_DIR``); with no API key anywhere it raises
    :class:`agenttrace.ConfigurationError`.
    """

    target = BACKEND_TARGET

    def __init__(
        self,
        api_key: str | None = None,
        api_url: str | None = None,
        timeout: float | None = None,
        *,
        spool: Spool | None = None,
        headers: Mapping[str, str] | None = None,
        _managed: bool = False,
    ) -> None:
        settings = resolve_settings({"api_key": api_key, "api_url": api_url})
        if settings.api_key is None:
            raise ConfigurationError(
                "the AgentTrace backend exporter needs an API key: set AGENTTRACE_API_KEY or pass api_key='at_live_...'"
            )
        self._key = settings.api_key
        self._url = settings.api_url
        if spool is None:
            spool = Spool(settings.spool_dir, self.target, settings.spool_max_bytes)
        super().__init__(
            endpoint=f"{settings.api_url}/v1/traces",
            headers={**(headers or {}), "Authorization": f"Bearer {settings.api_key}"},
            timeout=settings.export_timeout if timeout is None else timeout,
            compression="gzip",
            spool=spool,
        )
        self._timeout_arg = timeout
        self._timeout_s = settings.export_timeout if timeout is None else timeout
        self._headers_arg = dict(headers or {})
        if not _managed:
            _standalone.add(self)

    @property
    def destination(self) -> str:
        """Where the data goes, for messages."""
        return backend_destination(self._url)

    def clone(self) -> AgentTraceSpanExporter:
        """A fresh exporter with the same settings (new HTTP session), for a forked child."""
        return AgentTraceSpanExporter(
            self._key, self._url, self._timeout_arg, spool=self.spool, headers=self._headers_arg, _managed=True
        )

    def uploader_env(self) -> dict[str, str] | None:
        """The key, URL and timeout as variables, for the background uploader (the key never goes on a command line)."""
        if self._headers_arg:
            return None  # extra headers have no variable
        return backend_uploader_env(self._key, self._url, self._timeout_s)


def standalone_backend_exporters() -> list[AgentTraceSpanExporter]:
    """Backend exporters created outside AgentTrace's own wiring (entry point or user code)."""
    return list(_standalone)


_GRPC_PERMANENT = frozenset({"INVALID_ARGUMENT", "UNIMPLEMENTED", "FAILED_PRECONDITION", "OUT_OF_RANGE"})
_GRPC_AUTH = frozenset({"UNAUTHENTICATED", "PERMISSION_DENIED"})


def grpc_destination(exporter: Any) -> str:
    """``the OTLP/gRPC endpoint HOST:PORT`` for messages (its private ``_endpoint`` when there, else the variables)."""
    import os

    endpoint = getattr(exporter, "_endpoint", None) or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4317")
    )
    return f"the OTLP/gRPC endpoint {endpoint}"


def grpc_deliverer(exporter: Any) -> Callable[[bytes], Delivery]:
    """``deliver_serialized`` for OpenTelemetry's OTLP/gRPC exporter: re-send spooled requests.

    The gRPC exporter has no public way to send a request already encoded, so this uses three of
    its private attributes, the one place AgentTrace does: its channel's stub (``_client``), its
    headers and timeout (``_headers``, ``_timeout``), unchanged from 1.40 to 1.45. They are checked
    at each re-send; an exporter without them leaves the spooled requests where they are, says so
    once, and its live export (its public ``export``) is unaffected. The spool keeps what fails
    for a reason that may pass (UNAVAILABLE, DEADLINE_EXCEEDED, ...).
    """
    import grpc  # type: ignore[import-untyped]  # grpcio ships no type stubs

    def deliver(data: bytes) -> Delivery:
        request = ExportTraceServiceRequest.FromString(data)
        spans = count_spans(request)
        client: Any = getattr(exporter, "_client", None)
        if not callable(getattr(client, "Export", None)) or not hasattr(exporter, "_timeout"):
            if client is None and hasattr(exporter, "_client"):
                return Delivery(kept=[(data, spans)], reason="the OTLP/gRPC exporter has no channel")
            warn_once(
                "grpc-resend",
                "this opentelemetry-exporter-otlp-proto-grpc has no channel stub AgentTrace can re-send "
                "spooled batches with (its private _client); they stay in the spool (spool/otlp_grpc/)",
            )
            return Delivery(kept=[(data, spans)], reason="the OTLP/gRPC exporter cannot re-send spooled requests")
        token = suppress_instrumentation()
        try:
            with exporting():
                headers, timeout = getattr(exporter, "_headers", None), getattr(exporter, "_timeout", 10)
                client.Export(request=request, metadata=headers, timeout=timeout)
        except grpc.RpcError as error:
            code = error.code().name if hasattr(error, "code") else "UNKNOWN"
            reason = f"gRPC {code}"
            if code in _GRPC_PERMANENT:
                return Delivery(rejected=spans, reason=reason)
            return Delivery(kept=[(data, spans)], reason=reason, auth_failed=code in _GRPC_AUTH)
        finally:
            otel_context.detach(token)
        return Delivery(delivered=spans)

    return deliver
