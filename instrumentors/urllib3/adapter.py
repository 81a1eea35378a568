"""The adapter between :mod:`agenttrace._capture.record` and urllib3 (and so ``requests`` and botocore).

Shared by ``agenttrace.instrumentors.urllib3.Urllib3Instrumentor`` and by ``@run`` (see
agenttrace._capture.activation), which installs it without importing ``opentelemetry.instrumentation``.

The patch sits on ``HTTPConnectionPool._make_request``: one HTTP exchange on one connection,
below urllib3's retries and redirects (each attempt is its own call span, as each is its own
exchange) and below OpenTelemetry's own urllib3/requests instrumentations.

Response bodies are teed where urllib3 reads raw (still content-encoded) bytes: with
``preload_content=False`` each ``stream()`` chunk reaches the caller the moment it arrives.
"""

from __future__ import annotations

import http.client
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from agenttrace._capture import record
from agenttrace._capture.adapters import import_library, shared_adapter
from agenttrace._capture.model import Exchange, RequestData
from agenttrace._capture.patch import is_wrapped, unwrap_ours, wrap_innermost
from agenttrace._capture.record import Call
from agenttrace._replay import serve

__all__ = ["Urllib3Adapter", "urllib3_adapter"]

LIBRARY = "urllib3"


def _url(pool: Any, url: str) -> str:
    if "://" in url:  # absolute form, sent to a proxy
        return url
    host = pool.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    default = 443 if pool.scheme == "https" else 80
    port = "" if pool.port in (None, default) else f":{pool.port}"
    return f"{pool.scheme}://{host}{port}{url}"


def _body_bytes(body: Any) -> tuple[bytes, Any]:
    """The request body as bytes, and what to send instead (a stream can only be read once)."""
    if body is None:
        return b"", body
    if isinstance(body, bytes):
        return body, body
    if isinstance(body, str):
        return body.encode("utf-8"), body
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body), body
    if hasattr(body, "read"):
        data = body.read()
        data = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        return data, data
    parts = [p.encode("utf-8") if isinstance(p, str) else bytes(p) for p in body]
    data = b"".join(parts)
    return data, data


def _pairs(items: Any) -> tuple[tuple[str, str], ...]:
    """``items`` as a tuple of ``(str, str)`` pairs.

    Header names and values are nearly always ``str`` pairs already: then one C-level copy and a
    type check per pair, instead of two ``str()`` calls and a new pair per header on every call.
    """
    pairs = tuple(items)
    for pair in pairs:
        if type(pair) is not tuple or len(pair) != 2 or type(pair[0]) is not str or type(pair[1]) is not str:
            return tuple((str(k), str(v)) for k, v in pairs)
    return pairs


def _request_headers(headers: Any) -> tuple[tuple[str, str], ...]:
    cls = type(headers)
    if cls.__qualname__ == "CaseInsensitiveDict" and cls.__module__ == "requests.structures":
        # requests' own class (not a subclass) keeps ``lower name -> (name, value)`` in order:
        # its values are the pairs ``items()`` gives, without the Python-level ``__iter__``
        # and ``__getitem__`` per header that ``items()`` costs.
        store = getattr(headers, "_store", None)
        if type(store) is OrderedDict:
            return _pairs(store.values())
    return _pairs(headers.items())


def _response_headers(response: Any) -> tuple[tuple[str, str], ...]:
    original = getattr(response, "_original_response", None)
    raw = getattr(getattr(original, "msg", None), "_headers", None)
    if raw is not None:
        return _pairs(raw)
    headers = response.headers
    items = headers.iteritems() if hasattr(headers, "iteritems") else headers.items()
    return _pairs(items)


