"""Read OTLP JSON trace files (JSON Lines, or one JSON document) into span dicts.

The file is read as bytes, split at ``\\n``, and each line parsed by orjson when it is installed
(a core dependency: trace lines carry bodies as JSON escaped inside JSON strings, which orjson
reads about twice as fast as the standard library). The standard library stays the judge: a line
orjson refuses (NaN or Infinity, a lone surrogate escape, a line that is not JSON at all) is read
again by ``json``, which accepts it or words the error exactly as the text reader always did
(:meth:`Documents._text_reader`, the reader before orjson, takes over for whatever else it saw
differently). orjson reads an integer literal beyond 64 bits as a rounded float where ``json``
keeps it exact: readers turning JSON numbers into integers use :func:`exact_int` (or
:func:`has_inexact`) and, on :class:`InexactNumberError`, read the document again from
:meth:`Documents.exact`. The replay loader also reads long lines span by span (``split_spans``).
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agenttrace._core.errors import ConfigurationError, warn_once
from agenttrace._format.exactjson import (
    InexactNumberError,
    exact_loads,
    fast_loads,
    has_inexact,
)
from agenttrace._format.otlp_json import decode_attributes

__all__ = [
    "SPANS_CUT",
    "Documents",
    "SpanRecord",
    "SplitError",
    "being_written",
    "collector_paused",
    "cut_short",
    "exact_loads",
    "iter_documents",
    "read_spans",
    "record_of_span",
    "spans_of_lines",
]


@dataclass(frozen=True)
class SpanRecord:
    """One span of a trace file, with its attributes decoded."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[tuple[str, int, dict[str, Any]]]
    status_code: int
    status_message: str
    scope: str
    raw: dict[str, Any]


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Suspend the cyclic garbage collector while a trace file is turned into objects.

    Loading builds hundreds of thousands of small dicts, lists and tuples, none of them garbage;
    with the collector on, CPython runs a collection every 700 of them and the full ones re-walk
    everything loaded so far (most of a large recording's load time). The collector's state is
    given back exactly as it was (on or off; its thresholds and generations are never touched):
    nothing is frozen, so the host process's cycles, and the recording's once it is dropped,
    are collected as usual afterwards.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class SplitError(ValueError):
    """A line read span by span holds a part that is not one JSON value: read the file whole."""


SPANS_CUT: Any = object()  # stands, in a split line's skeleton, for the spans read by cut_spans()
_SEPARATOR = b'},{"traceId":"'
_MARKER = b"\\u0000agenttrace:spans-cut"
_MARKER_TEXT = "\x00agenttrace:spans-cut"


def _markers(value: Any) -> int:
    """How many strings equal to the marker ``value`` (a parsed skeleton) holds."""
    count = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            stack.extend(item.values())
        elif type(item) is list:
            stack.extend(item)
        elif item == _MARKER_TEXT:
            count += 1
    return count


# What the JSON grammar skips between tokens: a line of only these is blank, and a document
# followed by only these is the whole file.
_JSON_SPACE = b" \t\r\n"
_JSON_SPACE_CODES = frozenset(_JSON_SPACE)


def _translate_newlines(text: str) -> str:
    # What Path.read_text (universal newlines) does: the text reader sees the file this way.
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def _breaks_elsewhere(line: str) -> bool:
    # str.splitlines() also breaks at \r, \v, \f, \x1c-\x1e, \x85, \u2028, \u2029: a line holding
    # one is several lines to the text reader, which numbers lines that way.
    return len((line + "x").splitlines()) > 1


class Documents:
    """The JSON documents of a trace file with their line numbers: one document, or JSON Lines.

    Iterating yields ``(line number, document)``; a bad line raises ConfigurationError naming
    ``what``, the file and the line, as the text reader always did. ``data`` is the file's bytes
    (or its text); bytes that are not UTF-8 raise ConfigurationError "``what`` ``file``
    ``undecodable``: <the decoder's message>" (positions in the whole file).

    With ``split_spans`` (the replay loader), a document may hold SPANS_CUT in one of its
    ``spans`` arrays, standing for the spans :meth:`cut_spans` yields (see "reading a line span
    by span" below); reading them may raise SplitError, and the file must then be read again
    without ``split_spans``. ``split_above``: only lines longer than this many bytes are split
    (looking for the cuts costs two scans of the line, which a line of a few spans never repays).
    """

    def __init__(
        self,
        file: Path,
        data: bytes | str,
        what: str = "trace file",
        undecodable: str = "cannot be read",
        *,
        split_spans: bool = False,
        split_above: int = 0,
    ) -> None:
        self.file = file
        self.what = what
        self.undecodable = undecodable
        self.split_spans = split_spans
        self.split_above = split_above  # lines of this many bytes or fewer are parsed whole
        self._data = data
        self._bytes: bytes = b""
        self._spans: dict[int, tuple[int, int]] = {}  # line number -> where orjson read it in _bytes
        self._cuts: dict[int, tuple[int, int]] = {}  # line number -> its first and last span separator

    def exact(self, number: int) -> Any:
        """Document ``number`` parsed again by the standard library, or None if it already was."""
        where = self._spans.get(number)
        if where is None:
            return None
        start, end = where
        return json.loads(_translate_newlines(self._bytes[start:end].decode("utf-8")))

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        data = self._data
        if isinstance(data, str):
            try:
                self._bytes = data.encode("utf-8")
            except UnicodeEncodeError:  # lone surrogates: only the text reader can read this text
                return self._text_reader(data, 1, None)
        else:
            self._bytes = data
        if fast_loads() is None:
            return self._text_reader(_translate_newlines(self._decode(0)), 1, None)
        return self._lines()

    def check_text(self) -> None:
        """Raise the ConfigurationError for bytes that are not UTF-8, if they are not.

        The text reader refused such a file before reading any document; readers call this
        before reporting another error, so the first error reported stays that one.
        """
        if not self._bytes.isascii():
            self._decode(0)

    def _decode(self, start: int, end: int | None = None) -> str:
        data = self._bytes
        try:
            return data[start:end].decode("utf-8")
        except UnicodeDecodeError:
            try:
                data.decode("utf-8")  # the error the text reader gave: positions in the whole file
            except UnicodeDecodeError as exc:
                raise ConfigurationError(f"{self.what} {self.file} {self.undecodable}: {exc}") from None
            raise

    def _lines(self) -> Iterator[tuple[int, Any]]:
        loads = fast_loads()
        assert loads is not None
        data = self._bytes
        view = memoryview(data)
        size = len(data)
        pending: tuple[int, Any] | None = None  # the first document: the whole file, or line 1 of JSON Lines?
        seen = False
        number = 0
        pos = 0
        while pos < size:
            start = pos
            end = data.find(b"\n", pos)
            if end < 0:
                end = size
            pos = end + 1
            number += 1
            if data[start] in _JSON_SPACE_CODES:
                line = data[start:end]
                if not line.strip(_JSON_SPACE):
                    if b"\r" in line[:-1]:  # a lone \r: more lines than one to the text reader
                        yield from self._hand_over(pending, start, number, seen)
                        return
                    continue
            try:
                split = self.split_spans and end - start > self.split_above
                document = self._split(loads, number, start, end) if split else None
                if document is None:
                    document = loads(view[start:end])
                exact = False
            except ValueError:
                text = self._decode(start, end)
                if text.endswith("\r"):  # "\r\n": the text reader read "\n"
                    text = text[:-1]
                if _breaks_elsewhere(text):
                    yield from self._hand_over(pending, start, number, seen)
                    return
                if not text.strip():  # blank to the text reader, but not JSON whitespace
                    if seen and pending is None:
                        continue  # JSON Lines, as the text reader found too
                    # Before a second document: whether the file is one document, JSON Lines or
                    # refused (all on one line) is the text reader's call.
                    yield from self._hand_over(pending, start, number, seen)
                    return
                try:
                    document = json.loads(text)
                    exact = True
                except json.JSONDecodeError as exc:
                    if not seen:
                        # Not JSON Lines: maybe one document over several lines; else say where it breaks.
                        yield from self._whole()
                        return
                    if end == size and not data.endswith(b"\r"):
                        # The last line, with no line break after it: the writer was killed while
                        # writing it. The lines before it are whole; read them, and say so.
                        self.check_text()
                        _warn_torn(self.what, self.file, number)
                        if pending is not None:
                            yield pending
                        return
                    self.check_text()
                    raise self._bad_line(number, exc) from None
            if not exact:
                self._spans[number] = (start, end)
            if not seen:
                seen = True
                pending = (number, document)
                continue
            if pending is not None:
                yield pending
                pending = None
            yield number, document
        if pending is not None:
            # The file is this one document, JSON whitespace around it: json.loads of the whole agrees.
            first, document = pending
            if first in self._spans:
                self._spans[1] = self._spans.pop(first)
            if first in self._cuts:
                self._cuts[1] = self._cuts.pop(first)
            yield 1, document
        elif not seen:  # no document at all: the text reader says why
            yield from self._text_reader(_translate_newlines(self._decode(0)), 1, None)

    def _hand_over(
        self, pending: tuple[int, Any] | None, start: int, number: int, seen: bool
    ) -> Iterator[tuple[int, Any]]:
        """Line ``number`` holds line breaks only the text reader sees: it reads on from there.

        From the top when nothing was yielded yet (the file may still be one document to it).
        """
        if not seen or pending is not None:
            self._spans.clear()
            yield from self._text_reader(_translate_newlines(self._decode(0)), 1, None)
            return
        yield from self._text_reader(_translate_newlines(self._decode(start)), number, False)

    def _whole(self) -> Iterator[tuple[int, Any]]:
        loads = fast_loads()
        if loads is not None:
            try:
                document = loads(self._bytes)
            except ValueError:
                pass
            else:
                self._spans[1] = (0, len(self._bytes))
                yield 1, document
                return
        yield from self._text_reader(_translate_newlines(self._decode(0)), 1, None)

    # --- reading a line span by span (split_spans) ---------------------------------------------
    #
    # orjson turns an 800 KB line of 300 spans into some 30,000 objects at once; the reader then
    # walks them and frees them long after they left the CPU caches, which costs as much again as
    # parsing. Split at its spans, a line is parsed, read and freed one span at a time instead.
    #
    # A line written as ``...{"traceId":...},{"traceId":...},...,{"traceId":...}...`` is cut at
    # its first and last ``},{"traceId":"`` (bytes that cannot occur inside a JSON string): the
    # first and last parts, joined by a marker string, are parsed as the line's skeleton; the
    # part between them is read as the spans it holds, one by one, each up to the next separator
    # (or the one after, when a span's links hold one) from which it parses alone. If the
    # skeleton parses with the marker, the only string equal to it, as an element of a ``spans``
    # array, and the middle part divides into values that each parse alone, the line parses (by
    # the JSON grammar) to the skeleton with the marker replaced by those values in order:
    # exactly what parsing it whole gives. Otherwise the line is not split, or SplitError is
    # raised when the middle part does not divide, and the file is read again without splitting.

    def _split(self, loads: Callable[[Any], Any], number: int, start: int, end: int) -> Any:
        """The skeleton of the line ``[start, end)``, its spans between the cuts replaced by SPANS_CUT."""
        data = self._bytes
        first = data.find(_SEPARATOR, start, end)
        last = data.rfind(_SEPARATOR, start, end)
        if first < 0 or first == last:
            return None  # two spans or fewer: nothing to gain
        skeleton = b"".join((data[start : first + 1], b',"', _MARKER, b'",', data[last + 2 : end]))
        try:
            document = loads(skeleton)
        except ValueError:
            return None
        if _markers(document) != 1:
            return None  # the line spells the marker some other way: ours is not the only one
        try:
            for resource_spans in document["resourceSpans"]:
                for scope_spans in resource_spans["scopeSpans"]:
                    spans = scope_spans["spans"]
                    if type(spans) is list and _MARKER_TEXT in spans:
                        spans[spans.index(_MARKER_TEXT)] = SPANS_CUT
                        self._cuts[number] = (first, last)
                        return document
        except (LookupError, TypeError):
            pass
        return None  # the cut is not between the spans of a spans array

    def cut_spans(self, number: int) -> Iterator[Any]:
        """The spans SPANS_CUT stands for in document ``number``, each parsed when reached.

        Raises SplitError if one does not parse alone (the line must then be read whole).
        """
        loads = fast_loads()
        assert loads is not None
        first, last = self._cuts[number]
        data = self._bytes
        view = memoryview(data)
        limit = last + len(_SEPARATOR)
        pos = first
        while pos < last:
            following = data.find(_SEPARATOR, pos + 1, limit)
            while True:
                try:
                    span = loads(view[pos + 2 : following + 1])
                    break
                except ValueError:
                    # A separator inside a span's links (they start with "traceId" too): read on
                    # to the next one. Anything else (NaN, a broken span): read the file whole.
                    if following >= last or data.find(b'"links":[', pos, following) < 0:
                        raise SplitError(f"line {number} cannot be read span by span") from None
                    following = data.find(_SEPARATOR, following + 1, limit)
            yield span
            pos = following

    def _bad_line(self, number: int, exc: json.JSONDecodeError) -> ConfigurationError:
        return ConfigurationError(
            f"{self.what} {self.file}, line {number}: not valid JSON ({exc.msg}; truncated line?); "
            "expected one OTLP JSON TracesData object per line"
        )

    def _text_reader(self, text: str, first_number: int, first: bool | None) -> Iterator[tuple[int, Any]]:
        """The standard library's reading of ``text`` (from line ``first_number``), as it always was.

        ``first`` None: ``text`` is the whole file; False: a document was already read.
        """
        what, file = self.what, self.file
        whole_error: json.JSONDecodeError | None = None
        if first is None:
            first = True
            try:
                # One document (an OTel Collector's single-document output, possibly pretty-printed)...
                whole = json.loads(text)
            except json.JSONDecodeError as exc:
                whole_error = exc
            else:
                yield 1, whole
                return
            if "\n" not in text.strip():
                raise ConfigurationError(
                    f"{what} {file}, line 1: not valid JSON ({whole_error.msg}; truncated?); "
                    "expected OTLP JSON (one TracesData object per line) or a JSON array of events"
                )
        # ...else JSON Lines: each line parses on its own, so a bad line is named exactly.
        lines = text.splitlines()
        last = first_number + len(lines) - 1
        for number, line in enumerate(lines, start=first_number):
            if not line.strip():
                continue
            try:
                document = json.loads(line)
            except json.JSONDecodeError as exc:
                if not first and number == last and not text.endswith("\n"):
                    _warn_torn(what, file, number)  # cut short mid-line: the lines before it are whole
                    return
                if first and whole_error is not None:
                    # Not JSON Lines either: report where the document as a whole breaks.
                    raise ConfigurationError(
                        f"{what} {file}, line {whole_error.lineno}: not valid JSON ({whole_error.msg}; "
                        "truncated?); expected OTLP JSON (one TracesData object per line or one document)"
                    ) from None
                raise self._bad_line(number, exc) from None
            first = False
            yield number, document


def _warn_torn(what: str, file: Path, number: int) -> None:
    warn_once(
        f"torn-line:{file}",
        f"{what} {file} was cut short: line {number}, its last, is incomplete (the process writing it "
        "was killed); the lines before it are read",
    )


def iter_documents(
    file: Path, data: bytes | str, what: str = "trace file", undecodable: str = "cannot be read"
) -> Iterator[tuple[int, Any]]:
    """The JSON documents of a trace file with their line numbers: one document, or JSON Lines.

    A bad line raises ConfigurationError naming ``what``, the file and the line (see :class:`Documents`).
    """
    return iter(Documents(file, data, what, undecodable))


# --- files cut short --------------------------------------------------------------------------------


def being_written(path: Path) -> bool:
    """True while a live process writes ``path`` (AgentTrace's writer holds a lock on it).

    The operating system drops the lock when the writer dies, however it dies; where there is
    no ``flock`` (Windows) this is never known, and False is returned.
    """
    try:
        import fcntl
    except ImportError:
        return False
    try:
        with open(path, "rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            return False
    except OSError:
        return False


def cut_short(path: Path) -> str | None:
    """Why the trace file ``path`` holds less than its whole run, from its name and lock; None if it does not.

    A run's file is ``<trace_id>.jsonl`` once the run ended; a hidden partial file
    (``.<trace_id>.jsonl.partial-...``) is a run still going, or one whose process died, and
    ``<trace_id>.incomplete.jsonl`` is a run whose process died.
    """
    name = path.name
    if ".jsonl.partial-" in name:
        if being_written(path):
            return "still being written: its run has not ended"
        return "cut short: the process writing it died before its run ended"
    if name.endswith(".incomplete.jsonl"):
        return "cut short: the process writing it died before its run ended"
    return None


# --- spans ----------------------------------------------------------------------------------------


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigurationError(f"trace file {path} does not exist") from None
    except OSError as exc:
        raise ConfigurationError(f"trace file {path} cannot be read: {exc}") from None


def read_spans(path: str | Path) -> list[SpanRecord]:
    """Every span in an OTLP JSON trace file; ConfigurationError names the file and line."""
    file = Path(path)
    spans: list[SpanRecord] = []
    documents = Documents(file, _read(file))
    with collector_paused():
        try:
            for number, document in documents:
                try:
                    spans.extend(_document_spans(file, number, document))
                except InexactNumberError:
                    spans.extend(_document_spans(file, number, documents.exact(number), exact=True))
        except ConfigurationError:
            documents.check_text()  # bytes that are not UTF-8 are the first thing wrong with a file
            raise
    return spans


def spans_of_lines(lines: Iterable[str | bytes], where: str) -> list[SpanRecord]:
    """Every span in OTLP JSON lines held in memory (the server's stored spans); ``where`` names them."""
    spans: list[SpanRecord] = []
    with collector_paused():
        for number, line in enumerate(lines, 1):
            try:
                document = exact_loads(line)
            except ValueError as exc:
                raise ConfigurationError(f"{where}, line {number}: not valid JSON ({exc})") from None
            spans.extend(_document_spans(Path(where), number, document, exact=True))
    return spans


def _document_spans(file: Path, number: int, document: Any, *, exact: bool = False) -> list[SpanRecord]:
    """The document's spans; ``exact``: it was parsed by json (a large float is a double, not a rounded integer)."""
    if not isinstance(document, dict):
        raise ConfigurationError(
            f"trace file {file}, line {number}: expected a JSON object with 'resourceSpans', "
            f"got {type(document).__name__}"
        )
    if "resourceSpans" not in document:
        raise ConfigurationError(
            f"trace file {file}, line {number}: expected an OTLP JSON TracesData object "
            f"with 'resourceSpans', found keys {sorted(document)[:5]}"
        )
    spans: list[SpanRecord] = []
    try:
        for resource_spans in document["resourceSpans"]:
            for scope_spans in resource_spans.get("scopeSpans", ()):
                scope = scope_spans.get("scope", {}).get("name", "")
                for span in scope_spans.get("spans", ()):
                    spans.append(_record(span, scope, exact=exact))
    except InexactNumberError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"trace file {file}, line {number}: malformed OTLP JSON span ({type(exc).__name__}: {exc})"
        ) from None
    return spans


def record_of_span(span: dict[str, Any], scope: str) -> SpanRecord:
    """One exactly parsed OTLP JSON span as a :class:`SpanRecord`; KeyError, TypeError or ValueError if malformed."""
    return _record(span, scope, exact=True)


def _record(span: dict[str, Any], scope: str, *, exact: bool = False) -> SpanRecord:
    status = span.get("status", {})
    if not exact and has_inexact(span):
        raise InexactNumberError("a number orjson may have rounded")
    return SpanRecord(
        trace_id=span["traceId"],
        span_id=span["spanId"],
        parent_span_id=span.get("parentSpanId", ""),
        name=span.get("name", ""),
        kind=int(span.get("kind", 0)),
        start_ns=int(span.get("startTimeUnixNano", 0)),
        end_ns=int(span.get("endTimeUnixNano", 0)),
        attributes=decode_attributes(span.get("attributes")),
        events=[
            (e.get("name", ""), int(e.get("timeUnixNano", 0)), decode_attributes(e.get("attributes")))
            for e in span.get("events", ())
        ],
        status_code=int(status.get("code", 0)),
        status_message=status.get("message", ""),
        scope=scope,
        raw=span,
    )
