"""The adapter between :mod:`agenttrace._capture.record` and the aiohttp client.

Shared by ``agenttrace.instrumentors.aiohttp.AiohttpInstrumentor`` and by ``@run`` (see
agenttrace._capture.activation), which installs it without importing ``opentelemetry.instrumentation``.

One HTTP attempt is one call, from the connection it needs to the end of its body:

* ``BaseConnector.connect(req)`` opens the call (the request as ``ClientSession`` built it:
  headers, cookies, auth, body) and, in replay, returns a served connection instead of
  connecting (:mod:`agenttrace.instrumentors.aiohttp.served`); redirects, retries, cookies and
  decoding all run above it, live and in replay.
* ``ClientRequest.send`` and ``ClientResponse.start`` report a failure before the response head,
  and the head itself.
* The body is teed where aiohttp's parser hands it over: ``DeflateBuffer.feed_data`` for a
  compressed body (the bytes before decompression), ``StreamReader.feed_data`` otherwise, one
  piece per network read; ``feed_eof`` and ``set_exception`` end it. The connection's protocol
  carries the open call's :class:`_Tee`, so every other reader in the process passes straight through.
"""

from __future__ import annotations

import asyncio
import importlib
from types import ModuleType
from typing import Any

from agenttrace._capture import record
from agenttrace._capture.adapters import import_library, shared_adapter
from agenttrace._capture.model import RequestData
from agenttrace._capture.patch import is_wrapped, unwrap_ours, wrap_innermost
from agenttrace._capture.record import Call

__all__ = ["AiohttpAdapter", "aiohttp_adapter"]

LIBRARY = "aiohttp"
_TEE = "_agenttrace_tee"  # the attribute of a ResponseHandler holding its open call's tee


class _Tee:
    """One open aiohttp call, as the connection's protocol sees it; ends the call exactly once."""

    __slots__ = ("call", "deflated", "ended", "head_known", "pending", "protocol")

    def __init__(self, call: Call, protocol: Any) -> None:
        self.call = call
        self.protocol = protocol
        self.deflated = False  # the body goes through a DeflateBuffer: record there, not after it
        self.head_known = False
        self.pending: list[bytes] = []  # body bytes parsed together with the head, before start() returned
        self.ended: tuple[str, BaseException | None] | None = None

    def body(self, data: Any) -> None:
        if not data:
            return
        try:
            if self.head_known:
                self.call.chunk(bytes(data))
            else:
                self.pending.append(bytes(data))
        except Exception as exc:  # noqa: BLE001 - never break the agent's read
            record.internal_error(LIBRARY, exc)

    def head(self, response: Any) -> None:
        try:
            version = response.version
            self.call.head(
                int(response.status),
                tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers),
                str(response.reason or ""),
                f"HTTP/{version.major}.{version.minor}" if version is not None else "HTTP/1.1",
            )
        except Exception as exc:  # noqa: BLE001 - the response goes back untouched
            record.internal_error(LIBRARY, exc)
            self._detach()
            self.call.finish("not_read")
            return
        self.head_known = True
        pending, self.pending = self.pending, []
        for data in pending:
            self.body(data)
        if self.ended is not None:
            self.end(*self.ended)

    def end(self, how: str, error: BaseException | None = None) -> None:
        if not self.head_known:
            if self.ended is None:
                self.ended = (how, error)  # told once the head is known (see head)
            return
        self._detach()
        self.call.finish(how, error)

    def fail(self, error: BaseException) -> None:
        self._detach()
        self.call.fail(error)

    def _detach(self) -> None:
        protocol = self.protocol
        if protocol is not None and getattr(protocol, _TEE, None) is self:
            setattr(protocol, _TEE, None)
        self.protocol = None


def _tee_of(reader: Any) -> _Tee | None:
    """The open call ``reader`` belongs to, or None.

    A reader that has already ended (at its end of body, or failed) belongs to a call that has
    ended too: what it is told later is not news for the call now on its kept-alive connection.
    (A response released after its body was read, once its connection has been taken from the
    pool by the next request, sets "Connection closed" on its own, finished reader.)
    """
    tee = getattr(getattr(reader, "_protocol", None), _TEE, None)
    if type(tee) is not _Tee or reader.is_eof() or reader.exception() is not None:
        return None
    return tee


async def _request_body(req: Any) -> bytes:
    """The request body as bytes; aiohttp's payloads can be read again for the send (3.12+: ``as_bytes``)."""
    body = req.body
    if not body:
        return b""
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    as_bytes = getattr(body, "as_bytes", None)
    if as_bytes is not None:
        return bytes(await as_bytes())
    value = getattr(body, "_value", None)  # aiohttp < 3.12: BytesPayload and its subclasses
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise TypeError(f"cannot read a {type(body).__name__} request body before it is sent")