class _ServedBody:
    """A recorded raw body, read chunk by chunk as http.client's response would give it."""

    def __init__(
        self, exchange: Exchange, headers: tuple[tuple[str, str], ...], error: BaseException | None, method: str
    ) -> None:
        self._chunks = [c for _, c in serve.stream_chunks(exchange)]
        self._error = error
        self._closed = not self._chunks and error is None
        self._method = method
        self.msg = http.client.HTTPMessage()
        for name, value in headers:
            self.msg[name] = value
        if any(k.lower() == "transfer-encoding" and "chunked" in v.lower() for k, v in headers):
            # urllib3's stream() reads chunked bodies chunk by chunk through ``fp``: give it the
            # recorded chunks re-framed, so it yields them with the recorded boundaries. A plain
            # read() (preload_content, as http.client decoding the chunks itself) reads them here;
            # whichever starts first owns the body.
            self.fp = _Frames(self._chunks, self._error, self._give_to_frames)

    def _give_to_frames(self) -> None:
        self._chunks = []
        self._error = None

    def _safe_read(self, amt: int) -> bytes:
        return self.fp.read(amt)

    def _next(self) -> bytes:
        if self._chunks:
            chunk = self._chunks.pop(0)
            if not self._chunks and self._error is None:
                self._closed = True  # like http.client: closed once the body is delivered
            return chunk
        if self._error is not None:
            error, self._error = self._error, None
            self._closed = True
            raise error
        self._closed = True
        return b""

    def read(self, amt: int | None = None) -> bytes:
        """The next recorded chunk (all of them for ``amt=None``)."""
        if amt is None or amt < 0:
            out = []
            while not self._closed:
                out.append(self._next())
            return b"".join(out)
        if self._chunks and len(self._chunks[0]) > amt:
            head, self._chunks[0] = self._chunks[0][:amt], self._chunks[0][amt:]
            return head
        return self._next() if not self._closed else b""

    def read1(self, amt: int = -1) -> bytes:
        """Same as :meth:`read`: a recorded chunk is what one network read returned."""
        return self.read(None if amt is None or amt < 0 else amt)

    def isclosed(self) -> bool:
        """True once the body has been delivered."""
        return self._closed

    @property
    def closed(self) -> bool:
        """True once the body has been delivered."""
        return self._closed

    def close(self) -> None:
        """Nothing to release: no connection was opened."""
        self._closed = True

    def flush(self) -> None:
        """Nothing buffered."""


class _Frames:
    """The recorded chunks in chunked transfer framing, then the recorded error if any."""

    def __init__(self, chunks: list[bytes], error: BaseException | None, on_start: Callable[[], None]) -> None:
        import io

        framed = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
        self._buffer = io.BytesIO(framed if error is not None else framed + b"0\r\n\r\n")
        self._error = error
        self._on_start: Callable[[], None] | None = on_start

    def _start(self) -> None:
        on_start, self._on_start = self._on_start, None
        if on_start is not None:
            on_start()

    def readline(self, limit: int = -1) -> bytes:
        self._start()
        line = self._buffer.readline(limit)
        if not line and self._error is not None:
            error, self._error = self._error, None
            raise error
        return line

    def read(self, amt: int) -> bytes:
        self._start()
        return self._buffer.read(amt)


def _headers_dict(headers: tuple[tuple[str, str], ...]) -> Any:
    from urllib3._collections import HTTPHeaderDict

    out = HTTPHeaderDict()
    for name, value in headers:
        out.add(name, value)
    return out


