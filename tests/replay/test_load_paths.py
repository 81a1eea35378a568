"""The ways a recording is loaded give one result: orjson or not, load_events + init or the file path.

``load_events`` + ``init(replay_events=...)`` builds each call's exchange from its event;
``init(replay_events_file=...)`` (``agenttrace replay``) builds it from the span directly
(``_loader.load_recording``). Both must give equal exchanges, equal run and entropy events and
the same errors; and a line orjson refuses or may misread (NaN, an integer beyond 64 bits) must
load as the standard library reads it.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import agenttrace
from agenttrace import ConfigurationError
from agenttrace._capture.model import Body, Exchange, RecordedError, RequestData, ResponseData
from agenttrace._format import exactjson
from agenttrace._format import files as trace_files
from agenttrace._format.events import event_exchange, exchange_of
from agenttrace._format.exchange import exchange_from_span
from agenttrace._format.otlp_json import decode_body
from agenttrace._replay import loader as _loader
from agenttrace._replay import matcher as _matcher
from agenttrace._replay.loader import check_events, load_recording
from agenttrace._replay.matcher import Entry, Matcher, Miss
from tests.servers import TestServer

from .agents import HTTPX_AGENT, REQUESTS_AGENT
from .conftest import Recorded, Replayer


@pytest.fixture
def recording(replayer: Replayer, server: TestServer) -> Recorded:
    """A real recording of the httpx agent (JSON, SSE, entropy)."""
    return replayer.record(HTTPX_AGENT, [server.base_url])


@pytest.fixture(params=["orjson", "json"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with orjson, and as if orjson were not installed."""
    if request.param == "json":
        monkeypatch.setattr(exactjson, "_orjson", None)
        monkeypatch.setattr(_matcher, "_dumps", None)
    return str(request.param)


