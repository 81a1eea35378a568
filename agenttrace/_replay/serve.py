"""Serving a recorded exchange back to a client: its chunks, their pacing, its errors.

The adapters of ``agenttrace.instrumentors`` call these when the replay lookup (see
:func:`agenttrace._capture.record.set_replay_lookup`) gave them an exchange to serve instead of
doing the real I/O.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterator
from typing import Any

from agenttrace._capture.model import Exchange, RecordedError, ResponseData
from agenttrace._capture.record import Call
from agenttrace._core.errors import ReplayMismatchError
from agenttrace._core.runtime import runtime

__all__ = [
    "check_servable",
    "error_class",
    "make_error",
    "pacing_delays",
    "served_chunks",
    "served_parts",
    "stream_chunks",
]


def error_class(name: str) -> type[BaseException] | None:
    """The exception class a recorded ``agenttrace.error.type`` names, if it can be imported."""
    if "." not in name:
        import builtins

        cls = getattr(builtins, name, None)
        return cls if isinstance(cls, type) and issubclass(cls, BaseException) else None
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module_name, attr_path = ".".join(parts[:cut]), parts[cut:]
        try:
            obj: Any = importlib.import_module(module_name)
        except ImportError:
            continue
        try:
            for attr in attr_path:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj if isinstance(obj, type) and issubclass(obj, BaseException) else None
    return None


def served_chunks(exchange: Exchange) -> list[bytes]:
    """The recorded body split at the recorded chunk boundaries (one chunk when none were kept)."""
    response = exchange.response
    if response is None:
        return []
    data = response.body.data
    if not response.chunk_sizes:
        return [data] if data else []
    out: list[bytes] = []
    pos = 0
    for size in response.chunk_sizes:
        if pos >= len(data):
            break
        out.append(data[pos : pos + size])
        pos += size
    if pos < len(data):
        out.append(data[pos:])
    return out


def pacing_delays(exchange: Exchange) -> list[float]:
    """Seconds to wait before each served chunk: zeros unless ``replay_pacing="recorded"``."""
    response = exchange.response
    if response is None:
        return []
    n = len(served_chunks(exchange))
    if runtime.current_settings().replay_pacing != "recorded" or not response.chunk_offsets_ns:
        return [0.0] * n
    offsets = list(response.chunk_offsets_ns[:n])
    offsets += [offsets[-1] if offsets else 0] * (n - len(offsets))
    delays: list[float] = []
    previous = 0
    for offset in offsets:
        delays.append(max(0, offset - previous) / 1e9)
        previous = offset
    return delays


def check_servable(exchange: Exchange) -> None:
    """Refuse to serve a body cut at the size limit as if it were whole."""
    response = exchange.response
    if response is not None and response.body.truncated:
        raise ReplayMismatchError(
            f"the recorded response to {exchange.request.method} {exchange.request.url} was cut at "
            f"{len(response.body.data)} of {response.body.size} bytes (max_body_bytes); it cannot be "
            "served as if whole. Record again with a larger AGENTTRACE_MAX_BODY_BYTES."
        )


def served_parts(
    call: Call,
    exchange: Exchange,
    build: Callable[[type[BaseException], str], BaseException | None] | None,
    missing: Callable[[], BaseException],
) -> tuple[ResponseData, BaseException | None]:
    """The recorded response to serve and the error to raise after its body, if any.

    Raises (and records on ``call``) when the exchange cannot be served as if whole, or when the
    recorded call failed before a response: the same exception type, built by ``build``, or
    ``missing()`` for a recording that holds neither.
    """
    try:
        check_servable(exchange)
    except BaseException as exc:
        call.fail(exc)
        raise
    stream_error = make_error(exchange.error, build) if exchange.error is not None else None
    if exchange.response is None:
        error = stream_error or missing()
        call.fail(error)
        raise error
    response = exchange.response
    if exchange.extra.get("response_body_filtered") and response.stream_end == "complete":
        # (A body read only in part is a prefix: its length would make it look whole.)
        response = _with_served_length(response)
    return response, stream_error


def _with_served_length(response: ResponseData) -> ResponseData:
    """``response`` whose Content-Length is that of the body served: a filter changed its size.

    The recorded head is the server's, which counted the body before the filter replaced fields
    in it; a client reading by that length would wait for bytes that never come (urllib3 raises
    IncompleteRead) or stop short.
    """
    served = str(len(response.body.data))
    headers = tuple(
        (name, served) if name.lower() == "content-length" else (name, value) for name, value in response.headers
    )
    return dataclasses.replace(response, headers=headers) if headers != response.headers else response


def make_error(
    recorded: RecordedError,
    build: Callable[[type[BaseException], str], BaseException | None] | None = None,
) -> BaseException:
    """An exception of the recorded type (built by the adapter's ``build`` when it knows how)."""
    cls = error_class(recorded.type)
    message = recorded.message or f"{recorded.type} (replayed)"
    if cls is None:
        return ConnectionError(f"{recorded.type}: {message} (replayed; class not importable)")
    if build is not None:
        try:
            built = build(cls, message)
        except Exception:  # noqa: BLE001 - fall back to the generic construction below
            built = None
        if built is not None:
            return built
    try:
        return cls(message)
    except Exception:  # noqa: BLE001 - constructors with other signatures: bypass __init__
        exc = cls.__new__(cls)
        exc.args = (message,)
        return exc


def stream_chunks(exchange: Exchange) -> Iterator[tuple[float, bytes]]:
    """``(delay, chunk)`` pairs to serve, in order."""
    response = exchange.response
    if response is not None and (
        not response.chunk_offsets_ns or runtime.current_settings().replay_pacing != "recorded"
    ):
        # No waits (the default, "instant"): the body split once, each chunk with delay 0.
        return ((0.0, chunk) for chunk in served_chunks(exchange))
    return zip(pacing_delays(exchange), served_chunks(exchange))
