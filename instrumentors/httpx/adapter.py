"""The adapter between :mod:`agenttrace._capture.record` and httpx-shaped libraries (httpx, httpx2).

httpx2 is a fork of httpx with the same module layout, so one adapter serves both,
parametrised by module. It patches ``HTTPTransport.handle_request`` and
``AsyncHTTPTransport.handle_async_request``: every client using the default transport (all
of them, unless given a custom one) is covered, and redirects, cookies, auth and decoding
stay above the patch, so replay serves responses the client processes exactly as it did.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any

from agenttrace._capture import record
from agenttrace._capture.adapters import import_library, shared_adapter
from agenttrace._capture.model import Exchange, RequestData, ResponseData
from agenttrace._capture.patch import is_wrapped, unwrap_ours, wrap_innermost
from agenttrace._capture.record import Call
from agenttrace._replay import serve

__all__ = ["HttpxAdapter", "adapter_for", "httpx2_adapter", "httpx_adapter"]


def _headers(raw: Any) -> tuple[tuple[str, str], ...]:
    return tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in raw)


def _text(value: Any, default: str) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value if isinstance(value, str) else default


class HttpxAdapter:
    """Record and serve the calls of one httpx-shaped module."""

    def __init__(self, module: ModuleType, library: str) -> None:
        self.module = module
        self.library = library
        # Bound once: the patch is recognised (and removed) by the identity of its wrapper.
        self.sync_wrapper = self._handle_request
        self.async_wrapper = self._handle_async_request
        self._tee_sync, self._tee_async, self._served_sync, self._served_async = _stream_classes(module)

    def install(self) -> None:
        """Patch the module's transports (idempotent)."""
        wrap_innermost(self.module.HTTPTransport, "handle_request", self.sync_wrapper)
        wrap_innermost(self.module.AsyncHTTPTransport, "handle_async_request", self.async_wrapper)

    def uninstall(self) -> None:
        """Remove exactly our patches, leaving any other instrumentation in place."""
        unwrap_ours(self.module.HTTPTransport, "handle_request", self.sync_wrapper)
        unwrap_ours(self.module.AsyncHTTPTransport, "handle_async_request", self.async_wrapper)

    @property
    def installed(self) -> bool:
        """True while our patch is on the module's sync transport."""
        return is_wrapped(self.module.HTTPTransport, "handle_request", self.sync_wrapper)

    # --- sync ---------------------------------------------------------------------------------

    def _handle_request(self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not record.capturing():
            return wrapped(*args, **kwargs)
        request = args[0] if args else kwargs["request"]
        try:
            data = RequestData(request.method, str(request.url), _headers(request.headers.raw), request.read())
        except Exception as exc:  # noqa: BLE001 - fall back to the plain call
            record.internal_error(self.library, exc)
            return wrapped(*args, **kwargs)
        call = record.begin(self.library, data)
        if call is None:
            return wrapped(*args, **kwargs)
        if call.exchange is not None:
            return self._serve(call, call.exchange, request, asynchronous=False)
        token = record.enter_call()
        try:
            response = wrapped(*args, **kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        finally:
            record.exit_call(token)
        return self._tee(call, response, asynchronous=False)

    # --- async --------------------------------------------------------------------------------

    async def _handle_async_request(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if not record.capturing():
            return await wrapped(*args, **kwargs)
        request = args[0] if args else kwargs["request"]
        try:
            body = await request.aread()
            data = RequestData(request.method, str(request.url), _headers(request.headers.raw), body)
        except Exception as exc:  # noqa: BLE001 - fall back to the plain call
            record.internal_error(self.library, exc)
            return await wrapped(*args, **kwargs)
        call = record.begin(self.library, data)
        if call is None:
            return await wrapped(*args, **kwargs)
        if call.exchange is not None:
            return self._serve(call, call.exchange, request, asynchronous=True)
        token = record.enter_call()
        try:
            response = await wrapped(*args, **kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        finally:
            record.exit_call(token)
        return self._tee(call, response, asynchronous=True)

    # --- shared -------------------------------------------------------------------------------

    def _tee(self, call: Call, response: Any, *, asynchronous: bool, served: ResponseData | None = None) -> Any:
        try:
            if served is not None:  # the head replay serves: no need to read it back from the response
                call.head(served.status_code, served.headers, served.reason, served.http_version)
            else:
                ext = response.extensions
                call.head(
                    response.status_code,
                    _headers(response.headers.raw),
                    _text(ext.get("reason_phrase"), ""),
                    _text(ext.get("http_version"), "HTTP/1.1"),
                )
            response.stream = (self._tee_async if asynchronous else self._tee_sync)(response.stream, call)
        except Exception as exc:  # noqa: BLE001 - the response goes back untouched
            record.internal_error(self.library, exc)
            call.finish("not_read")
        return response

    def _build_error(self, request: Any) -> Any:
        module = self.module

        def build(cls: type[BaseException], message: str) -> BaseException | None:
            if issubclass(cls, module.RequestError):
                return cls(message, request=request)  # type: ignore[call-arg]
            return None

        return build

    def _serve(self, call: Call, exchange: Exchange, request: Any, *, asynchronous: bool) -> Any:
        recorded, stream_error = serve.served_parts(
            call,
            exchange,
            self._build_error(request),
            lambda: self.module.TransportError("recorded call has neither response nor error", request=request),
        )
        served: Any = (self._served_async if asynchronous else self._served_sync)(exchange, stream_error)
        response = self.module.Response(
            status_code=recorded.status_code,
            headers=serve.header_bytes(recorded.headers),  # the bytes sent, not ASCII-only text
            stream=served,
            extensions={
                "http_version": recorded.http_version.encode("ascii", "replace"),
                "reason_phrase": recorded.reason.encode("latin-1", "replace"),
            },
        )
        if not call.traced:
            return response  # nothing to record of what the client reads (see record.Call.traced)
        return self._tee(call, response, asynchronous=asynchronous, served=recorded)


def _stream_classes(module: ModuleType) -> tuple[type[Any], type[Any], type[Any], type[Any]]:
    """Tee and served stream classes deriving from ``module``'s byte stream bases (httpx checks isinstance)."""

    class TeeStream(module.SyncByteStream):  # type: ignore[name-defined,misc]
        """Hands each chunk to the client as it arrives and records it on the way."""

        def __init__(self, inner: Any, call: Call) -> None:
            self._inner = inner
            self._call = call

        def __iter__(self) -> Iterator[bytes]:
            call = self._call
            try:
                for chunk in self._inner:
                    try:
                        call.chunk(chunk)
                    except Exception as exc:  # noqa: BLE001 - never break the agent's read
                        record.internal_error(call.library, exc)
                    yield chunk
            except GeneratorExit:
                call.finish("closed_early")
                raise
            except BaseException as exc:
                call.finish("error", exc)
                raise
            call.finish("complete")

        def close(self) -> None:
            try:
                self._inner.close()
            finally:
                self._call.finish("closed_early" if self._call.started_body else "not_read")

        def __del__(self) -> None:
            call = getattr(self, "_call", None)
            if call is not None:
                call.finish("closed_early" if call.started_body else "not_read")

    class AsyncTeeStream(module.AsyncByteStream):  # type: ignore[name-defined,misc]
        """The async twin of TeeStream."""

        def __init__(self, inner: Any, call: Call) -> None:
            self._inner = inner
            self._call = call

        async def __aiter__(self) -> AsyncIterator[bytes]:
            call = self._call
            try:
                async for chunk in self._inner:
                    try:
                        call.chunk(chunk)
                    except Exception as exc:  # noqa: BLE001 - never break the agent's read
                        record.internal_error(call.library, exc)
                    yield chunk
            except GeneratorExit:
                call.finish("closed_early")
                raise
            except BaseException as exc:
                call.finish("error", exc)
                raise
            call.finish("complete")

        async def aclose(self) -> None:
            try:
                await self._inner.aclose()
            finally:
                self._call.finish("closed_early" if self._call.started_body else "not_read")

        def __del__(self) -> None:
            call = getattr(self, "_call", None)
            if call is not None:
                call.finish("closed_early" if call.started_body else "not_read")

    class ServedStream(module.SyncByteStream):  # type: ignore[name-defined,misc]
        """A recorded body, yielded chunk by chunk with the recorded boundaries, then any recorded error."""

        def __init__(self, exchange: Exchange, error: BaseException | None) -> None:
            self.exchange = exchange
            self.error = error

        def __iter__(self) -> Iterator[bytes]:
            for delay, chunk in serve.stream_chunks(self.exchange):
                if delay:
                    time.sleep(delay)
                yield chunk
            if self.error is not None:
                raise self.error

        def close(self) -> None:
            """Nothing to release: no connection was opened."""

    class AsyncServedStream(module.AsyncByteStream):  # type: ignore[name-defined,misc]
        """The async twin of ServedStream."""

        def __init__(self, exchange: Exchange, error: BaseException | None) -> None:
            self.exchange = exchange
            self.error = error

        async def __aiter__(self) -> AsyncIterator[bytes]:
            for delay, chunk in serve.stream_chunks(self.exchange):
                if delay:
                    await asyncio.sleep(delay)
                yield chunk
            if self.error is not None:
                raise self.error

        async def aclose(self) -> None:
            """Nothing to release: no connection was opened."""

    return TeeStream, AsyncTeeStream, ServedStream, AsyncServedStream


def adapter_for(module_name: str, library: str, extra: str | None) -> HttpxAdapter:
    """The process's adapter of ``library`` (ModuleNotFoundError with an install hint if missing)."""
    return shared_adapter(library, lambda: HttpxAdapter(import_library(module_name, extra), library))


def httpx_adapter() -> HttpxAdapter:
    """The adapter of ``httpx``."""
    return adapter_for("httpx", "httpx", None)


def httpx2_adapter() -> HttpxAdapter:
    """The adapter of ``httpx2`` (``pip install 'agenttrace[httpx2]'``)."""
    return adapter_for("httpx2", "httpx2", "httpx2")
