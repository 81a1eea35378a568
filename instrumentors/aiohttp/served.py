"""A recorded aiohttp exchange served as a connection: aiohttp's own parser reads the recorded bytes.

Replay hands ``ClientSession`` a :class:`ServedConnection` instead of opening one. Its protocol
is aiohttp's own ``ResponseHandler``, fed the recorded response as it came off the wire: the
status line and headers, then the raw body (still content-encoded, re-framed in chunks when the
recording was chunked). So aiohttp parses, de-chunks, decompresses, follows redirects and sets
cookies exactly as it did live, and nothing is connected: no DNS, no socket.

Body chunks are fed on demand: each time the client's reader would wait for the network, the
next recorded chunk arrives. A reader that keeps up (``iter_any()``, ``iter_chunked()``,
``readline()``, an SSE loop) therefore sees the recorded chunks with their recorded boundaries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import client_exceptions
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import BaseConnector, Connection
from aiohttp.streams import StreamReader

from agenttrace._capture.model import Exchange, ResponseData
from agenttrace._capture.record import Call
from agenttrace._replay import serve

__all__ = ["ServedConnection", "served_connection"]

_CHUNKED_END = b"0\r\n\r\n"


def _has_header(headers: tuple[tuple[str, str], ...], name: str, token: str) -> bool:
    return any(k.lower() == name and token in v.lower() for k, v in headers)


def _head(response: ResponseData) -> bytes:
    """The status line and headers as the server sent them (header bytes are latin-1 text, see serve.header_bytes)."""
    status = f"{response.http_version or 'HTTP/1.1'} {response.status_code} {response.reason}".rstrip()
    lines = [status.encode("latin-1", "replace")]
    lines.extend(name + b": " + value for name, value in serve.header_bytes(response.headers))
    return b"\r\n".join(lines) + b"\r\n\r\n"


class _ServedTransport(asyncio.Transport):
    """Takes the request's bytes and drops them: the answer is already known."""

    def __init__(self, protocol: ResponseHandler) -> None:
        super().__init__()
        self._protocol = protocol
        self._closing = False

    def write(self, data: Any) -> None:
        """Nothing is sent."""

    def writelines(self, list_of_data: Any) -> None:
        """Nothing is sent."""

    def write_eof(self) -> None:
        """Nothing is sent."""

    def can_write_eof(self) -> bool:
        """aiohttp never half-closes a client connection."""
        return False

    def get_write_buffer_size(self) -> int:
        """Nothing is ever buffered."""
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Writes never pause."""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """No socket, no peer, no TLS object."""
        return default

    def is_reading(self) -> bool:
        """Reading is driven by the client's reads (see the module docstring)."""
        return not self._closing

    def pause_reading(self) -> None:
        """Chunks are fed only when the client asks for more."""

    def resume_reading(self) -> None:
        """Chunks are fed only when the client asks for more."""

    def is_closing(self) -> bool:
        """True once closed."""
        return self._closing

    def close(self) -> None:
        """Close as a socket transport would: the protocol hears of it on the next loop turn."""
        if self._closing:
            return
        self._closing = True
        try:
            self._protocol._loop.call_soon(self._protocol.connection_lost, None)
        except RuntimeError:  # the loop is closed (a connection collected after asyncio.run ended)
            self._protocol.connection_lost(None)

    def abort(self) -> None:
        """Same as :meth:`close`: there is nothing to flush."""
        self.close()


class ServedProtocol(ResponseHandler):
    """aiohttp's response protocol, fed the recorded response instead of a socket's bytes."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        head: bytes = b"",
        frames: list[tuple[float, bytes]] | None = None,
        end: bytes | None = None,
        stream_error: BaseException | None = None,
        request_error: BaseException | None = None,
    ) -> None:
        super().__init__(loop)
        self._served_head = head
        self._served_frames = frames or []
        self._served_end = end
        self._served_error = stream_error
        self._request_error = request_error
        self._served_done = False

    def _reschedule_timeout(self) -> None:
        # No read timeout can fire on a served connection: a recorded timeout is served as the
        # recorded error, and a client that pauses between reads must not time out here.
        self._drop_timeout()

    def set_response_params(self, **kwargs: Any) -> None:
        """aiohttp is ready to parse: the recorded response arrives on the next turn of the loop."""
        super().set_response_params(**kwargs)
        # Not at once: the request (and its body's writer task) goes out first, as live, so
        # that no task of the request's finds its response already over.
        self._loop.call_soon(self._respond)

    def _respond(self) -> None:
        """The head (or the recorded failure) arrives; the body waits for the client's reads."""
        if self.transport is None:  # closed meanwhile
            return
        if self._request_error is not None:
            self.set_exception(self._request_error)  # what start() raises, as live
            return
        self.data_received(self._served_head)
        reader = self._payload
        if type(reader) is StreamReader:
            reader.__class__ = ServedReader  # same layout (no new slots): reads pull the next chunk
        else:  # no body (HEAD, 204), or an aiohttp whose reader is not the one known here
            while self.feed_next(None):
                pass

    def next_delay(self) -> float:
        """Seconds to wait before the next chunk (``replay_pacing="recorded"``), else 0."""
        return self._served_frames[0][0] if self._served_frames else 0.0

    def feed_next(self, reader: StreamReader | None) -> bool:
        """Feed recorded bytes until ``reader`` has something new; False when nothing was left to feed."""
        if self._served_done:
            return False
        before = _progress(reader)
        while self._served_frames:
            _, frame = self._served_frames.pop(0)
            self.data_received(frame)
            if reader is not None and _progress(reader) != before:
                return True
        self._served_done = True
        if self._served_end is not None:
            self.data_received(self._served_end)
        elif self._served_error is not None:
            payload = self._payload
            self.force_close()
            if payload is not None:
                payload.set_exception(self._served_error)
        elif self._payload is not None and not self._payload.is_eof():
            # The recording ends here without an end of body (a read-until-close body, or one the
            # client stopped reading live): end it as the server closing the connection would.
            super().connection_lost(None)
        return True


