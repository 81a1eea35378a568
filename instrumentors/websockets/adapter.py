"""The adapter between :mod:`agenttrace._capture` / :mod:`agenttrace._replay` and the ``websockets`` asyncio client.

Patches (each placed innermost and removed exactly, :mod:`agenttrace._capture.patch`):

* ``websockets.asyncio.client.connect.connect``, the coroutine behind ``await connect(...)``,
  ``async with connect(...)`` and ``async for ... in connect(...)``: one call span per connection,
  its request the opening handshake as the library builds it (``Sec-WebSocket-Key``, a random
  nonce, left out), its response the server's handshake response;
* ``websockets.protocol.Protocol.send_frame`` and ``recv_frame`` (the Sans-I/O layer): the frames
  of the connections opened through the patch, recorded in :class:`FrameLog`, and the library's
  own random draws there (each frame's mask) kept out of the run's entropy;
* ``websockets.asyncio.connection.Connection.send``: raises a governance violation found in the
  frame the agent just sent on a served connection.

In replay the served connection is the library's own ``ClientConnection``, opened on a transport
that sends nothing anywhere: the recorded received frames go through the library's own parsing
(fragments, UTF-8, ``max_size``, the closing handshake), in the order of :mod:`agenttrace._replay.websocket`.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any
from urllib.parse import urlsplit

from agenttrace._capture import record
from agenttrace._capture.adapters import import_library, shared_adapter
from agenttrace._capture.model import Exchange, RequestData, WebSocketFrame
from agenttrace._capture.patch import is_wrapped, unwrap_ours, wrap_innermost
from agenttrace._capture.record import Call
from agenttrace._capture.websocket import OPCODES, FrameLog
from agenttrace._replay import entropy, serve
from agenttrace._replay.websocket import FrameScript, check_frames_servable

__all__ = ["LIBRARY", "WebSocketsAdapter", "websockets_adapter"]

LIBRARY = "websockets"
_OPCODE_NUMBERS = {name: number for number, name in OPCODES.items()}


class _Tap:
    """What the frame patches do for one connection's Sans-I/O protocol."""

    __slots__ = ("log", "served")

    def __init__(self, log: FrameLog | None, served: _Served | None = None) -> None:
        self.log = log
        self.served = served


# Sans-I/O protocol -> its tap; a connection not opened through the patch has none.
_taps: weakref.WeakKeyDictionary[Any, _Tap] = weakref.WeakKeyDictionary()