def _edit(path: Path, out: Path, edit: Any) -> Path:
    """``path`` with ``edit(document)`` applied to each line's document, written (compact) to ``out``."""
    lines = []
    for line in path.read_text().splitlines():
        document = json.loads(line)
        edit(document)
        lines.append(json.dumps(document, separators=(",", ":"), ensure_ascii=False))
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def _spans(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [s for rs in document["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]


def _kind(span: Mapping[str, Any]) -> str:
    return next((kv["value"].get("stringValue", "") for kv in span["attributes"] if kv["key"] == "agenttrace.kind"), "")


def test_file_path_gives_the_exchanges_of_load_events_and_init(
    replayer: Replayer, server: TestServer, parser: str
) -> None:
    """load_recording == check_events(load_events()): same exchanges in the same order, same runs and draws.

    On JSON, SSE, gzip, binary (base64, the long way), form and redirected calls.
    """
    for agent in (HTTPX_AGENT, REQUESTS_AGENT):
        path = replayer.record(agent, [server.base_url]).path
        events = agenttrace.load_events(path)
        _, expected = check_events(events, "src")
        head, exchanges = load_recording(path, "src")
        assert exchanges == expected
        assert head == [e for e in events if e["kind"] != "call"]
        assert len(exchanges) == sum(e["kind"] == "call" for e in events)


def test_file_path_refuses_a_bad_call_as_init_did(recording: Recorded, tmp_path: Path) -> None:
    """A call span with neither response nor error: the same message, naming the event, both ways."""

    def drop_response(document: dict[str, Any]) -> None:
        for span in _spans(document):
            if _kind(span) == "call":
                span["events"] = [e for e in span["events"] if e["name"] != "agenttrace.response"]

    bad = _edit(recording.path, tmp_path / "bad.jsonl", drop_response)
    events = agenttrace.load_events(bad)  # load_events does not build exchanges: it returns the events
    with pytest.raises(ConfigurationError) as via_init:
        check_events(events, str(bad))
    with pytest.raises(ConfigurationError) as via_file:
        load_recording(bad, str(bad))
    assert str(via_file.value) == str(via_init.value)
    assert "event #1: malformed call event (a call needs a 'response' or an 'error')" in str(via_file.value)


def test_a_nan_line_loads_through_the_standard_library(recording: Recorded, tmp_path: Path, parser: str) -> None:
    """orjson refuses NaN: the line is parsed by json, and the recording loads as without it."""
    text = recording.path.read_text()
    marker = '"attributes":[{"key":"agenttrace.kind","value":{"stringValue":"call"}}'
    assert marker in text
    nan = text.replace(marker, marker.replace("[", '[{"key":"user.ratio","value":{"doubleValue":NaN}},', 1))
    path = tmp_path / "nan.jsonl"
    path.write_text(nan)
    assert "NaN" in path.read_text()
    assert agenttrace.load_events(path) == agenttrace.load_events(recording.path)
    assert load_recording(path, "x") == load_recording(recording.path, "x")


def test_spans_with_links_and_look_alike_bytes_load_the_same(
    recording: Recorded, tmp_path: Path, parser: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Links (objects that start with "traceId" too) and bodies holding the separator bytes: same events."""
    monkeypatch.setattr(_loader, "_SPLIT_ABOVE", 0)  # the loader reads even these short lines span by span

    def add_links(document: dict[str, Any]) -> None:
        spans = _spans(document)
        for span in spans:
            span["name"] += '},{"traceId":"'
        for span in spans[1:-1]:  # links in the spans between a line's first and last: read span by span
            span["links"] = [{"traceId": "a" * 32, "spanId": "b" * 16}, {"traceId": "c" * 32, "spanId": "d" * 16}]

    path = _edit(recording.path, tmp_path / "links.jsonl", add_links)
    documents = trace_files.Documents(path, path.read_bytes(), split_spans=True)
    cut = [number for number, _ in documents if number in documents._cuts]
    if parser == "orjson":
        assert cut  # at least one line is read span by span, its linked spans whole
        assert all(span["links"] for span in documents.cut_spans(cut[0]))
    events = agenttrace.load_events(path)
    assert events == agenttrace.load_events(recording.path)
    assert load_recording(path, "x") == load_recording(recording.path, "x")


def test_short_lines_are_parsed_whole_and_load_the_same(recording: Recorded, monkeypatch: pytest.MonkeyPatch) -> None:
    """A line of up to 64 KiB (a pytest recording's single span, a small batch) is parsed whole, a
    longer one span by span: looking for a short line's cuts costs two scans of it and saves nothing."""
    path = recording.path
    data = path.read_bytes()
    longest = max(len(line) for line in data.split(b"\n"))
    assert longest <= _loader._SPLIT_ABOVE  # the agent's lines are all short ones
    whole = trace_files.Documents(path, data, split_spans=True, split_above=longest)
    assert [number for number, _ in whole if number in whole._cuts] == []
    split = trace_files.Documents(path, data, split_spans=True, split_above=longest - 1)
    assert [number for number, _ in split if number in split._cuts]  # the longest line, at least
    expected = load_recording(path, "x")
    monkeypatch.setattr(_loader, "_SPLIT_ABOVE", 0)
    assert load_recording(path, "x") == expected


def test_the_exchange_decoder_reads_the_payload_events_only(recording: Recorded, tmp_path: Path) -> None:
    """The entropy draws of a call span are decoded once, by the loader: a broken draw leaves the
    exchange readable (show, diff) and still fails the load, naming the line as before."""
    line, span = next(
        (number, span)
        for number, text in enumerate(recording.path.read_text().splitlines(), 1)
        for span in _spans(json.loads(text))
        if _kind(span) == "call" and any(e["name"] == "agenttrace.entropy" for e in span.get("events", ()))
    )
    expected = exchange_from_span(span)
    for event in span["events"]:
        if event["name"] == "agenttrace.entropy":
            event["attributes"] = 5
    assert exchange_from_span(span) == expected

    def break_draws(document: dict[str, Any]) -> None:
        for found in _spans(document):
            if found["spanId"] == span["spanId"]:
                found["events"] = span["events"]

    path = _edit(recording.path, tmp_path / "draws.jsonl", break_draws)
    with pytest.raises(ConfigurationError, match=rf"replay file .*draws.jsonl, line {line}: span .* cannot be decoded"):
        load_recording(path, "x")


def test_integers_beyond_64_bits_are_read_exactly(recording: Recorded, tmp_path: Path, parser: str) -> None:
    """orjson reads 2**64 + 1 as a rounded float; the loader reads the line again with json instead."""
    big = 2**64 + 1

    def big_ordinals(document: dict[str, Any]) -> None:
        for span in _spans(document):
            for kv in span["attributes"]:
                if kv["key"] == "agenttrace.call.ordinal":
                    kv["value"] = {"intValue": big + int(kv["value"]["intValue"])}  # a number, not a string
                    span["spanId"] = big * 3 + int(kv["value"]["intValue"])  # not OTLP, but read with str()

    path = _edit(recording.path, tmp_path / "big.jsonl", big_ordinals)
    events = agenttrace.load_events(path)
    ordinals = [e["ordinal"] for e in events if e["kind"] == "call"]
    assert ordinals == [big, big + 1]
    assert all(type(o) is int for o in ordinals)
    assert [e["span_id"] for e in events if e["kind"] == "call"] == [str(big * 4), str(big * 4 + 1)]
    _, exchanges = load_recording(path, "x")
    assert [e.ordinal for e in exchanges] == [big, big + 1]
    as_list = tmp_path / "events.json"
    as_list.write_text(json.dumps(events))
    assert agenttrace.load_events(as_list) == events


def test_event_list_file_with_nan_and_big_integers(recording: Recorded, tmp_path: Path, parser: str) -> None:
    """A JSON array of events: values orjson refuses or rounds come back as json reads them."""
    events = agenttrace.load_events(recording.path)
    events[0]["note"] = float("nan")
    events[0]["big"] = -(2**70)
    path = tmp_path / "events.json"
    path.write_text(json.dumps(events))
    loaded = agenttrace.load_events(path)
    assert loaded[0]["big"] == -(2**70)
    assert json.dumps(loaded) == json.dumps(events)


def test_bad_lines_are_named_the_same_with_or_without_orjson(
    recording: Recorded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A truncated middle line, a bad first line, bytes that are not UTF-8: one message either way."""
    lines = recording.path.read_text().splitlines()
    cases = {
        "middle.jsonl": "\n".join([lines[0], lines[0][:100], *lines[1:]]).encode(),
        "first.jsonl": "\n".join([lines[0][:100], *lines]).encode(),
        "utf8.jsonl": "\n".join([*lines, lines[0][:100]]).encode() + b"\n\xff\n",
        "blank.jsonl": b"\n \n",
    }
    messages = {}
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ConfigurationError) as caught:
            agenttrace.load_events(path)
        messages[name] = str(caught.value)
    assert "middle.jsonl, line 2: not valid JSON (" in messages["middle.jsonl"]
    assert "truncated line?); expected one OTLP JSON TracesData object per line" in messages["middle.jsonl"]
    # Line 1 breaks, and so does the file read as one document: where that breaks is named, as
    # the standard library's parser finds it.
    with pytest.raises(json.JSONDecodeError) as whole:
        json.loads(cases["first.jsonl"])
    where = f"first.jsonl, line {whole.value.lineno}: not valid JSON ({whole.value.msg}; truncated?)"
    assert where in messages["first.jsonl"]
    with pytest.raises(UnicodeDecodeError) as undecodable:
        (tmp_path / "utf8.jsonl").read_text(encoding="utf-8")
    path = tmp_path / "utf8.jsonl"
    assert messages["utf8.jsonl"] == f"replay file {path} cannot be read as UTF-8 text: {undecodable.value}"
    assert messages["blank.jsonl"].endswith("blank.jsonl is empty; expected OTLP JSON Lines or a JSON array of events")
    monkeypatch.setattr(exactjson, "_orjson", None)
    for name in cases:
        with pytest.raises(ConfigurationError) as caught:
            agenttrace.load_events(tmp_path / name)
        assert str(caught.value) == messages[name]


def test_load_events_without_orjson_installed(recording: Recorded) -> None:
    """An interpreter where ``import orjson`` fails loads the recording to the same events and exchanges."""
    code = (
        "import sys, json\n"
        "sys.modules['orjson'] = None  # import orjson now raises ImportError\n"
        "import agenttrace\n"
        "from agenttrace._replay.loader import load_recording\n"
        "from agenttrace._replay.matcher import Matcher\n"
        f"path = {str(recording.path)!r}\n"
        "events = agenttrace.load_events(path)\n"
        "_, exchanges = load_recording(path, 'x')\n"
        "matcher = Matcher(exchanges)\n"
        "keys = [list(e.key[:3]) for e in matcher._entries]\n"
        "served = [matcher.match(e.request, e.step_path).exchange == e for e in exchanges]\n"
        "print(json.dumps({'events': events, 'keys': keys, 'served': served}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["events"] == agenttrace.load_events(recording.path)
    _, exchanges = load_recording(recording.path, "x")
    assert found["keys"] == json.loads(json.dumps([e.key[:3] for e in Matcher(exchanges)._entries]))
    assert found["served"] == [True] * len(exchanges)  # each recorded request finds its own exchange


def test_checked_events_can_leave_the_calls_out(recording: Recorded) -> None:
    """init() needs no copy of the call events (it has their exchanges): keep_calls=False."""
    events = agenttrace.load_events(recording.path)
    kept, exchanges = check_events(events, "x")
    lean, same = check_events(events, "x", keep_calls=False)
    assert same == exchanges
    assert lean == [e for e in kept if e["kind"] != "call"]


# --- the list form's decoder written plainly: the behaviour exchange_of keeps ------------------


def _pairs(value: Any) -> tuple[tuple[str, str], ...]:
    return tuple([(str(k), str(v)) for k, v in (value or ())])


def _reference_exchange(event: Mapping[str, Any]) -> Exchange:
    req = event["request"]
    request = RequestData(
        method=str(req["method"]).upper(),
        url=str(req["url"]),
        headers=_pairs(req.get("headers")),
        body=decode_body(str(req.get("body", "")), str(req.get("body_encoding", "utf-8")), strict=True),
    )
    response = None
    resp = event.get("response")
    if resp is not None:
        data = decode_body(str(resp.get("body", "")), str(resp.get("body_encoding", "utf-8")), strict=True)
        body = Body(
            data=data,
            size=int(resp.get("body_size", len(data))),
            sha256=str(resp.get("body_sha256") or hashlib.sha256(data).hexdigest()),
            truncated=bool(resp.get("body_truncated", False)),
        )
        response = ResponseData(
            status_code=int(resp["status_code"]),
            headers=_pairs(resp.get("headers")),
            body=body,
            reason=str(resp.get("reason", "")),
            http_version=str(resp.get("http_version", "HTTP/1.1")),
            chunk_sizes=tuple(int(n) for n in resp.get("chunk_sizes", ())),
            chunk_offsets_ns=tuple(int(n) for n in resp.get("chunk_offsets_ns", ())),
            stream_end=str(resp.get("stream_end", "complete")),
        )
    error = None
    err = event.get("error")
    if err is not None:
        error = RecordedError(
            type=str(err["type"]), message=str(err.get("message", "")), phase=str(err.get("phase", "request"))
        )
    if response is None and error is None:
        raise ValueError("a call needs a 'response' or an 'error'")
    return Exchange(
        library=str(event.get("library", "")),
        ordinal=int(event.get("ordinal", 0)),
        step_path=tuple(str(s) for s in event.get("step_path", ())),
        request=request,
        response=response,
        error=error,
        trace_id=str(event.get("trace_id", "")),
        span_id=str(event.get("span_id", "")),
        extra={str(k): str(v) for k, v in (event.get("extra") or {}).items()},
    )


def _outcome(build: Any, event: Any) -> Any:
    try:
        return build(event)
    except Exception as exc:  # the type and message are the outcome compared
        return f"{type(exc).__name__}: {exc}"


def _variants(call: dict[str, Any]) -> list[Any]:
    out: list[Any] = []

    def variant(change: Any) -> None:
        event = json.loads(json.dumps(call))
        change(event)
        out.append(event)

    variant(lambda e: None)
    variant(lambda e: e["request"].update(method="post", headers=[("a", 1), ["b", None]]))
    variant(lambda e: e["request"].update(body_encoding="base64", body="aGk="))
    variant(lambda e: e["request"].update(body_encoding="latin-1"))
    variant(lambda e: e["request"].update(body_encoding="base64", body="not base64!"))
    variant(lambda e: e["request"].pop("headers"))
    variant(lambda e: e["request"].update(headers=None, body=None))
    variant(lambda e: e["request"].update(headers=[["a", "b", "c"]]))
    variant(lambda e: e["request"].update(body="\ud800"))
    variant(lambda e: e["request"].pop("method"))
    variant(lambda e: e["response"].update(status_code="201", body_size="12", body_truncated=1, chunk_sizes=["3", 4.0]))
    variant(lambda e: e["response"].update(body_sha256="", body_size=None))
    variant(lambda e: e["response"].pop("body_size"))
    variant(lambda e: e["response"].update(chunk_sizes=None))
    variant(lambda e: e["response"].update(chunk_offsets_ns=[1, "x"]))
    variant(lambda e: e["response"].update(status_code=True, reason=None, http_version=2, stream_end=None))
    variant(lambda e: e["response"].pop("status_code"))
    variant(lambda e: e.update(response=None))
    variant(lambda e: e.update(response=None, error={"type": "httpx.ReadError"}))
    variant(lambda e: e.update(error={"message": "no type"}))
    variant(lambda e: e.update(error={"type": 1, "message": 2, "phase": "stream"}))
    variant(lambda e: e.update(extra={"a": 1, 2: "b"}, step_path=("x", 1), ordinal="7", library=None))
    variant(lambda e: e.update(extra=[], step_path=None))
    variant(lambda e: e.update(extra=["not a mapping"]))
    variant(lambda e: e.update(ordinal=2.9, trace_id=None, span_id=3))
    variant(lambda e: e.pop("request"))
    variant(lambda e: e.update(request="not a mapping"))
    variant(lambda e: e.update(response=[]))
    return out


def test_event_exchange_builds_what_it_always_built(recording: Recorded) -> None:
    """exchange_of (what event_exchange and check_events use) equals the reference on every variant.

    Equal exchanges, or the same exception with the same message, for odd types, missing fields,
    other encodings and malformed events alike.
    """
    events = agenttrace.load_events(recording.path)
    calls = [e for e in events if e["kind"] == "call"]
    compared = 0
    for call in calls:
        for event in _variants(call):
            expected = _outcome(_reference_exchange, event)
            found = _outcome(exchange_of, event)
            assert found == expected, (event, found, expected)
            compared += 1
        assert event_exchange(call, "x") == _reference_exchange(call)
    assert compared >= 2 * 20


# --- the matcher's canonical JSON -------------------------------------------------------------


def _recorded(*bodies: bytes) -> Matcher:
    exchanges = [
        Exchange(
            library="httpx",
            ordinal=i,
            step_path=(),
            request=RequestData("POST", "http://h/x", (("content-type", "application/json"),), body),
            response=ResponseData(200, (), Body(f"r{i}".encode(), 2, hashlib.sha256(f"r{i}".encode()).hexdigest())),
        )
        for i, body in enumerate(bodies)
    ]
    return Matcher(exchanges)


def _served(matcher: Matcher, body: bytes) -> str | None:
    found = matcher.match(RequestData("POST", "http://h/x", (("content-type", "application/json"),), body), ())
    if isinstance(found, Miss):
        return None
    assert isinstance(found, Entry)
    assert found.exchange.response is not None
    return found.exchange.response.body.data.decode()


@pytest.mark.parametrize(
    ("recorded", "live", "served"),
    [
        (b'{"a": 1, "b": [1, 2]}', b'{"b":[1,2],"a":1}', "r0"),
        (b'{"n": 18446744073709551617}', b'{"n": 18446744073709551617}', "r0"),
        (b'{"n": 18446744073709551617}', b'{"n": 18446744073709551616}', None),  # one float to orjson
        (b'{"n": -9223372036854775809}', b'{"n": -9223372036854775810}', None),
        (b'{"n": 1}', b'{"n": 1.0}', None),
        (b'{"x": NaN}', b'{"x":  NaN}', "r0"),
        (b'{"x": NaN}', b'{"x": null}', None),  # orjson would write NaN as null
        (b'{"x": Infinity}', b'{"x": 1e999}', "r0"),  # both inf, as json reads them
        (b'{"s": "\\u00e9"}', '{"s": "é"}'.encode(), "r0"),
        (b'{"s": "\\ud83d\\ude00"}', '{"s": "😀"}'.encode(), "r0"),
        ('{"a": 1}'.encode("utf-16"), b'{"a": 1}', "r0"),  # json reads UTF-16, orjson does not
        (b"[" * 300 + b"]" * 300, b"[" * 300 + b"]" * 300, "r0"),  # deeper than orjson writes
    ],
)
def test_json_bodies_compare_as_data_whichever_parser_reads_them(
    recorded: bytes, live: bytes, served: str | None, parser: str
) -> None:
    """Canonical JSON: equal data matches, unequal data does not, with or without orjson."""
    assert _served(_recorded(recorded), live) == served