def _progress(reader: StreamReader | None) -> tuple[int, bool, bool]:
    if reader is None:
        return (0, False, False)
    return (reader.total_bytes, reader.is_eof(), reader.exception() is not None)


class ServedReader(StreamReader):
    """The body reader of a served response: a read that would wait gets the next recorded chunk."""

    __slots__ = ()

    async def _wait(self, func_name: str) -> None:
        protocol = self._protocol
        if isinstance(protocol, ServedProtocol):
            # At least one turn of the loop, as a network read takes: the request's body is
            # written by a task of its own, which must not find the response already over.
            await asyncio.sleep(protocol.next_delay())
            if protocol.feed_next(self):
                error = self.exception()
                if error is not None:
                    raise error
                return
        await super()._wait(func_name)


class ServedConnection(Connection):
    """A connection no connector opened: released or closed, it closes its protocol and is never pooled."""

    def close(self) -> None:
        """Close the served protocol."""
        self._notify_release()
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            protocol.close()

    release = close

    def __del__(self, _warnings: Any = None) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and not self._loop.is_closed():
            protocol.close()


# Raised by ``connector.connect()`` live: served from the same place. Every other error of a call
# that got no response head (a server that hung up, a read timeout) came out of
# ``ClientResponse.start()`` and is served from there, so that aiohttp's own handling
# (the retry of an idempotent request on a dropped keep-alive connection) runs as it did.
_CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    client_exceptions.ClientConnectorError,
    client_exceptions.ClientHttpProxyError,
)


def _raised_by_connect(error: BaseException) -> bool:
    # A connect timeout is recorded as the ConnectionTimeoutError the session made of it (see
    # the adapter); raised by the connector again, the session wraps it again, with the same text.
    timeout = getattr(client_exceptions, "ConnectionTimeoutError", None)
    return isinstance(error, _CONNECT_ERRORS) or (timeout is not None and isinstance(error, timeout))


def _strerror(message: str) -> str:
    """The ``[...]`` a ClientConnectorError's text ends with: its OSError's strerror."""
    if message.endswith("]") and " [" in message:
        return message[message.rindex(" [") + 2 : -1]
    return message


def error_builder(req: ClientRequest) -> Callable[[type[BaseException], str], BaseException | None]:
    """Build aiohttp's own exceptions of ``req`` from a recorded type and message (see serve.make_error)."""

    def build(cls: type[BaseException], message: str) -> BaseException | None:
        if issubclass(cls, client_exceptions.ClientConnectorError) and cls.__init__ is (
            client_exceptions.ClientConnectorError.__init__
        ):
            # str() is made of the connection key and the OSError's strerror (its errno is not recorded).
            return cls(req.connection_key, OSError(None, _strerror(message)))
        if issubclass(cls, client_exceptions.ClientResponseError):
            return cls(req.request_info, (), message=message)
        return None

    return build


def served_connection(call: Call, exchange: Exchange, connector: BaseConnector, req: ClientRequest) -> Connection:
    """A connection that answers ``req`` with ``exchange``, or the recorded connect error raised."""
    loop = asyncio.get_running_loop()
    build = error_builder(req)
    if exchange.response is None:
        error = (
            serve.make_error(exchange.error, build)
            if exchange.error is not None
            else client_exceptions.ServerDisconnectedError("recorded call has neither response nor error")
        )
        call.fail(error)
        if _raised_by_connect(error):
            raise error
        protocol = ServedProtocol(loop, request_error=error)
    else:
        recorded, stream_error = serve.served_parts(call, exchange, build, client_exceptions.ServerDisconnectedError)
        chunked = _has_header(recorded.headers, "transfer-encoding", "chunked")
        frames = [
            (delay, b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            for delay, chunk in serve.stream_chunks(exchange)
        ]
        end = _CHUNKED_END if chunked and recorded.stream_end == "complete" and stream_error is None else None
        protocol = ServedProtocol(loop, head=_head(recorded), frames=frames, end=end, stream_error=stream_error)
    protocol.connection_made(_ServedTransport(protocol))
    return ServedConnection(connector, req.connection_key, protocol, loop)
