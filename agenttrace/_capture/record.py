"""The one interceptor core every instrumentor shares: call spans, payload events, the replay seam.

An adapter (httpx, httpx2, urllib3) turns its library's request into a :class:`RequestData`
and calls :func:`begin`. That opens the CLIENT span under the active step, writes the request
event, and asks the replay lookup (if one is installed) for a recorded exchange. The adapter
then either serves that exchange without I/O, or does the real call and reports back through
the :class:`Call`: :meth:`Call.head` when the response head arrives, :meth:`Call.chunk` for
every piece of body the client receives, and :meth:`Call.finish` (or :meth:`Call.fail`) once.

Each call writes one request event and one response event (plus an error event when the call
or its stream failed), whatever the number of stream chunks: OTel's 128-events-per-span limit
can never drop part of a payload. :func:`agenttrace._format.exchange.exchange_from_span` reads such a span back into an
:class:`Exchange`, and :mod:`agenttrace._replay.serve` serves one in place of the real I/O.

Nothing here may break the agent: adapters wrap their use of this module in ``try`` and fall
back to the plain call after one warning (:func:`internal_error`).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, ItemsView, Iterator, KeysView, Mapping, Sequence, ValuesView
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import Event as SdkEvent
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode

from agenttrace._capture import payload as _payload
from agenttrace._capture.filter import Filter
from agenttrace._capture.model import Body, Exchange, RequestData
from agenttrace._core.config import Settings
from agenttrace._core.errors import warn_once
from agenttrace._core.runtime import runtime
from agenttrace._core.scope import EXPORT_TRAFFIC_KEY, RunState, Scope, current_scope, export_thread
from agenttrace._format import genai as _genai
from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.EVENT_REQUEST
from agenttrace._format.otlp_json import decode_body, encode_body

__all__ = [
    "Call",
    "ReplayLookup",
    "add_place",
    "begin",
    "body_attributes",
    "capturing",
    "in_call",
    "in_client_call",
    "internal_error",
    "own_traffic",
    "qualified_name",
    "replay_lookup",
    "set_call_started",
    "set_replay_lookup",
]

# What replay's lookup gives: the Exchange to serve, None (the real call goes through and is
# recorded), or a live-call object (_replay.live.LiveCall: the same, told the answer at the end).
ReplayLookup = Callable[[RequestData, str], Any]

_lookup: ReplayLookup | None = None

# True while an instrumented client performs its own call in this context: the socket
# instrumentor stays quiet and a nested instrumented call is not recorded twice.
# The value says whose: "client" (an instrumented HTTP client's own request, which replay let
# through: its lookups and connects are that call's) or "agenttrace" (the socket instrumentor's
# own wrapper, a span being exported, AgentTrace's own lookups); "" outside any.
_in_call: ContextVar[str] = ContextVar("agenttrace_in_call", default="")


def own_traffic() -> bool:
    """True for export traffic: AgentTrace's export key in the context, or an OTel SDK export thread.

    OpenTelemetry's suppress-instrumentation key is not export traffic: any library can set it
    (Logfire's ``instrument_openai`` does, around the agent's LLM calls), and a call made under
    it is the agent's call, recorded, served and governed like any other.
    """
    if otel_context.get_value(EXPORT_TRAFFIC_KEY):
        return True
    return export_thread()


# A call can reach capture outside any run, through an instrumentor turned on (by the user, or
# by opentelemetry-instrument) before any init(): the instrumentor hands capture the function
# that configures AgentTrace, and the first such call runs it, as a run would.
_configure_first: Callable[[], Settings] | None = None


def configure_first_with(fn: Callable[[], Settings]) -> None:
    """Have the first call captured before any ``init()`` configure AgentTrace with ``fn()``."""
    global _configure_first  # noqa: PLW0603 - process-global, set by the instrumentors
    _configure_first = fn


# Called with (run, span) as a run's call span starts: the entropy draws the run made since its
# previous call are written on that span (agenttrace._replay.entropy), so a run cut short keeps them.
_call_started: Callable[[RunState, Span], None] | None = None


def set_call_started(fn: Callable[[RunState, Span], None] | None) -> None:
    """Install (or remove, with None) the function told of each call span a run starts."""
    global _call_started  # noqa: PLW0603 - process-global, set while runs are active
    _call_started = fn


def set_replay_lookup(fn: ReplayLookup | None) -> None:
    """Install (or remove, with None) the function replay uses to serve calls without I/O.

    ``fn(request, library)`` gets the request as recorded (secrets redacted, step and global filter
    applied) and returns the :class:`Exchange` to serve, None to let the real call happen (it is
    then recorded as usual), an object with an ``answered(status, body, error_type, headers)`` method to let
    it happen and be told its answer, or raises (e.g. ``ReplayMismatchError``), which reaches the caller.
    """
    global _lookup  # noqa: PLW0603 - process-global mode state (docs/design.md)
    _lookup = fn


def replay_lookup() -> ReplayLookup | None:
    """The installed replay lookup, if any."""
    return _lookup


def in_call() -> bool:
    """True inside an instrumented client's own call (its sockets and DNS are part of it)."""
    return bool(_in_call.get())