class AiohttpAdapter:
    """Record and serve aiohttp client calls (see the module docstring for the patches)."""

    def __init__(self, aiohttp: ModuleType) -> None:
        self.aiohttp = aiohttp
        connector = importlib.import_module("aiohttp.connector")
        reqrep = importlib.import_module("aiohttp.client_reqrep")
        streams = importlib.import_module("aiohttp.streams")
        parser = importlib.import_module("aiohttp.http_parser")
        # (owner, method, wrapper): bound once, a patch is recognised by the identity of its wrapper.
        self._patches: tuple[tuple[type[Any], str, Any], ...] = (
            (connector.BaseConnector, "connect", self._connect),
            (reqrep.ClientRequest, "send", self._send),
            (reqrep.ClientResponse, "start", self._start),
            (streams.StreamReader, "feed_data", self._feed_data),
            (streams.StreamReader, "feed_eof", self._feed_eof),
            (streams.StreamReader, "set_exception", self._set_exception),
            (parser.DeflateBuffer, "feed_data", self._deflate_feed_data),
        )

    def install(self) -> None:
        """Patch aiohttp's client (idempotent)."""
        for owner, name, wrapper in self._patches:
            wrap_innermost(owner, name, wrapper)

    def uninstall(self) -> None:
        """Remove exactly our patches."""
        for owner, name, wrapper in self._patches:
            unwrap_ours(owner, name, wrapper)

    @property
    def installed(self) -> bool:
        """True while our patch is on the connector."""
        owner, name, wrapper = self._patches[0]
        return is_wrapped(owner, name, wrapper)

    # --- the call: opened at connect, served there in replay -----------------------------------

    async def _connect(self, wrapped: Any, connector: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not record.capturing():
            return await wrapped(*args, **kwargs)
        req = args[0] if args else kwargs["req"]
        if "Upgrade" in req.headers:
            # A WebSocket handshake (ws_connect): its frames are not HTTP, so neither recorded nor
            # served here; the connection is a raw one, which governance replay stops.
            return await wrapped(*args, **kwargs)
        try:
            headers = tuple((str(k), str(v)) for k, v in req.headers.items())
            data = RequestData(str(req.method), str(req.url), headers, await _request_body(req))
        except Exception as exc:  # noqa: BLE001 - fall back to the plain call
            record.internal_error(LIBRARY, exc)
            return await wrapped(*args, **kwargs)
        call = record.begin(LIBRARY, data)
        if call is None:
            return await wrapped(*args, **kwargs)
        if call.exchange is not None:
            from agenttrace.instrumentors.aiohttp.served import served_connection

            connection = served_connection(call, call.exchange, connector, req)
        else:
            token = record.enter_call()  # its DNS lookups and connects are this call's
            try:
                connection = await wrapped(*args, **kwargs)
            except BaseException as exc:
                call.fail(self._as_the_session_raises(exc, req))
                raise
            finally:
                record.exit_call(token)
        try:
            setattr(connection.protocol, _TEE, _Tee(call, connection.protocol))
        except Exception as exc:  # noqa: BLE001 - the connection goes back untouched
            record.internal_error(LIBRARY, exc)
            call.finish("not_read")
        return connection

    def _as_the_session_raises(self, exc: BaseException, req: Any) -> BaseException:
        """A connect timeout as the agent gets it: ``ClientSession`` turns it into ``ConnectionTimeoutError``.

        Recorded so, replay can tell it from a timeout while waiting for the head (a plain
        ``TimeoutError`` too), which is served from ``ClientResponse.start()`` instead.
        """
        wrapper: type[BaseException] | None = getattr(self.aiohttp, "ConnectionTimeoutError", None)  # 3.10 and later
        if wrapper is not None and isinstance(exc, asyncio.TimeoutError) and not isinstance(exc, wrapper):
            return wrapper(f"Connection timeout to host {req.url}")  # ClientSession's own text
        return exc

    async def _send(self, wrapped: Any, request: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            return await wrapped(*args, **kwargs)
        except BaseException as exc:
            connection = args[0] if args else kwargs.get("conn")
            tee = getattr(getattr(connection, "protocol", None), _TEE, None)
            if type(tee) is _Tee:
                tee.fail(exc)
            raise

    async def _start(self, wrapped: Any, response: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        connection = args[0] if args else kwargs.get("connection")
        tee = getattr(getattr(connection, "protocol", None), _TEE, None)
        if type(tee) is not _Tee:
            return await wrapped(*args, **kwargs)
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            tee.fail(exc)
            raise
        tee.head(response)
        return result

    # --- the body, where the parser hands it over ----------------------------------------------

    def _feed_data(self, wrapped: Any, reader: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        tee = _tee_of(reader)
        if tee is not None and not tee.deflated:
            tee.body(args[0] if args else kwargs.get("data"))
        return wrapped(*args, **kwargs)

    def _deflate_feed_data(self, wrapped: Any, buffer: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        tee = _tee_of(getattr(buffer, "out", None))
        if tee is not None:
            tee.deflated = True
            tee.body(args[0] if args else kwargs.get("chunk"))
        return wrapped(*args, **kwargs)

    def _feed_eof(self, wrapped: Any, reader: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        tee = _tee_of(reader)  # before: an ended reader is no open call's
        result = wrapped(*args, **kwargs)
        if tee is not None:
            tee.end("complete")
        return result

    def _set_exception(self, wrapped: Any, reader: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        tee = _tee_of(reader)
        if tee is not None:
            tee.end("error", args[0] if args else kwargs.get("exc"))
        return wrapped(*args, **kwargs)


def aiohttp_adapter() -> AiohttpAdapter:
    """The process's aiohttp adapter (ModuleNotFoundError with an install hint if aiohttp is missing)."""
    return shared_adapter(LIBRARY, lambda: AiohttpAdapter(import_library("aiohttp", "aiohttp")))
