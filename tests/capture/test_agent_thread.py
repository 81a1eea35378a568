"""Work moved off the agent's thread or done once: what every reader sees must not change.

The body SHA-256 of a payload event is computed when the event is first read (by the trace
writer, off the agent's thread); header pairs, redaction and recorded URLs are reused when they
repeat. These tests pin down that the recorded values, their order and every way of reading an
event's attributes are the same as when everything was computed at once.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import requests
from agenttrace.exporters.local import _span_size
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agenttrace
from agenttrace._capture import payload as _payload
from agenttrace._capture import record as _capture
from agenttrace._capture.filter import EMPTY, compile_filter
from agenttrace._capture.model import RequestData
from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.BODY
from agenttrace._format.otlp_json import decode_attributes, encode_body, span_text
from tests.recording import Recorder
from tests.servers import TestServer, binary_payload

BODY_KEYS = [S.BODY, S.BODY_ENCODING, S.BODY_SIZE, S.BODY_SHA256]


def _event_keys(span: dict[str, Any], name: str) -> list[str]:
    (event,) = [e for e in span["events"] if e["name"] == name]
    return [kv["key"] for kv in event["attributes"]]


@pytest.mark.parametrize("client", ["requests", "httpx"])
def test_recorded_digests_are_those_of_the_bodies(tmp_path: Path, server: TestServer, client: str) -> None:
    """Text, binary, empty and cut bodies: each digest is the SHA-256 of the whole body, in its place."""
    recorder = Recorder(tmp_path)
    text_body = ('{"q": "' + "é" * 300 + '"}').encode()
    binary_body = binary_payload(700)

    def agent() -> list[bytes]:
        got = []
        if client == "requests":
            with requests.Session() as session:
                got.append(session.post(server.url("/json"), data=text_body, timeout=5).content)
                got.append(session.post(server.url("/binary?size=3000"), data=binary_body, timeout=5).content)
                got.append(session.get(server.url("/big?size=0"), timeout=5).content)
                got.append(session.get(server.url("/big?size=5000"), timeout=5).content)
        else:
            with httpx.Client(timeout=5) as http:
                got.append(http.post(server.url("/json"), content=text_body).content)
                got.append(http.post(server.url("/binary?size=3000"), content=binary_body).content)
                got.append(http.get(server.url("/big?size=0")).content)
                got.append(http.get(server.url("/big?size=5000")).content)
        return got

    agenttrace.init(trace_dir=str(tmp_path), quiet=True, max_body_bytes=4000)
    try:
        received, recorded = recorder.run(agent)
    finally:
        agenttrace.init(trace_dir=str(tmp_path), quiet=True, max_body_bytes=10 * 1024 * 1024)
    sent = [text_body, binary_body, b"", b""]
    assert len(recorded.exchanges) == 4
    for span, exchange, request_body, response_body in zip(recorded.call_spans, recorded.exchanges, sent, received):
        events = recorded.events(span)
        request, response = events[S.EVENT_REQUEST], events[S.EVENT_RESPONSE]
        assert request[S.BODY_SHA256] == hashlib.sha256(request_body).hexdigest()
        assert exchange.request.body == request_body
        assert response[S.BODY_SHA256] == hashlib.sha256(response_body).hexdigest()
        assert response[S.BODY_SIZE] == len(response_body)
        # The digest keeps its place among the attributes (the trace file's text is unchanged).
        request_keys = _event_keys(span, S.EVENT_REQUEST)
        assert request_keys[request_keys.index(S.BODY) :][:4] == BODY_KEYS
        response_keys = _event_keys(span, S.EVENT_RESPONSE)
        assert response_keys[response_keys.index(S.BODY) :][:4] == BODY_KEYS
    assert recorded.events(recorded.call_spans[1])[S.EVENT_RESPONSE][S.BODY_ENCODING] == "base64"
    assert recorded.events(recorded.call_spans[3])[S.EVENT_RESPONSE][S.BODY_TRUNCATED] is True


def _event_span(attributes: dict[str, Any], data: bytes) -> tuple[ReadableSpan, dict[str, Any]]:
    """A finished SDK span holding one request event built from ``data``, and the eager values."""
    text, encoding = encode_body(data)
    eager = {
        **attributes,
        S.BODY: text,
        S.BODY_ENCODING: encoding,
        S.BODY_SIZE: len(data),
        S.BODY_SHA256: hashlib.sha256(data).hexdigest(),
    }
    span = trace.get_tracer("pending-digest-test").start_span("POST")
    values = dict(attributes)
    pending = _capture._body_attributes(values, data, 1 << 20)
    assert pending
    _capture.add_event(span, S.EVENT_REQUEST, values, pending)
    span.end()
    assert isinstance(span, ReadableSpan)
    return span, eager


@pytest.mark.parametrize("data", [b'{"a": "\xc3\xa9\\n"}' * 40, binary_payload(500)])
def test_pending_digest_reads_the_same_every_way(spans: InMemorySpanExporter, data: bytes) -> None:
    """Every Mapping read gives the eager values; only reads that can show the digest compute it."""
    span, eager = _event_span({S.HTTP_METHOD: "POST", S.HTTP_URL: "http://h/p"}, data)
    (event,) = span.events
    attributes = event.attributes
    assert attributes is not None
    pending = _pending_of(attributes)
    # What the trace writer's size estimate does on the agent's thread: no digest computed.
    assert len(attributes) == len(eager)
    assert S.BODY_SHA256 in attributes
    assert list(attributes) == list(eager)
    assert list(attributes.keys()) == list(eager)
    assert attributes.get(S.BODY) == eager[S.BODY]
    assert attributes[S.BODY_SIZE] == len(data)
    assert _span_size(span) > 512
    assert pending._pending
    # Any read that can show the digest gives the eager one.
    assert attributes[S.BODY_SHA256] == eager[S.BODY_SHA256]
    assert not pending._pending
    assert list(attributes.items()) == list(eager.items())
    assert list(attributes.values()) == list(eager.values())
    assert dict(attributes) == eager
    assert attributes == eager
    assert attributes.copy() == eager
    assert type(attributes.copy()) is dict


def test_pending_digest_is_computed_by_the_first_reader_of_any_kind(spans: InMemorySpanExporter) -> None:
    """items(), values(), copy(), get() of the digest, equality: each computes it on its own."""
    data = b"payload " * 50
    readers = [
        lambda a: list(a.items()),
        lambda a: list(a.values()),
        lambda a: a.copy(),
        lambda a: a.get(S.BODY_SHA256),
        dict,
        lambda a: a == {},
        repr,
    ]
    for read in readers:
        span, eager = _event_span({}, data)
        attributes = span.events[0].attributes
        assert attributes is not None
        read(attributes)
        assert not _pending_of(attributes)._pending
        assert dict(attributes) == eager


def test_encoders_see_the_digest(spans: InMemorySpanExporter) -> None:
    """Our trace file text and the OTLP protobuf encoder (export lanes, users' exporters) carry it."""
    data = b'{"k": 1}' * 30
    span, eager = _event_span({S.HTTP_METHOD: "POST"}, data)
    text = json.loads(span_text(span))
    (event,) = text["events"]
    assert decode_attributes(event["attributes"]) == eager
    assert [kv["key"] for kv in event["attributes"]] == list(eager)
    span, eager = _event_span({S.HTTP_METHOD: "POST"}, data)
    encoded = encode_spans([span])
    (proto_event,) = encoded.resource_spans[0].scope_spans[0].spans[0].events
    values = {kv.key: kv.value for kv in proto_event.attributes}
    assert values[S.BODY_SHA256].string_value == eager[S.BODY_SHA256]
    assert [kv.key for kv in proto_event.attributes] == list(eager)


def test_pending_digest_is_computed_once_across_threads(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Readers racing on several threads (writer, export lanes) compute the digest once."""
    span, eager = _event_span({}, b"x" * 2000)
    computed = []

    def counting_sha256(data: bytes) -> Any:
        computed.append(len(data))
        return hashlib.sha256(data)

    monkeypatch.setattr(_capture, "hashlib", SimpleNamespace(sha256=counting_sha256))
    attributes = span.events[0].attributes
    assert attributes is not None
    start = threading.Barrier(8)
    seen: list[dict[str, Any]] = []

    def reader() -> None:
        start.wait()
        seen.append(dict(attributes.items()))

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert computed == [2000]
    assert seen == [eager] * 8


def test_non_sdk_span_gets_the_digest_at_once() -> None:
    """A span that is not the SDK's gets the public add_event, with every value filled in."""

    class Recording:
        def __init__(self) -> None:
            self.events: list[tuple[str, dict[str, Any]]] = []

        def is_recording(self) -> bool:
            return True

        def add_event(self, name: str, attributes: dict[str, Any]) -> None:
            self.events.append((name, dict(attributes)))

    span = Recording()
    values: dict[str, Any] = {}
    pending = _capture._body_attributes(values, b"abc", 100)
    _capture.add_event(span, S.EVENT_REQUEST, values, pending)  # type: ignore[arg-type]
    assert span.events[0][1][S.BODY_SHA256] == hashlib.sha256(b"abc").hexdigest()


def test_cut_and_empty_bodies_are_hashed_at_once() -> None:
    """A body cut at max_body_bytes (the event keeps part of it) and an empty one: no pending digest."""
    values: dict[str, Any] = {}
    assert not _capture._body_attributes(values, b"y" * 50, 10)
    assert values[S.BODY_SHA256] == hashlib.sha256(b"y" * 50).hexdigest()
    assert values[S.BODY_TRUNCATED] is True
    assert values[S.BODY] == "y" * 10
    values = {}
    assert not _capture._body_attributes(values, b"", 10)
    assert values[S.BODY_SHA256] == hashlib.sha256(b"").hexdigest()


def _pending_of(attributes: Any) -> Any:
    # The event's attributes are a read-only view of the _PendingDigest mapping.
    mapping = [m for m in _referents(attributes) if isinstance(m, _capture._PendingDigest)]
    assert mapping, "the event's attributes should be a pending-digest view"
    return mapping[0]


def _referents(obj: Any) -> list[Any]:
    import gc

    return gc.get_referents(obj)


# --- headers, redaction, URLs: reused when they repeat ---------------------------------------------


def test_redaction_keeps_a_clean_tuple_and_still_redacts() -> None:
    """No secret among known names: the same tuple back. A secret, or an unknown name: redacted as before."""
    redactor = _payload.Redactor()
    clean = (("Accept", "*/*"), ("Content-Type", "application/json"))
    assert redactor.headers(clean) == clean  # learns the names
    assert redactor.headers(clean) is clean
    secret = (*clean, ("Authorization", "Bearer t"))
    for _ in range(2):
        assert redactor.headers(secret) == (*clean, ("Authorization", _payload.placeholder("Bearer t")))
    assert redactor.headers([("Accept", "*/*")]) == (("Accept", "*/*"),)
    assert redactor.headers((["Accept", "*/*"],)) == (("Accept", "*/*"),)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        redactor.headers((("Accept", "*/*", "x"),))  # type: ignore[arg-type]


def test_recorded_url_follows_a_change_of_redaction_rules() -> None:
    """Recorded URLs are remembered per redactor: new redact_headers rules apply at once."""
    url = "http://h/p?tenant=7&page=2"
    try:
        assert _payload.filter_url(url, EMPTY) == url
        assert _payload.filter_url(url, EMPTY) == url
        _payload.set_extra_redacted_headers(["tenant"])
        assert _payload.filter_url(url, EMPTY) == "http://h/p?" + urlencode(
            [("tenant", _payload.placeholder("7")), ("page", "2")]
        )
    finally:
        _payload.set_extra_redacted_headers([])
    assert _payload.filter_url(url, EMPTY) == url
    assert _payload.filter_url("http://u:pw@h/p?token=1", EMPTY) == _payload.filter_url(
        "http://u:pw@h/p?token=1", compile_filter(None)
    )
    assert "pw" not in _payload.filter_url("http://u:pw@h/p?token=1", EMPTY)


def test_unredacted_request_is_recorded_as_is() -> None:
    """Nothing to redact: the request is recorded as it came (no second copy), values equal."""
    request = RequestData("GET", "http://h/p?q=1", (("Accept", "*/*"),), b"")
    _payload.redact_headers(request.headers)  # the names are known from here on
    recorded, filtered = _payload.redact_request(request, EMPTY)
    assert recorded == request
    assert not filtered
    secret = RequestData("GET", "http://h/p", (("Authorization", "x"),), b"")
    recorded, _ = _payload.redact_request(secret, EMPTY)
    assert recorded.headers == (("Authorization", _payload.placeholder("x")),)


def test_urllib3_header_pairs_are_those_items_gives() -> None:
    """requests' CaseInsensitiveDict, dicts and urllib3's HTTPHeaderDict give the pairs items() gives."""
    import urllib3
    from agenttrace.instrumentors.urllib3.adapter import _request_headers

    cases: list[Any] = [
        requests.structures.CaseInsensitiveDict({"User-Agent": "x", "content-type": "a/b"}),
        requests.structures.CaseInsensitiveDict({"X-Bytes": b"raw", "X-Int": 5}),
        {"A": "1", "b": "2"},
        OrderedDict([("A", "1")]),
        urllib3.HTTPHeaderDict({"A": "1", "B": "2"}),
    ]
    for headers in cases:
        expected = tuple((str(k), str(v)) for k, v in headers.items())
        assert _request_headers(headers) == expected
        assert all(type(pair) is tuple for pair in _request_headers(headers))

    class Custom(requests.structures.CaseInsensitiveDict):  # type: ignore[type-arg]
        def items(self) -> Any:
            return [("Only", "this")]

    assert _request_headers(Custom({"A": "1"})) == (("Only", "this"),)