def capturing() -> bool:
    """False for export traffic (:func:`own_traffic`), while a call is already open here, or before consent.

    Consent is ``runtime.chosen``: the process called ``init()`` (itself, through a run, the
    zero-code command or AgentTrace's configurator) or runs AgentTrace's distro. An instrumentor
    that another distro's ``opentelemetry-instrument`` turned on only because AgentTrace is
    installed leaves every call alone until then: no span, no payload.
    """
    if _in_call.get() or not runtime.chosen:
        return False
    return not own_traffic()


def in_client_call() -> bool:
    """True inside an instrumented HTTP client's own request (see :func:`enter_call`)."""
    return _in_call.get() == "client"


def enter_call(whose: str = "client") -> Any:
    """Mark this context as inside an instrumented call; returns the token for :func:`exit_call`."""
    return _in_call.set(whose)


def exit_call(token: Any) -> None:
    """Undo :func:`enter_call`."""
    try:
        _in_call.reset(token)
    except ValueError:  # reset from another context (a generator resumed elsewhere)
        _in_call.set("")


def internal_error(library: str, exc: BaseException) -> None:
    """Report an AgentTrace bug in ``library``'s interceptor once; the agent's call goes on."""
    warn_once(
        f"capture:{library}:{type(exc).__name__}",
        f"could not record a {library} call ({type(exc).__name__}: {exc}); the call itself is unaffected",
    )


def qualified_name(exc: BaseException) -> str:
    """``module.Class`` of an exception, as recorded in ``agenttrace.error.type``."""
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


# --- recording ----------------------------------------------------------------------------------


# The SDK span's private ``_add_event(event)``, which :func:`add_event` appends through (1.40 to
# 1.45 have it, behind a decorator that hides its signature). Checked once, at import: an SDK
# without it gets the public ``add_event`` for every event (slower, same spans); one whose
# method no longer takes an event falls back the same way, at the call.
_EVENT_SEAM = callable(getattr(SdkSpan, "_add_event", None))


def add_event(span: Span, name: str, attributes: dict[str, Any], digest_pending: bool = False) -> None:
    """Add one of AgentTrace's own payload events to ``span``, skipping the SDK's re-validation.

    ``Span.add_event`` copies the attributes into a ``BoundedAttributes``, checking every key and
    value (and every element of every list) one by one, under a lock: about as much time as the
    rest of the event's work. The values here are AgentTrace's own, built as str, int, bool and
    tuples of them, so on an SDK span the event is appended as is, behind a read-only view (the
    same immutability ``add_event`` gives), through the SDK's private ``_add_event`` when
    ``_EVENT_SEAM`` found it at import. Two consequences, documented in docs/span-model.md:
    ``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`` does not cut AgentTrace's payload events (bodies are
    bounded by ``max_body_bytes`` instead: a cut body could not be replayed), and any other span
    (a wrapper provider's, a non-recording span) gets the public ``add_event``.

    ``digest_pending`` (set by :func:`_body_attributes`): the body's SHA-256 is left for whoever
    first reads it, see :class:`_PendingDigest`.
    """
    if _EVENT_SEAM and isinstance(span, SdkSpan):
        view = _PendingDigest(attributes) if digest_pending else attributes
        try:
            span._add_event(SdkEvent(name, MappingProxyType(view)))  # the private seam, see above
            return
        except (AttributeError, TypeError):  # a changed seam: the public way below
            pass
    if digest_pending and span.is_recording():
        _PendingDigest(attributes).copy()  # fills in the digest: the public way copies every value
    span.add_event(name, attributes)