class WebSocketsAdapter:
    """Record and serve the connections of the ``websockets`` asyncio client."""

    def __init__(self) -> None:
        self.client = import_library("websockets.asyncio.client", "websockets")
        self.connection = import_library("websockets.asyncio.connection", "websockets")
        self.protocol = import_library("websockets.protocol", "websockets")
        self.frames = import_library("websockets.frames", "websockets")
        self.http11 = import_library("websockets.http11", "websockets")
        self.datastructures = import_library("websockets.datastructures", "websockets")
        self.exceptions = import_library("websockets.exceptions", "websockets")
        # Bound once: the patches are recognised (and removed) by the identity of their wrappers.
        self.connect_wrapper = self._connect
        self.send_frame_wrapper = self._send_frame
        self.recv_frame_wrapper = self._recv_frame
        self.send_wrapper = self._send

    def _patches(self) -> list[tuple[type[Any], str, Any]]:
        return [
            (self.client.connect, "connect", self.connect_wrapper),
            (self.protocol.Protocol, "send_frame", self.send_frame_wrapper),
            (self.protocol.Protocol, "recv_frame", self.recv_frame_wrapper),
            (self.connection.Connection, "send", self.send_wrapper),
        ]

    @property
    def supported(self) -> bool:
        """True for websockets 17 and later, whose client opens connections in ``connect.connect``.

        Older releases are left unpatched, without a warning (many environments hold one only as
        another package's dependency): their connections stay raw socket connections, which a
        governance replay stops as leaks.
        """
        return callable(getattr(self.client.connect, "connect", None))

    def install(self) -> None:
        """Patch the client (idempotent); nothing on a release older than 17 (see :attr:`supported`)."""
        if not self.supported:
            return
        for owner, name, wrapper in self._patches():
            wrap_innermost(owner, name, wrapper)

    def uninstall(self) -> None:
        """Remove exactly our patches, leaving any other instrumentation in place."""
        if not self.supported:
            return
        for owner, name, wrapper in self._patches():
            unwrap_ours(owner, name, wrapper)

    @property
    def installed(self) -> bool:
        """True while our patch is on ``connect``."""
        return self.supported and is_wrapped(self.client.connect, "connect", self.connect_wrapper)

    # --- the connection -------------------------------------------------------------------------

    async def _connect(self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not record.capturing():
            return await wrapped(*args, **kwargs)
        try:
            probe, request = self._handshake_request(instance)
            data = RequestData("GET", str(instance.uri), _request_headers(request.headers), b"")
        except Exception as exc:  # noqa: BLE001 - fall back to the plain connection
            record.internal_error(LIBRARY, exc)
            return await wrapped(*args, **kwargs)
        call = record.begin(LIBRARY, data)
        if call is None:
            return await wrapped(*args, **kwargs)
        if call.exchange is not None:
            return self._serve(call, call.exchange, probe, request, data.url)
        return await self._record(call, wrapped, instance, args, kwargs)

    def _handshake_request(self, instance: Any) -> tuple[Any, Any]:
        """A connection object as ``connect`` makes it, and the handshake request it would send."""
        with entropy.exempt():  # the handshake key is the library's draw, not the agent's
            probe = instance.factory(instance.ws_uri)
            request = probe.protocol.connect()
        # As ClientConnection.handshake completes it.
        if instance.additional_headers is not None:
            request.headers.update(instance.additional_headers)
        if instance.user_agent_header is not None:
            request.headers.setdefault("User-Agent", instance.user_agent_header)
        return probe, request

    async def _record(
        self, call: Call, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        tap = _Tap(FrameLog(call))
        original = instance.factory

        def factory(uri: Any) -> Any:
            with entropy.exempt():
                connection = original(uri)
            _taps[connection.protocol] = tap
            return connection

        instance.factory = factory
        token = record.enter_call()  # the socket instrumentor stays quiet: the connect is this call's
        try:
            connection = await wrapped(*args, **kwargs)
        except BaseException as exc:
            self._failed(call, exc)
            raise
        finally:
            instance.factory = original
            record.exit_call(token)
        try:
            response = connection.response
            call.head(response.status_code, _headers(response.headers), response.reason_phrase)
            connection.connection_lost_waiter.add_done_callback(lambda _: call.finish("complete"))
        except Exception as exc:  # noqa: BLE001 - the connection goes back untouched
            record.internal_error(LIBRARY, exc)
            call.finish("not_read")
        return connection

    def _failed(self, call: Call, exc: BaseException) -> None:
        response = getattr(exc, "response", None)
        if isinstance(exc, self.exceptions.InvalidStatus) and response is not None:
            # The server answered the handshake with another status: its head and body are the answer.
            call.head(response.status_code, _headers(response.headers), response.reason_phrase)
            call.chunk(bytes(response.body or b""))
            call.finish("complete", exc)
        else:
            call.fail(exc)

    # --- replay ---------------------------------------------------------------------------------

    def _serve(self, call: Call, exchange: Exchange, probe: Any, request: Any, url: str) -> Any:
        try:
            check_frames_servable(exchange)
        except BaseException as exc:
            call.fail(exc)
            raise

        def build(cls: type[BaseException], message: str) -> BaseException | None:
            if issubclass(cls, self.exceptions.InvalidStatus) and exchange.response is not None:
                return cls(self._response(exchange))
            return None

        recorded, error = serve.served_parts(
            call, exchange, build, lambda: ConnectionError("recorded connection has neither response nor error")
        )
        call.head(recorded.status_code, recorded.headers, recorded.reason)
        if error is not None or recorded.status_code != 101:
            if error is None:
                error = self.exceptions.InvalidStatus(self._response(exchange))
            call.finish("complete", error)
            raise error
        connection = probe
        connection.request = request
        connection.response = self._response(exchange)
        protocol = connection.protocol
        protocol.state = self.protocol.State.OPEN
        # The parser started waiting for the handshake response; open, it reads frames.
        protocol.parser = protocol.parse()
        next(protocol.parser)
        subprotocol = connection.response.headers.get("Sec-WebSocket-Protocol")
        if subprotocol:
            protocol.subprotocol = subprotocol
        served = _Served(self, connection, FrameScript(exchange, call.rules, LIBRARY, f"GET {url}"), url)
        _taps[protocol] = _Tap(FrameLog(call), served)
        connection.connection_lost_waiter.add_done_callback(lambda _: call.finish("complete"))
        served.start()
        return connection

    def _response(self, exchange: Exchange) -> Any:
        recorded = exchange.response
        assert recorded is not None
        headers = self.datastructures.Headers(list(recorded.headers))
        return self.http11.Response(recorded.status_code, recorded.reason, headers, recorded.body.data)

    # --- frames ---------------------------------------------------------------------------------

    def _send_frame(self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        tap = _taps.get(instance)
        if tap is None:
            return wrapped(*args, **kwargs)
        with entropy.exempt():  # the frame's mask: the library's draw, not the agent's
            result = wrapped(*args, **kwargs)
        try:
            frame = args[0] if args else kwargs["frame"]
            if tap.log is not None:
                tap.log.add("sent", frame.opcode, frame.data, frame.fin)
            if tap.served is not None:
                tap.served.sent(frame)
        except Exception as exc:  # noqa: BLE001 - never break the agent's send
            record.internal_error(LIBRARY, exc)
        return result

    def _recv_frame(self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        tap = _taps.get(instance)
        if tap is not None and tap.log is not None:
            # Before the protocol handles it: its answer (the echo of a close) comes after it.
            try:
                frame = args[0] if args else kwargs["frame"]
                tap.log.add("received", frame.opcode, frame.data, frame.fin)
            except Exception as exc:  # noqa: BLE001 - never break the agent's read
                record.internal_error(LIBRARY, exc)
        return wrapped(*args, **kwargs)

    async def _send(self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        tap = _taps.get(getattr(instance, "protocol", None))
        served = tap.served if tap is not None else None
        if served is not None and served.halted is not None:
            raise served.halted  # the connection already failed governance
        result = await wrapped(*args, **kwargs)
        if served is not None and served.error is not None:
            served.halted, served.error = served.error, None
            raise served.halted
        return result


class _Served:
    """A recorded connection served on a transport that goes nowhere: what the server would send."""

    def __init__(self, adapter: WebSocketsAdapter, connection: Any, script: FrameScript, url: str) -> None:
        self.adapter = adapter
        self.connection = connection
        self.script = script
        self.loop: asyncio.AbstractEventLoop = connection.loop
        self.transport = _ServedTransport(self, url)
        self.error: BaseException | None = None  # a violation in the frame being sent, raised by send()
        self.halted: BaseException | None = None
        self.close_fed = False

    def start(self) -> None:
        """Open the connection and deliver the frames the server sent before the agent's first."""
        self.connection.connection_made(self.transport)
        self._later(self.script.due())

    def sent(self, frame: Any) -> None:
        """The agent's connection sent ``frame``: check it, then deliver what the recording says comes next."""
        opcode = int(frame.opcode)
        name = OPCODES.get(opcode)
        if name == "close":
            frames = self.script.close_sent()
            if not self.close_fed and not any(f.opcode == "close" for f in frames):
                frames.append(WebSocketFrame("received", "close", bytes(frame.data)))  # the server's echo
            self._later(frames)
            self.loop.call_soon(self.transport.close)  # then the server closes the TCP connection
        elif name is not None:
            if self.halted is None:
                error = self.script.sent_frame(name, bytes(frame.data), bool(frame.fin))
                if error is not None and self.error is None:
                    self.error = error
            self._later(self.script.due())
        elif opcode == int(self.adapter.frames.Opcode.PING):
            pong = self.adapter.frames.Frame(self.adapter.frames.Opcode.PONG, bytes(frame.data))
            self.loop.call_soon(self._deliver, [pong])

    def _later(self, frames: list[WebSocketFrame]) -> None:
        if frames:
            module = self.adapter.frames
            built = [module.Frame(module.Opcode(_OPCODE_NUMBERS[f.opcode]), f.data, f.fin) for f in frames]
            self.loop.call_soon(self._deliver, built)

    def _deliver(self, frames: list[Any]) -> None:
        if self.transport.is_closing():
            return
        if any(int(f.opcode) == int(self.adapter.frames.Opcode.CLOSE) for f in frames):
            self.close_fed = True
        data = b"".join(f.serialize(mask=False, extensions=[]) for f in frames)
        self.connection.data_received(data)


class _ServedTransport(asyncio.Transport):
    """The served connection's transport: writes go nowhere, closing ends the connection."""

    def __init__(self, served: _Served, url: str) -> None:
        parts = urlsplit(url)
        super().__init__(extra={"peername": (parts.hostname, parts.port or (443 if parts.scheme == "wss" else 80))})
        self._served = served
        self._closing = False

    def write(self, data: Any) -> None:
        """Nothing is sent: the frames were checked as the protocol built them."""

    def writelines(self, list_of_data: Any) -> None:
        """Nothing is sent."""

    def can_write_eof(self) -> bool:
        """Half-closing is accepted (and does nothing)."""
        return True

    def write_eof(self) -> None:
        """Nothing is sent."""

    def get_write_buffer_size(self) -> int:
        """Nothing is ever buffered."""
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """No buffer to limit."""

    def pause_reading(self) -> None:
        """The recorded frames are already in memory."""

    def resume_reading(self) -> None:
        """The recorded frames are already in memory."""

    def is_reading(self) -> bool:
        """True until closed."""
        return not self._closing

    def is_closing(self) -> bool:
        """True once closed."""
        return self._closing

    def close(self) -> None:
        """End the connection as the server closing it would."""
        if self._closing:
            return
        self._closing = True
        self._served.loop.call_soon(self._served.connection.connection_lost, None)

    def abort(self) -> None:
        """As :meth:`close`."""
        self.close()


def _headers(headers: Any) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), str(v)) for k, v in headers.raw_items())


def _request_headers(headers: Any) -> tuple[tuple[str, str], ...]:
    # The key is a fresh nonce per connection, and the one built here is not the one sent.
    return tuple(pair for pair in _headers(headers) if pair[0].lower() != "sec-websocket-key")


def websockets_adapter() -> WebSocketsAdapter:
    """The process's adapter of ``websockets`` (``pip install 'agenttrace[websockets]'``)."""
    return shared_adapter(LIBRARY, WebSocketsAdapter)
