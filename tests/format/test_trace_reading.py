"""Reading trace documents with orjson: the same documents, line numbers and errors as the text reader.

The oracle is the reader as it was before orjson (``_text_iter_documents`` below, the standard
library over ``Path.read_text``): every case and every generated file must give the same
``(line, document)`` pairs, or the same error message, with orjson and without it.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agenttrace import ConfigurationError
from agenttrace._format import exactjson
from agenttrace._format.exactjson import InexactNumberError, exact_int, has_inexact
from agenttrace._format.files import SPANS_CUT, Documents, SplitError, read_spans


def _text_iter_documents(file: Path, text: str, what: str = "trace file") -> Iterator[tuple[int, Any]]:
    """The reader before orjson, and the one rule added since: a last line cut short (no line break
    after it) after whole documents ends the reading instead of failing it."""
    try:
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
    first = True
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except json.JSONDecodeError as exc:
            if not first and number == len(lines) and not text.endswith("\n"):
                return  # cut short by a killed writer: the lines before it are read
            if first:
                raise ConfigurationError(
                    f"{what} {file}, line {whole_error.lineno}: not valid JSON ({whole_error.msg}; "
                    "truncated?); expected OTLP JSON (one TracesData object per line or one document)"
                ) from None
            raise ConfigurationError(
                f"{what} {file}, line {number}: not valid JSON ({exc.msg}; truncated line?); "
                "expected one OTLP JSON TracesData object per line"
            ) from None
        first = False
        yield number, document


def _old(path: Path) -> list[tuple[int, Any]] | str:
    """What the text reader gave for the file at ``path``: its documents, or its error message."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return f"trace file {path} cannot be read: {exc}"
    try:
        return list(_text_iter_documents(path, text))
    except ConfigurationError as exc:
        return str(exc)
    except RecursionError:  # too deep a nesting: the standard library's limit
        return "RecursionError"


def _new(path: Path) -> list[tuple[int, Any]] | str:
    """What Documents gives, each document as the standard library reads it (exact())."""
    documents = Documents(path, path.read_bytes())
    try:
        pairs = list(documents)
    except ConfigurationError as exc:
        return str(exc)
    except RecursionError:
        return "RecursionError"
    out = []
    for number, document in pairs:
        again = documents.exact(number)
        out.append((number, document if again is None else again))
    return out