_digest_lock = threading.Lock()


def _new_digest_lock() -> None:
    # A child forked while another thread computed a digest would inherit the lock held.
    global _digest_lock  # noqa: PLW0603 - one lock for every pending digest, renewed in a fork
    _digest_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_digest_lock)


class _PendingDigest(Mapping[str, Any]):
    """A payload event's attributes whose ``agenttrace.body.sha256`` is computed when first read.

    Hashing the bodies (a SHA-256 of every request and response body) is a large part of
    recording a call, and nothing on the agent's thread needs the digest: the trace writer, the
    export lanes and any other processor read the event's attributes later, on threads of their
    own, while the agent waits on its next response. So the event holds the attributes with the
    digest's key in its place (the order the trace file writes them in is unchanged) and
    computes it the first time the value can be seen: a read of that key, ``items()``,
    ``values()``, ``copy()`` (what the trace writer uses), equality. Reads of other keys,
    ``len``, ``in`` and ``keys()`` do not compute it, so the writer's size estimate on the
    agent's thread (``get(agenttrace.body)``) stays cheap.

    The digest is computed once, under a lock, from the body text the event holds (a body is
    deferred only when it was recorded whole: the text, UTF-8 or base64, gives back its exact
    bytes), so no second reference to the body's bytes is kept. Every reader, on any thread,
    sees the same values as if the digest had been there from the start.
    """

    __slots__ = ("_pending", "_values")

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values
        self._pending = True

    def _ready(self) -> dict[str, Any]:
        if self._pending:
            with _digest_lock:
                if self._pending:
                    values = self._values
                    data = decode_body(values[S.BODY], values[S.BODY_ENCODING])
                    values[S.BODY_SHA256] = hashlib.sha256(data).hexdigest()
                    self._pending = False
        return self._values

    def __getitem__(self, key: str) -> Any:
        if key == S.BODY_SHA256:
            return self._ready()[key]
        return self._values[key]

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` (the digest computed first if that is the key asked for)."""
        if key == S.BODY_SHA256:
            return self._ready().get(key, default)
        return self._values.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def keys(self) -> KeysView[str]:
        """The attribute names, in the order they are written."""
        return self._values.keys()

    def items(self) -> ItemsView[str, Any]:
        """Every attribute, the digest included."""
        return self._ready().items()

    def values(self) -> ValuesView[Any]:
        """Every value, the digest included."""
        return self._ready().values()

    def copy(self) -> dict[str, Any]:
        """A plain dict of every attribute (what the trace writer encodes from)."""
        return dict(self._ready())

    def __repr__(self) -> str:
        return repr(self._ready())


_pending_lock = threading.Lock()
_pending: dict[int, set[Call]] = {}


class Call:
    """One intercepted exchange being recorded; every method is safe to call at most once."""

    __slots__ = (
        "__weakref__",
        "_chunks",
        "_done",
        "_hasher",
        "_head_ns",
        "_kept",
        "_lock",
        "_offsets",
        "_sizes",
        "_status_set",
        "_total",
        "closing",
        "exchange",
        "http_version",
        "library",
        "live",
        "max_bytes",
        "reason",
        "request",
        "response_headers",
        "rules",
        "run",
        "span",
        "status_code",
        "traced",
    )

    def __init__(self, library: str, span: Span, rules: Filter, run: RunState | None, max_bytes: int) -> None:
        self.library = library
        self.span = span
        self.rules = rules
        self.run = run
        self.max_bytes = max_bytes
        self.exchange: Exchange | None = None
        self.status_code = 0
        self.response_headers: tuple[tuple[str, str], ...] = ()
        self.reason = ""
        self.http_version = "HTTP/1.1"
        self._chunks: list[bytes] = []
        self._sizes: list[int] = []
        self._offsets: list[int] = []
        self._total = 0
        self._kept = 0
        self._hasher: Any = None
        self._head_ns = 0
        self._status_set = -1
        self._done = False
        self._lock = threading.Lock()
        self.traced = True  # False: a served call without a span (nothing would receive it)
        self.live: Any = None  # replay let this call go live: told the answer (see _replay.live.LiveCall)
        self.request: RequestData | None = None  # as recorded; read once at the end (_describe_llm)
        # Called once as the call ends, before its response or error event: an adapter's own
        # events go on the span then (a WebSocket connection's frames, agenttrace._capture.websocket).
        self.closing: Callable[[], None] | None = None

    # The adapters call these.

    def head(
        self, status_code: int, headers: Sequence[tuple[str, str]], reason: str = "", http_version: str = "HTTP/1.1"
    ) -> None:
        """The response head arrived: status, headers (raw, in order) and protocol."""
        self._head_ns = time.monotonic_ns()
        self.status_code = status_code
        self.response_headers = tuple(headers)
        self.reason = reason
        self.http_version = http_version
        if status_code != self._status_set:  # a served call's span started with it
            self.span.set_attribute("http.response.status_code", status_code)
        if status_code >= 400:
            self.span.set_attribute("error.type", str(status_code))
            self.span.set_status(Status(StatusCode.ERROR))

    def chunk(self, data: bytes) -> None:
        """The client received ``data`` (raw, still content-encoded) from the body."""
        if not data or self._done or not self.traced:
            return
        size = len(data)
        self._sizes.append(size)
        self._offsets.append(time.monotonic_ns() - self._head_ns)
        self._total += size
        if self._kept < self.max_bytes:
            self._chunks.append(data)  # a reference to the client's own bytes, not a copy
            self._kept += size
        else:
            if self._hasher is None:
                self._hasher = hashlib.sha256()
                for kept in self._chunks:
                    self._hasher.update(kept)
            self._hasher.update(data)

    def finish(self, end: str = "complete", error: BaseException | None = None) -> None:
        """The body is over (``complete``/``closed_early``/``error``/``not_read``): write and end."""
        with self._lock:
            if self._done:
                return
            self._done = True
        if not self.traced:
            return
        try:
            self._closing()
            self._write_response(end)
            if error is not None:
                self._write_error(error, "stream")
        except Exception as exc:  # noqa: BLE001 - never raise into the agent's read
            internal_error(self.library, exc)
        finally:
            self._end()

    def fail(self, error: BaseException) -> None:
        """The call raised before a response head: write the error event and end the span."""
        with self._lock:
            if self._done:
                return
            self._done = True
        if not self.traced:
            return
        try:
            self._closing()
            self._write_error(error, "request")
        except Exception as exc:  # noqa: BLE001 - never raise into the agent's call
            internal_error(self.library, exc)
        finally:
            self._end()

    @property
    def started_body(self) -> bool:
        """True once any body bytes reached the client."""
        return bool(self._sizes)

    # Internals.

    def _closing(self) -> None:
        closing, self.closing = self.closing, None
        if closing is not None:
            closing()

    def _end(self) -> None:
        if self.run is not None:
            with _pending_lock:
                calls = _pending.get(id(self.run))
                if calls is not None:
                    calls.discard(self)
        # A span processor that exports on this thread (a SimpleSpanProcessor) sends the span
        # over an instrumented client: that send is not a call of the agent's to record.
        token = _in_call.set("agenttrace")
        try:
            self.span.end()
        finally:
            exit_call(token)

    def _write_response(self, end: str) -> None:
        served = self.exchange
        if served is not None and served.response is not None:
            self._write_served_response(end, served)
            return
        headers = self.response_headers
        chunks: Sequence[bytes] = self._chunks
        # Secret body fields (payload.DEFAULT_REDACTED_FIELDS) whatever the rules, then the rules.
        chunks, filtered = _payload.redact_chunks(chunks, headers, self.rules)
        data = b"".join(chunks)
        sizes: Sequence[int] = self._sizes
        if filtered:
            sizes = [len(c) for c in chunks]
            if len(sizes) != len(self._offsets):  # a compressed body is filtered and re-encoded whole
                self._offsets = self._offsets[-1:]
        attributes: dict[str, Any] = {
            S.HTTP_STATUS: self.status_code,
            S.HTTP_HEADERS: _payload.jsonable_headers(_payload.redact_headers(headers)),
            S.HTTP_VERSION: self.http_version,
            S.STREAM_CHUNK_SIZES: tuple(sizes),
            S.STREAM_CHUNK_OFFSETS: tuple(self._offsets),
            S.STREAM_END: end,
        }
        if self.reason:
            attributes[S.HTTP_REASON] = self.reason
        if self._hasher is not None:
            body = Body(data=data[: self.max_bytes], size=self._total, sha256=self._hasher.hexdigest(), truncated=True)
            pending = _cut_body_attributes(attributes, body)
        else:
            pending = _body_attributes(attributes, data, self.max_bytes)
        if filtered:
            attributes[_payload.BODY_FILTERED] = True
        self._chunks = []
        add_event(self.span, S.EVENT_RESPONSE, attributes, pending)
        self._describe_llm(headers, data)
        if self.live is not None:
            self.live.answered(self.status_code, data, None, headers)

    def _write_served_response(self, end: str, served: Exchange) -> None:
        """The response event of a call replay served: what the agent got, pointing at the recording.

        The served head and body are the recorded span's (already redacted and filtered when
        they were recorded), so the event does not repeat the headers or the body: it keeps the
        status, the size and SHA-256 of what the agent read, the chunk boundaries and timings,
        how the stream ended, and the ids of the recorded call span that holds the bytes.
        """
        recorded = served.response
        assert recorded is not None
        size = self._total
        if self._hasher is None and size == recorded.body.size and not recorded.body.truncated:
            digest = recorded.body.sha256  # the whole recorded body was read: its digest is known
        else:
            hasher = self._hasher
            if hasher is None:
                hasher = hashlib.sha256()
                for kept in self._chunks:
                    hasher.update(kept)
            digest = hasher.hexdigest()
        attributes: dict[str, Any] = {
            S.HTTP_STATUS: self.status_code,
            S.HTTP_VERSION: self.http_version,
            S.BODY_SIZE: size,
            S.BODY_SHA256: digest,
            S.STREAM_CHUNK_SIZES: tuple(self._sizes),
            S.STREAM_CHUNK_OFFSETS: tuple(self._offsets),
            S.STREAM_END: end,
            S.SERVED_TRACE_ID: served.trace_id,
            S.SERVED_SPAN_ID: served.span_id,
        }
        if self.reason:
            attributes[S.HTTP_REASON] = self.reason
        self._chunks = []
        add_event(self.span, S.EVENT_RESPONSE, attributes)
        self._describe_llm(recorded.headers, recorded.body.data)

    def _describe_llm(self, headers: Sequence[tuple[str, str]], body: bytes | None) -> None:
        """Name an LLM call's span ``{operation} {model}`` and add its GenAI attributes (docs/span-model.md).

        Parsed from the payloads as recorded (redacted, filtered): what a filter removed is not
        described either. A body that does not parse gives fewer attributes, never an error.
        """
        request, self.request = self.request, None
        if request is None or request.method != "POST":
            return
        # What the trace keeps of each body, no more (a body past max_body_bytes is recorded cut).
        limit = self.max_bytes
        sent = request.body if len(request.body) <= limit else request.body[:limit]
        if body is not None and len(body) > limit:
            body = body[:limit]
        settings = runtime.settings
        content = settings is not None and settings.openinference
        try:
            call = _genai.describe(
                request.method,
                request.url,
                request.headers,
                sent,
                response_headers=headers,
                response_body=body,
                content=content,
            )
            if call is None:
                return
            attributes = _genai.genai_attributes(call)
            if content:
                attributes.update(_genai.openinference_attributes(call, sent, headers, body))
            self.span.set_attributes(attributes)
            self.span.update_name(call.span_name)
        except Exception as exc:  # noqa: BLE001 - the call itself is unaffected
            internal_error(self.library, exc)

    def _write_error(self, error: BaseException, phase: str) -> None:
        name = qualified_name(error)
        if self.live is not None and phase == "request":
            self.live.answered(None, b"", name, ())
        # The URL in a client's message (requests' "Max retries exceeded with url: ...") is
        # redacted as in url.full; the rules' patterns apply as to any text.
        message = _payload.redact_text(self.rules.text(str(error)))
        add_event(self.span, S.EVENT_ERROR, {S.ERROR_TYPE: name, S.ERROR_MESSAGE: message, S.ERROR_PHASE: phase})
        self._describe_llm((), None)
        self.span.set_attribute("error.type", name)
        self.span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {message}"))


_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def body_attributes(attributes: dict[str, Any], data: bytes, max_bytes: int) -> bool:
    """Add ``agenttrace.body*`` of ``data`` to an event's ``attributes``; pass the answer to :func:`add_event`."""
    return _body_attributes(attributes, data, max_bytes)


def _body_attributes(attributes: dict[str, Any], data: bytes, max_bytes: int) -> bool:
    """Add the body attributes of ``data``; True when its digest is left pending (see add_event).

    A body kept whole gets its SHA-256 later, off the agent's thread (:class:`_PendingDigest`);
    one cut at ``max_bytes`` is hashed here, since the event keeps only part of its bytes.
    """
    size = len(data)
    if size > max_bytes:
        return _cut_body_attributes(attributes, _payload.make_body(data, max_bytes))
    text, encoding = encode_body(data)
    attributes[S.BODY] = text
    attributes[S.BODY_ENCODING] = encoding
    attributes[S.BODY_SIZE] = size
    if not size:
        attributes[S.BODY_SHA256] = _EMPTY_SHA256
        return False
    attributes[S.BODY_SHA256] = ""  # holds the key's place; _PendingDigest fills it in
    return True


def _cut_body_attributes(attributes: dict[str, Any], body: Body) -> bool:
    text, encoding = encode_body(body.data)
    attributes[S.BODY] = text
    attributes[S.BODY_ENCODING] = encoding
    attributes[S.BODY_SIZE] = body.size
    attributes[S.BODY_SHA256] = body.sha256
    if body.truncated:
        attributes[S.BODY_TRUNCATED] = True
    return False


_servers: dict[str, tuple[str | None, int | None]] = {}


def _server(url: str) -> tuple[str | None, int | None]:
    # Host and port depend only on the scheme and the authority: a plain http(s) URL is looked up
    # by that prefix (an agent calls the same few servers), anything else is split every time.
    if url.startswith(("http://", "https://")) and url.isascii() and url.isprintable() and " " not in url:
        start = url.index("//") + 2
        end = len(url)
        for delimiter in "/?#":
            found = url.find(delimiter, start)
            if 0 <= found < end:
                end = found
        prefix = url[:end]
        known = _servers.get(prefix)
        if known is None:
            known = _split_server(prefix)
            if len(_servers) < 256:
                _servers[prefix] = known
        return known
    return _split_server(url)


def _split_server(url: str) -> tuple[str | None, int | None]:
    try:
        parts = urlsplit(url)
        port = parts.port or {"https": 443, "http": 80, "wss": 443, "ws": 80}.get(parts.scheme)
        return parts.hostname, port
    except ValueError:
        return None, None


def begin(library: str, request: RequestData) -> Call | None:
    """Open the call span and write the request event; ``call.exchange`` is set when replay serves.

    Returns None (after one warning) when recording itself failed: do the plain call then.
    Raises whatever the replay lookup raises, after recording it on the span.
    """
    start_ns = time.time_ns()
    try:
        prepared = _prepare(library, request)
    except Exception as exc:  # noqa: BLE001 - an AgentTrace bug must not break the agent's call
        internal_error(library, exc)
        return None
    exchange: Exchange | None = None
    live: Any = None
    lookup = _lookup
    if lookup is not None:
        # Looked up before the span starts, so a served call's span is born with what replay
        # knows (agenttrace.call.replayed, the status) instead of paying for set_attribute later.
        try:
            found = lookup(prepared.recorded, library)
        except BaseException as exc:
            call = _open_or_none(prepared, None, start_ns)
            if call is not None:
                call.fail(exc)
            raise
        if type(found) is Exchange:
            exchange = found
        elif found is not None:
            live = found  # replay lets this call go live (agenttrace._replay.live.LiveCall)
    if exchange is not None and exchange.response is not None and not runtime.traced:
        # Nothing would receive the span (see Runtime.traced): serve without one.
        call = Call(library, INVALID_SPAN, prepared.rules, None, prepared.max_bytes)
        call.traced = False
    else:
        call = _open_or_none(prepared, exchange, start_ns, live is not None)
    if call is not None:
        call.exchange = exchange
        call.live = live
    return call


class _Prepared(NamedTuple):
    """What :func:`begin` works out before the span starts."""

    library: str
    request: RequestData
    recorded: RequestData
    filtered: bool
    rules: Filter
    scope: Scope | None
    max_bytes: int


def _prepare(library: str, request: RequestData) -> _Prepared:
    scope = current_scope()
    settings = runtime.settings
    if settings is None:
        settings = _configure_first() if _configure_first is not None else runtime.current_settings()
    # A call outside any run or step (a thread without context) is still under the global filter.
    rules = scope.filter if scope is not None else settings.filter
    recorded, filtered = _payload.redact_request(request, rules)
    return _Prepared(library, request, recorded, filtered, rules, scope, settings.max_body_bytes)


def _attributes(prepared: _Prepared) -> dict[str, Any]:
    """The call span's attributes at its start."""
    request, recorded, scope = prepared.request, prepared.recorded, prepared.scope
    host, port = _server(request.url)
    attributes: dict[str, Any] = {
        S.KIND: "call",
        S.SCHEMA: S.SCHEMA_VERSION,
        "http.request.method": request.method,
        "url.full": recorded.url,
        S.CALL_LIBRARY: prepared.library,
    }
    if host is not None:
        attributes["server.address"] = host
    if port is not None:
        attributes["server.port"] = port
    add_place(attributes, scope)
    return attributes


def add_place(attributes: dict[str, Any], scope: Scope | None) -> None:
    """Add a call span's place in its run: its ordinal and the path of the steps around it."""
    if scope is not None:
        if scope.run is not None:
            attributes[S.CALL_ORDINAL] = scope.run.next_ordinal()
        if scope.step_path:
            attributes[S.STEP_NAME_ON_CALL] = scope.step_path[-1]
            attributes[S.CALL_STEP_PATH] = tuple(scope.step_path)


def _open_or_none(prepared: _Prepared, exchange: Exchange | None, start_ns: int, live: bool = False) -> Call | None:
    try:
        return _open(prepared, exchange, start_ns, live)
    except Exception as exc:  # noqa: BLE001 - an AgentTrace bug must not break the agent's call
        internal_error(prepared.library, exc)
        return None


def _open(prepared: _Prepared, exchange: Exchange | None, start_ns: int, live: bool = False) -> Call:
    attributes = _attributes(prepared)
    if live:
        attributes[S.CALL_LIVE] = True
    response = exchange.response if exchange is not None else None
    if exchange is not None:
        attributes[S.CALL_REPLAYED] = True
    if response is not None:
        attributes["http.response.status_code"] = response.status_code
    recorded = prepared.recorded
    span = runtime.tracer.start_span(recorded.method, kind=SpanKind.CLIENT, attributes=attributes, start_time=start_ns)
    run = prepared.scope.run if prepared.scope is not None else None
    call = Call(prepared.library, span, prepared.rules, run, prepared.max_bytes)
    call.request = recorded
    if response is not None:
        call._status_set = response.status_code
    event: dict[str, Any] = {
        S.HTTP_METHOD: recorded.method,
        S.HTTP_URL: recorded.url,
        S.HTTP_HEADERS: _payload.jsonable_headers(recorded.headers),
    }
    pending = _body_attributes(event, recorded.body, prepared.max_bytes)
    if prepared.filtered:
        event[_payload.BODY_FILTERED] = True
    started = _call_started
    if started is not None and run is not None:
        started(run, span)
    add_event(span, S.EVENT_REQUEST, event, pending)
    if run is not None:
        with _pending_lock:
            _pending.setdefault(id(run), set()).add(call)
    return call


def finish_run(run: RunState) -> None:
    """A run ends: calls whose body was never fully read nor closed are recorded as they stand."""
    with _pending_lock:
        calls = _pending.pop(id(run), set())
    for call in list(calls):
        if call.status_code:
            call.finish("closed_early" if call.started_body else "not_read")
