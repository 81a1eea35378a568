"""Serving a recorded exchange back to a client: its chunks, their pacing, its errors.

The adapters of ``agenttrace.instrumentors`` call these when the replay lookup (see
:func:`agenttrace._capture.record.set_replay_lookup`) gave them an exchange to serve instead of
doing the real I/O.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from agenttrace._capture.model import Exchange, RecordedError, ResponseData
from agenttrace._capture.record import Call
from agenttrace._core.errors import ReplayMismatchError
from agenttrace._core.runtime import runtime

__all__ = [
    "MAX_PACING_GAP_S",
    "MAX_PACING_TOTAL_S",
    "RecordedArgument",
    "check_servable",
    "error_class",
    "header_bytes",
    "make_error",
    "pacing_delays",
    "served_chunks",
    "served_parts",
    "stream_chunks",
]


# replay_pacing="recorded" waits at most this long before one chunk, and at most the second
# bound over one response: a recording with absurd offsets (a clock jump, an edited file) must not
# hang the replay for days. Gaps beyond a bound are cut to it; docs/replay.md states both.
MAX_PACING_GAP_S = 30.0
MAX_PACING_TOTAL_S = 300.0


def header_bytes(headers: Sequence[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Recorded headers as the bytes the server sent.

    The clients decode header bytes as latin-1 (httpx, http.client for urllib3), so each recorded
    character is one byte: encoding back as latin-1 gives the exact bytes, a ``café`` sent as
    UTF-8 included. Text that cannot come from that decoding (a character above U+00FF, written
    by hand into a trace file) is sent as UTF-8.
    """
    out: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        out.append((_latin1(name), _latin1(value)))
    return out


def _latin1(text: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


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
    budget = MAX_PACING_TOTAL_S
    for offset in offsets:
        delay = min(max(0, offset - previous) / 1e9, MAX_PACING_GAP_S, budget)
        budget -= delay
        delays.append(delay)
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
    """An exception of the recorded type, whose ``str()`` is the recorded message.

    The adapter's ``build`` constructs the library's own exceptions (with the request, the pool);
    an ``OSError`` gets back its ``errno`` and ``strerror`` from its recorded text, which is
    ``[Errno N] strerror`` exactly when it had them. Whatever the constructor adds to the message
    (urllib3 prefixes the pool's name), ``str(exc)`` is made the recorded text.
    """
    cls = error_class(recorded.type)
    message = recorded.message  # empty when the live one was (an async httpx timeout): the agent may show it
    if cls is None:
        return ConnectionError(f"{recorded.type}: {message} (replayed; class not importable)")
    if build is not None:
        try:
            built = build(cls, message)
        except Exception:  # noqa: BLE001 - fall back to the generic construction below
            built = None
        if built is not None:
            return _with_message(built, message)
    if issubclass(cls, OSError):
        found = _ERRNO_TEXT.fullmatch(message)
        if found is not None:
            rebuilt = _errno_error(cls, int(found.group(1)), found.group(2))
            if rebuilt is not None and str(rebuilt) == message:
                return rebuilt
    try:
        return _with_message(cls(message), message)
    except Exception:  # noqa: BLE001 - constructors with other signatures: bypass __init__
        exc = cls.__new__(cls)
        exc.args = (message,)
        return exc


# str() of an OSError built with (errno, strerror): what the recorded message holds then.
_ERRNO_TEXT = re.compile(r"\[Errno (-?\d+)\] (.*)", re.DOTALL)


def _with_message(exc: BaseException, message: str) -> BaseException:
    """``exc`` with ``str(exc) == message``: its args replaced when its constructor changed the text.

    An exception raised with several arguments (urllib3's ``ProtocolError('Connection broken:
    ...', IncompleteRead(...))``) has the repr of its args tuple as its text: its args are rebuilt
    from it, so ``repr(exc)`` and what wraps it (requests' ``ChunkedEncodingError``) read as live.
    """
    args = _tuple_args(message)
    if args is not None and _set_args(exc, args) and _text(exc) == message:
        return exc
    if _text(exc) != message:
        _set_args(exc, (message,))
    return exc


def _text(exc: BaseException) -> str | None:
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - a __str__ that needs attributes the constructor did not set
        return None


def _set_args(exc: BaseException, args: tuple[Any, ...]) -> bool:
    try:
        exc.args = args
    except Exception:  # noqa: BLE001 - keep the exception as built
        return False
    return True


class RecordedArgument:
    """An exception argument known only by its recorded repr (the ``IncompleteRead(...)`` inside a
    urllib3 ``ProtocolError``): it reads as the original did in the exception's text and repr."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _tuple_args(message: str) -> tuple[Any, ...] | None:
    """``(first, RecordedArgument(rest))`` for a message ``"('first', rest)"``: the text of an
    exception raised with several arguments, the first a string; else None."""
    if len(message) < 6 or message[0] != "(" or message[-1] != ")" or message[1] not in "'\"":
        return None
    import ast
    import io
    import tokenize

    try:
        token = next(tokenize.generate_tokens(io.StringIO(message[1:]).readline))
        if token.type != tokenize.STRING or token.start[0] != 1 or token.end[0] != 1:
            return None
        first = ast.literal_eval(token.string)
    except (SyntaxError, ValueError, tokenize.TokenError, StopIteration):
        return None
    rest = message[1 + token.end[1] : -1]
    if not isinstance(first, str) or not rest.startswith(", ") or len(rest) < 3:
        return None
    return (first, RecordedArgument(rest[2:]))


def _errno_error(cls: type[BaseException], errno: int, strerror: str) -> BaseException | None:
    """``cls(errno, strerror)``, or None for a subclass whose constructor takes other arguments."""
    try:
        return cls(errno, strerror)
    except Exception:  # noqa: BLE001 - built another way by the caller
        return None


def stream_chunks(exchange: Exchange) -> Iterator[tuple[float, bytes]]:
    """``(delay, chunk)`` pairs to serve, in order."""
    response = exchange.response
    if response is not None and (
        not response.chunk_offsets_ns or runtime.current_settings().replay_pacing != "recorded"
    ):
        # No waits (the default, "instant"): the body split once, each chunk with delay 0.
        return ((0.0, chunk) for chunk in served_chunks(exchange))
    return zip(pacing_delays(exchange), served_chunks(exchange))
