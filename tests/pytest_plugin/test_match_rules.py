"""Match rules (``ignore=``): the fields of a request the matcher leaves out, and how rules are read."""

from __future__ import annotations

import hashlib
import json

import pytest

from agenttrace._capture.model import Body, Exchange, RequestData, ResponseData
from agenttrace._replay import matcher as M  # noqa: N812 - short name for the module under test
from agenttrace._replay.matcher import Entry, IgnoreRules, Matcher, Miss, call_differences, parse_ignore


def _request(body: object, url: str = "http://127.0.0.1:9/v1/chat?ts=1&q=a", **headers: str) -> RequestData:
    pairs = (("content-type", "application/json"), *headers.items())
    return RequestData("POST", url, pairs, json.dumps(body).encode())


def _exchange(request: RequestData, answer: bytes = b'{"ok": true}') -> Exchange:
    body = Body(answer, len(answer), hashlib.sha256(answer).hexdigest())
    return Exchange("httpx", 0, (), request, ResponseData(200, (), body), trace_id="t1", span_id="s1")


RECORDED = {"q": "weather", "metadata": {"sent_at": 1, "user": "u"}, "messages": [{"id": "a", "text": "hi"}]}


def test_ignored_paths_headers_and_query_parameters_match() -> None:
    """A request differing only in ignored fields gets the recorded exchange."""
    rules = parse_ignore(["$.metadata.sent_at", "$.messages[*].id", "header:X-Sent-At", "query:ts"])
    recorded = _exchange(_request(RECORDED, **{"x-sent-at": "1"}))
    live = {"q": "weather", "metadata": {"sent_at": 2, "user": "u"}, "messages": [{"id": "b", "text": "hi"}]}
    found = Matcher([recorded], ignore=rules).match(
        _request(live, url="http://127.0.0.1:9/v1/chat?q=a&ts=2", **{"x-sent-at": "2"}), ()
    )
    assert isinstance(found, Entry)
    assert found.exchange is recorded  # the recorded exchange itself is served, unchanged


def test_a_field_not_ignored_still_misses_and_the_diff_skips_ignored_ones() -> None:
    """Only the named fields are ignored: another change misses, and the explanation names only it."""
    rules = parse_ignore(["$.metadata.sent_at"])
    recorded = _exchange(_request(RECORDED))
    live = {**RECORDED, "q": "rain", "metadata": {"sent_at": 2, "user": "u"}}
    found = Matcher([recorded], ignore=rules).match(_request(live), ())
    assert isinstance(found, Miss)
    assert found.differences == ['body $.q: recorded "weather", called "rain"']


def test_without_rules_the_timestamp_misses() -> None:
    """With no rule, the same clock value difference is a miss naming its JSON path."""
    recorded = _exchange(_request(RECORDED))
    live = {**RECORDED, "metadata": {"sent_at": 2, "user": "u"}}
    found = Matcher([recorded], ignore=IgnoreRules()).match(_request(live), ())
    assert isinstance(found, Miss)
    assert found.differences == ["body $.metadata.sent_at: recorded 1, called 2"]


def test_rules_in_force_and_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A matcher built without rules takes those set by ignoring(), else the subprocess variable's."""
    recorded = _exchange(_request(RECORDED))
    live = _request({**RECORDED, "metadata": {"sent_at": 9, "user": "u"}})
    before = M.ignoring(parse_ignore(["$.metadata.sent_at"]))
    try:
        assert isinstance(Matcher([recorded]).match(live, ()), Entry)
    finally:
        M.ignoring(before)
    assert isinstance(Matcher([recorded]).match(live, ()), Miss)
    monkeypatch.setenv(M.IGNORE_ENV, json.dumps(["$.metadata.sent_at"]))
    assert isinstance(Matcher([recorded]).match(live, ()), Entry)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("$.a.b", (("a", "b"),)),
        ("$.list[0].x", (("list", 0, "x"),)),
        ('$["odd key"][*]', (("odd key", "*"),)),
        ("body:$.a", (("a",),)),
    ],
)
def test_json_paths_are_read(rule: str, expected: tuple[tuple[object, ...], ...]) -> None:
    """JSON paths: .name, [N], [*] and ["quoted key"], optionally prefixed with body:."""
    assert parse_ignore([rule]).json_paths == expected


@pytest.mark.parametrize("rule", ["metadata.sent_at", "$", "$.a..b", "header:", "cookie:x", ""])
def test_bad_rules_are_refused_naming_the_rule(rule: str) -> None:
    """A rule that is no JSON path, header: or query: is refused, quoting it."""
    with pytest.raises(ValueError, match=r"match rule|JSON path") as info:
        parse_ignore([rule])
    assert repr(rule) in str(info.value)


def test_call_differences_name_fields_with_a_and_b() -> None:
    """call_differences (agenttrace diff) words both sides as A and B, JSON paths included."""
    a = _exchange(_request({"q": "one"}), b'{"answer": 1}')
    b = _exchange(_request({"q": "two"}, url="http://127.0.0.1:9/v1/chat?ts=2&q=a"), b'{"answer": 2}')
    assert call_differences(a, b) == [
        'query param \'ts\': A "1", B "2"',
        'body $.q: A "one", B "two"',
        "response body $.answer: A 1, B 2",
    ]