class Urllib3Adapter:
    """Record and serve urllib3 exchanges at ``HTTPConnectionPool._make_request``."""

    def __init__(self, urllib3: Any) -> None:
        self.urllib3 = urllib3
        self.wrapper = self._make_request
        self._tee_classes: dict[type[Any], type[Any]] = {}

    def install(self) -> None:
        """Patch the connection pool (idempotent)."""
        wrap_innermost(self.urllib3.connectionpool.HTTPConnectionPool, "_make_request", self.wrapper)

    def uninstall(self) -> None:
        """Remove exactly our patch."""
        unwrap_ours(self.urllib3.connectionpool.HTTPConnectionPool, "_make_request", self.wrapper)

    @property
    def installed(self) -> bool:
        """True while our patch is on the connection pool."""
        return is_wrapped(self.urllib3.connectionpool.HTTPConnectionPool, "_make_request", self.wrapper)

    def _make_request(self, wrapped: Any, pool: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not record.capturing():
            return wrapped(*args, **kwargs)
        try:
            bound = _bind(args, kwargs)
            data, send = _body_bytes(bound["body"])
            bound["body"] = send
            headers = bound["headers"] if bound["headers"] is not None else pool.headers
            method = str(bound["method"])
            request = RequestData(method, _url(pool, str(bound["url"])), _request_headers(headers), data)
        except Exception as exc:  # noqa: BLE001 - fall back to the plain call
            record.internal_error(LIBRARY, exc)
            return wrapped(*args, **kwargs)
        call = record.begin(LIBRARY, request)
        if call is None:
            return wrapped(**bound)
        preload = bound["preload_content"]
        decode = bound["decode_content"]
        if call.exchange is not None:
            response = self._serve(call, call.exchange, pool, bound)
        else:
            bound["preload_content"] = False
            token = record.enter_call()
            try:
                response = wrapped(**bound)
            except BaseException as exc:
                call.fail(exc)
                raise
            finally:
                record.exit_call(token)
        try:
            call.head(
                int(response.status),
                _response_headers(response),
                str(response.reason or ""),
                str(getattr(response, "version_string", "HTTP/1.1")),
            )
            response.__class__ = self._tee_class(type(response))
            response._agenttrace_call = call
            response._agenttrace_draining = False
            if _fp_done(response):
                call.finish("complete")
        except Exception as exc:  # noqa: BLE001 - hand the response back untouched
            record.internal_error(LIBRARY, exc)
            call.finish("not_read")
        if preload:
            response._body = response.read(decode_content=decode)
        return response

    def _serve(self, call: Call, exchange: Exchange, pool: Any, bound: dict[str, Any]) -> Any:
        recorded, stream_error = serve.served_parts(
            call,
            exchange,
            _build_error(pool, bound),
            lambda: self.urllib3.exceptions.ProtocolError("recorded call has neither response nor error"),
        )
        body = _ServedBody(exchange, recorded.headers, stream_error, str(bound["method"]))
        version = {"HTTP/1.0": 10, "HTTP/1.1": 11, "HTTP/2": 20, "HTTP/2.0": 20}.get(recorded.http_version, 11)
        return self.urllib3.response.HTTPResponse(
            body=body,
            headers=_headers_dict(recorded.headers),
            status=recorded.status_code,
            version=version,
            version_string=recorded.http_version,
            reason=recorded.reason,
            preload_content=False,
            decode_content=bound["decode_content"],
            original_response=body,
            pool=pool,
            connection=bound["response_conn"],
            retries=bound["retries"],
            enforce_content_length=bound["enforce_content_length"],
            request_method=str(bound["method"]),
            request_url=str(bound["url"]),
        )

    def _tee_class(self, base: type[Any]) -> type[Any]:
        cls = self._tee_classes.get(base)
        if cls is None:
            cls = _make_tee_class(base)
            self._tee_classes[base] = cls
        return cls


_PARAMS = (
    "conn",
    "method",
    "url",
    "body",
    "headers",
    "retries",
    "timeout",
    "chunked",
    "response_conn",
    "preload_content",
    "decode_content",
    "enforce_content_length",
)
_DEFAULTS: dict[str, Any] = {
    "body": None,
    "headers": None,
    "retries": None,
    "chunked": False,
    "response_conn": None,
    "preload_content": True,
    "decode_content": True,
    "enforce_content_length": True,
}


def _bind(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    bound = dict(_DEFAULTS)
    bound.update(zip(_PARAMS, args))
    bound.update(kwargs)
    if "timeout" not in bound:
        from urllib3 import connectionpool

        bound["timeout"] = getattr(connectionpool, "_DEFAULT_TIMEOUT")  # noqa: B009 - private, not re-exported
    return bound


def _build_error(pool: Any, bound: dict[str, Any]) -> Any:
    def build(cls: type[BaseException], message: str) -> BaseException | None:
        from urllib3.exceptions import NewConnectionError, PoolError, RequestError

        # The recorded message is str() of the exception, which already begins with the pool's
        # (or the connection's) name: that prefix is taken off so the constructor's own is not a
        # second one. serve.make_error makes str() the recorded text whatever the prefix was.
        if issubclass(cls, RequestError):
            return cls(pool, str(bound["url"]), _unprefixed(message, f"{pool}: "))
        if issubclass(cls, NewConnectionError):
            return cls(bound["conn"], _unprefixed(message, "<", ">: "))
        if issubclass(cls, PoolError):
            return cls(pool, _unprefixed(message, f"{pool}: "))
        return None

    return build


def _unprefixed(message: str, prefix: str, end: str = "") -> str:
    """``message`` without its leading ``prefix`` (up to and including ``end`` when given)."""
    if not message.startswith(prefix):
        return message
    if not end:
        return message[len(prefix) :]
    cut = message.find(end)
    return message[cut + len(end) :] if cut >= 0 else message


def _fp_done(response: Any) -> bool:
    fp = response._fp
    if fp is None:
        return True
    is_fp_closed = _is_fp_closed[0]
    if is_fp_closed is None:
        # Looked up once: an import statement here ran the import machinery three times per call.
        from urllib3.util.response import is_fp_closed as found

        is_fp_closed = _is_fp_closed[0] = found
    try:
        return bool(is_fp_closed(fp))
    except ValueError:
        return False


_is_fp_closed: list[Callable[[Any], bool] | None] = [None]


def _make_tee_class(base: type[Any]) -> type[Any]:
    """A subclass of ``base`` whose raw reads are recorded; instances are switched to it in place."""

    class TeeHTTPResponse(base):  # type: ignore[misc]
        _agenttrace_call: Call
        _agenttrace_draining: bool

        def _raw_read(self, amt: int | None = None, *, read1: bool = False) -> bytes:
            call = self._agenttrace_call
            try:
                data: bytes = super()._raw_read(amt, read1=read1)
            except BaseException as exc:
                call.finish("error", exc)
                raise
            if data and not self._agenttrace_draining:
                call.chunk(data)
            if _fp_done(self):  # http.client closes itself only once the whole body was read
                call.finish("complete")
            return data

        def _handle_chunk(self, amt: int | None) -> bytes:
            data: bytes = super()._handle_chunk(amt)
            if data and not self._agenttrace_draining:
                self._agenttrace_call.chunk(data)
            return data

        def read_chunked(self, amt: int | None = None, decode_content: bool | None = None) -> Any:
            call = self._agenttrace_call
            try:
                yield from super().read_chunked(amt, decode_content)
            except GeneratorExit:
                raise
            except BaseException as exc:
                call.finish("error", exc)
                raise
            call.finish("complete")

        def drain_conn(self) -> None:
            self._agenttrace_end()
            self._agenttrace_draining = True
            super().drain_conn()

        def close(self) -> None:
            self._agenttrace_end()
            super().close()

        def _agenttrace_end(self) -> None:
            # Completion is recorded where the last bytes are read; reaching here first means the
            # caller gave up on the body.
            call = self.__dict__.get("_agenttrace_call")
            if call is not None:
                call.finish("closed_early" if call.started_body else "not_read")

    TeeHTTPResponse.__name__ = base.__name__
    TeeHTTPResponse.__qualname__ = base.__qualname__
    TeeHTTPResponse.__module__ = base.__module__
    return TeeHTTPResponse


def urllib3_adapter() -> Urllib3Adapter:
    """The process's urllib3 adapter (ModuleNotFoundError with an install hint if urllib3 is missing)."""
    return shared_adapter(LIBRARY, _make_adapter)


def _make_adapter() -> Urllib3Adapter:
    module = import_library("urllib3", "requests")
    import_library("urllib3.connectionpool", "requests")
    import_library("urllib3.response", "requests")
    return Urllib3Adapter(module)