@pytest.fixture(params=["orjson", "json"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with orjson, and as if orjson were not installed."""
    if request.param == "json":
        monkeypatch.setattr(exactjson, "_orjson", None)
    else:
        assert exactjson.fast_loads() is not None, "orjson is a core dependency"
    return str(request.param)


def _same(found: Any, expected: Any) -> bool:
    # NaN is not equal to itself: compare the documents as the standard library writes them.
    return json.dumps(found) == json.dumps(expected) if not isinstance(found, str) else found == expected


DOC = '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"t","name":"%s"}]}]}]}'

CASES: dict[str, bytes] = {
    "json lines": "\n".join(DOC % i for i in range(3)).encode() + b"\n",
    "no final newline": "\n".join(DOC % i for i in range(3)).encode(),
    "crlf": "\r\n".join(DOC % i for i in range(3)).encode() + b"\r\n",
    "blank lines around": b"\n\n" + (DOC % 0).encode() + b"\n  \n" + (DOC % 1).encode() + b"\n\n\n",
    "one document": (DOC % 0).encode() + b"\n",
    "one document after blank lines": b"\n \n" + (DOC % 0).encode() + b"\n\n",
    "pretty document": json.dumps(json.loads(DOC % 0), indent=2).encode(),
    "pretty document, then garbage": json.dumps(json.loads(DOC % 0), indent=2).encode() + b"\nxx\n",
    "empty": b"",
    "only newlines": b"\n\n\n",
    "not json": b"this is not json",
    "not json, several lines": b"this is not json\nnor this\n",
    "truncated last line": ((DOC % 0) + "\n" + (DOC % 1)[:30]).encode(),
    "truncated middle line": ((DOC % 0) + "\n" + (DOC % 1)[:30] + "\n" + (DOC % 2)).encode(),
    "truncated first line": ((DOC % 0)[:30] + "\n" + (DOC % 1)).encode(),
    "NaN and Infinity": ((DOC % 0) + '\n{"v": [NaN, Infinity, -Infinity]}\n' + (DOC % 2)).encode(),
    "NaN first": ('{"v": NaN}\n' + (DOC % 1)).encode(),
    "NaN only document": b'{"v": NaN}',
    "lone surrogate escape": ((DOC % 0) + '\n{"v": "\\ud800"}\n').encode(),
    "big integers": (
        (DOC % 0) + '\n{"v": [123456789012345678901234567890, -9223372036854775809, 18446744073709551616]}\n'
    ).encode(),
    "big integer alone": b'{"v": 18446744073709551616}',
    "64-bit integers": b'{"v": [18446744073709551615, -9223372036854775808]}\n{"w": 1}',
    "byte order mark": b"\xef\xbb\xbf" + (DOC % 0).encode() + b"\n" + (DOC % 1).encode(),
    "form feed line": ((DOC % 0) + "\n\x0c\n" + (DOC % 1)).encode(),
    "no-break space line": ((DOC % 0) + "\n\u00a0\n" + (DOC % 1)).encode(),
    "no-break space line first": ("\u00a0\n" + (DOC % 0)).encode(),
    "lone carriage return between documents": ((DOC % 0) + "\r" + (DOC % 1) + "\n").encode(),
    "lone carriage return in a blank line": ((DOC % 0) + "\n \r \n" + (DOC % 1) + "\nxx\n").encode(),
    "lone carriage return in a blank line, one document": b"\n" + (DOC % 0).encode() + b"\n \r \n",
    "invalid utf-8": ((DOC % 0) + "\n").encode() + b'{"v": "\xff"}\n',
    "invalid utf-8 in the first line": b'{"v": "\xc3\x28"}\n' + (DOC % 1).encode(),
    "non-ascii text": ((DOC % "héllo ✓") + "\n" + (DOC % "日本")).encode(),
    "array of documents": ("[" + (DOC % 0) + ",\n" + (DOC % 1) + "]").encode(),
    "scalar lines": b"1\n2\n",
    "deep nesting": (("[" * 2000) + ("]" * 2000) + "\n" + (DOC % 1)).encode(),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_documents_as_the_text_reader_read_them(name: str, parser: str, tmp_path: Path) -> None:
    """Every case gives the text reader's documents and line numbers, or its exact error message."""
    path = tmp_path / "trace.jsonl"
    path.write_bytes(CASES[name])
    expected = _old(path)
    found = _new(path)
    assert _same(found, expected), (name, parser, found, expected)


FRAGMENTS = [
    DOC % 0,
    DOC % "é",
    '{"v": NaN}',
    '{"v": 123456789012345678901234567890}',
    '{"v": "\\ud83d\\ude00"}',
    '{"v": "\\udc00"}',
    "",
    "  ",
    "\t",
    "\r",
    "\x0c",
    "\u00a0",
    "garbage",
    (DOC % 1)[:25],
    "{",
    "}",
    '  "a"  ',
    "[1,\n2]",
    "\x85",
    "\u3000",
    "\x0b",
    '{"a": "\x0c"}',
    "\ufeff{}",
    '{"v": 1e999}',
    " \r ",
]


def test_generated_files_read_as_the_text_reader_read_them(parser: str, tmp_path: Path) -> None:
    """Hundreds of files made of valid, odd and broken lines: the same documents or the same error."""
    rng = random.Random(2024)
    path = tmp_path / "trace.jsonl"
    for _ in range(600):
        lines = [rng.choice(FRAGMENTS) for _ in range(rng.randrange(1, 7))]
        text = rng.choice(["\n", "\n", "\r\n", "\r"]).join(lines) + rng.choice(["\n", "\r\n", "", "\n\n"])
        data = text.encode("utf-8", "surrogatepass")
        if rng.random() < 0.1:
            data = data.replace(b"a", b"\xff", 1)  # not UTF-8
        path.write_bytes(data)
        expected = _old(path)
        found = _new(path)
        assert _same(found, expected), (data, found, expected)


def test_line_separators_inside_strings_no_longer_break_a_line(tmp_path: Path) -> None:
    """U+2028 (or U+0085) inside a body is one line: the text reader split it there and refused the file."""
    path = tmp_path / "trace.jsonl"
    lines = [DOC % "a\u2028b", DOC % "c\u0085d"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert isinstance(_old(path), str)  # what the text reader did: "not valid JSON"
    documents = list(Documents(path, path.read_bytes()))
    assert [number for number, _ in documents] == [1, 2]
    names = [d["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"] for _, d in documents]
    assert names == ["a\u2028b", "c\u0085d"]


def test_a_rounded_integer_is_read_again_exactly(tmp_path: Path) -> None:
    """orjson reads an integer beyond 64 bits as a float: exact() gives the standard library's integer."""
    path = tmp_path / "trace.jsonl"
    path.write_bytes(b'{"v": 1}\n{"v": 18446744073709551617}\n')
    documents = Documents(path, path.read_bytes())
    pairs = dict(documents)
    assert pairs[1] == {"v": 1}
    assert documents.exact(2) == {"v": 18446744073709551617}
    assert has_inexact(pairs[2]) is True  # what orjson gave: 1.8446744073709552e19
    with pytest.raises(InexactNumberError):
        exact_int(pairs[2]["v"])
    assert exact_int("18446744073709551617") == 18446744073709551617
    assert exact_int(2**63 - 1) == 2**63 - 1
    assert exact_int(12.0) == 12
    assert not has_inexact({"a": [1.5, -(2.0**62), "x", {"b": 2**64 - 1}]})
    assert has_inexact([[-(2.0**63)]])


def test_read_spans_keeps_integers_exact(tmp_path: Path) -> None:
    """agenttrace show's reader: an intValue written as a number beyond 64 bits stays an exact integer."""
    span = {
        "traceId": "t",
        "spanId": "s",
        "name": "n",
        "startTimeUnixNano": 18446744073709551617,
        "attributes": [
            {"key": "big", "value": {"intValue": 123456789012345678901234567890}},
            {"key": "arr", "value": {"arrayValue": {"values": [{"intValue": -9223372036854775809}]}}},
            {"key": "nan", "value": {"doubleValue": "NaN"}},
        ],
    }
    path = tmp_path / "trace.jsonl"
    path.write_text(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}) + "\n")
    (record,) = read_spans(path)
    assert record.start_ns == 18446744073709551617
    assert record.attributes["big"] == 123456789012345678901234567890
    assert record.attributes["arr"] == [-9223372036854775809]
    assert math.isnan(record.attributes["nan"])


def test_read_spans_errors_name_file_and_line(tmp_path: Path) -> None:
    """A truncated line, bytes that are not UTF-8, a missing file: the messages agenttrace show always gave."""
    path = tmp_path / "trace.jsonl"
    path.write_text((DOC % 0) + "\n" + (DOC % 1)[:20] + "\n")
    with pytest.raises(ConfigurationError, match=r"trace\.jsonl, line 2: not valid JSON .*truncated line"):
        read_spans(path)
    path.write_bytes((DOC % 0).encode() + b"\n" + b'{"v": "\xff"}\n')
    with pytest.raises(ConfigurationError) as caught:
        read_spans(path)
    with pytest.raises(UnicodeDecodeError) as undecodable:
        path.read_text(encoding="utf-8")
    assert str(caught.value) == f"trace file {path} cannot be read: {undecodable.value}"
    with pytest.raises(ConfigurationError, match=r"trace file .*nope\.jsonl does not exist"):
        read_spans(tmp_path / "nope.jsonl")


def test_without_orjson_installed(tmp_path: Path) -> None:
    """With orjson missing (an import that fails), trace files load, and load the same."""
    path = tmp_path / "trace.jsonl"
    path.write_bytes(CASES["NaN and Infinity"] + b"\n" + CASES["non-ascii text"])
    code = (
        "import sys, json\n"
        "sys.modules['orjson'] = None  # import orjson now raises ImportError\n"
        "from pathlib import Path\n"
        "from agenttrace._format.exactjson import fast_loads\n"
        "from agenttrace._format.files import Documents\n"
        "assert fast_loads() is None\n"
        f"print(json.dumps(list(Documents(Path({str(path)!r}), Path({str(path)!r}).read_bytes()))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == json.loads(json.dumps(_new(path)))


# --- reading a line span by span ---------------------------------------------------------------


def _read_split(path: Path) -> list[tuple[int, Any]] | str:
    """Documents(split_spans=True), SPANS_CUT expanded as the loader does; "split" if it gives up."""
    documents = Documents(path, path.read_bytes(), split_spans=True)
    try:
        return [(number, _expand(documents, number, document)) for number, document in documents]
    except SplitError:
        return "split"
    except ConfigurationError as exc:
        return str(exc)


def _read_whole(path: Path) -> list[tuple[int, Any]] | str:
    """Documents as read line by line (what split reading must equal: the same parser's values)."""
    try:
        return list(Documents(path, path.read_bytes()))
    except ConfigurationError as exc:
        return str(exc)


def _expand(documents: Documents, number: int, document: Any) -> Any:
    if not isinstance(document, dict):
        return document
    for resource_spans in document.get("resourceSpans", ()):
        for scope_spans in resource_spans.get("scopeSpans", ()):
            spans = scope_spans.get("spans")
            if isinstance(spans, list) and any(s is SPANS_CUT for s in spans):
                at = next(i for i, s in enumerate(spans) if s is SPANS_CUT)
                spans[at : at + 1] = list(documents.cut_spans(number))
    return document


def _span(rng: random.Random, i: int) -> dict[str, Any]:
    span: dict[str, Any] = {"traceId": f"t{i % 3}", "spanId": f"s{i}", "name": rng.choice(["POST", "é", "a},{b"])}
    attributes = [{"key": "k", "value": {"stringValue": rng.choice(["v", '},{"traceId":"x', "\\u0000"])}}]
    if rng.random() < 0.2:
        attributes.append({"key": "n", "value": {"intValue": rng.choice([1, 2**64 + 1, -(2**70)])}})
    if rng.random() < 0.2:
        attributes.append({"key": "d", "value": {"doubleValue": rng.choice([1.5, float("nan")])}})
    if rng.random() < 0.1:
        attributes.append({"key": "m", "value": {"stringValue": "\x00agenttrace:spans-cut"}})
    span["attributes"] = attributes
    if rng.random() < 0.2:
        span["links"] = [{"traceId": f"l{j}", "spanId": "x"} for j in range(rng.randrange(1, 4))]
    return span


def test_reading_span_by_span_gives_what_reading_whole_lines_gives(tmp_path: Path) -> None:
    """Lines of many spans (links, NaN, big integers, look-alike separators and markers, several
    scopes, broken bytes): split, the same documents as read whole, or SplitError (read whole then)."""
    rng = random.Random(99)
    path = tmp_path / "trace.jsonl"
    splits = gave_up = 0
    for _ in range(300):
        lines = []
        for _ in range(rng.randrange(1, 4)):
            scopes = [
                {"scope": {"name": "agenttrace"}, "spans": [_span(rng, i) for i in range(rng.randrange(0, 9))]}
                for _ in range(rng.randrange(1, 3))
            ]
            document: Any = {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": scopes}]}
            if rng.random() < 0.1:
                document = [document]  # not a TracesData object: no spans arrays where expected
            lines.append(json.dumps(document, separators=(",", ":"), ensure_ascii=False))
        data = "\n".join(lines).encode("utf-8")
        if rng.random() < 0.15:  # a broken byte somewhere
            at = rng.randrange(len(data))
            data = data[:at] + rng.choice([b"#", b"}", b"]", b'"']) + data[at + 1 :]
        path.write_bytes(data)
        whole = _read_whole(path)
        split = _read_split(path)
        if split == "split":
            gave_up += 1
            continue
        splits += 1
        assert _same(split, whole), (data, split, whole)
    assert splits > 200
    assert gave_up > 0


def test_read_spans_keeps_the_collector_state(tmp_path: Path) -> None:
    """read_spans pauses the garbage collector (as load_events does) and restores its state."""
    import gc

    path = tmp_path / "trace.jsonl"
    span = {"traceId": "t", "spanId": "s", "name": "n"}
    path.write_text(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span] * 3}]}]}) + "\n")
    assert gc.isenabled()
    assert len(read_spans(path)) == 3
    assert gc.isenabled()
    gc.disable()
    try:
        read_spans(path)
        assert not gc.isenabled()
    finally:
        gc.enable()
