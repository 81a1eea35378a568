"""The load path's shortcuts give what the plain ways give, on awkward input too.

The attribute decoder of the replay loader reads well-formed items in a tight loop and hands
anything else to the exact reading (same result, or the same exception, as ``decode_attributes``
in the loader's order); the model's objects are built by filling their ``__dict__``; the matcher
finds the digest of a body equal to the one before without hashing it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest

from agenttrace._capture.model import Body, Exchange, RecordedError, RequestData, ResponseData
from agenttrace._format import events as _events
from agenttrace._format.files import InexactNumberError, exact_int, has_inexact
from agenttrace._format.otlp_json import decode_value
from agenttrace._replay.loader import _attributes
from agenttrace._replay.matcher import Matcher, _digest

_NO_VALUE: dict[str, Any] = {}


def _reference_value(value: Any, to_int: Callable[[Any], int]) -> Any:
    # The loader's decoder as it was (a comprehension): the reference the shortcut must match.
    if "arrayValue" in value and "boolValue" not in value and "doubleValue" not in value:
        return [
            item["stringValue"]
            if "stringValue" in item
            else (int(number) if type(number := item["intValue"]) is str else to_int(number))
            if "intValue" in item
            else _reference_value(item, to_int)
            for item in value["arrayValue"].get("values", ())
        ]
    if to_int is exact_int and has_inexact(value):
        raise InexactNumberError("a number orjson may have rounded")
    return decode_value(value)


def _reference(items: Any, to_int: Callable[[Any], int]) -> dict[str, Any]:
    return {
        kv["key"]: value["stringValue"]
        if "stringValue" in value
        else (int(number) if type(number := value["intValue"]) is str else to_int(number))
        if "intValue" in value
        else _reference_value(value, to_int)
        for kv in items or ()
        for value in (kv.get("value", _NO_VALUE),)
    }


def _outcome(decode: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "value", decode()
    except Exception as exc:  # the exception is what is compared
        return type(exc).__name__, str(exc)


def _kv(key: Any, value: Any) -> dict[str, Any]:
    return {"key": key, "value": value}


AWKWARD: list[Any] = [
    None,
    [],
    [_kv("a", {"stringValue": "x"}), _kv("b", {"intValue": "12"}), _kv("c", {"intValue": 7})],
    [_kv("a", {"stringValue": "x"}), _kv("a", {"intValue": "2"})],  # a repeated key: the last wins
    [_kv("a", {"stringValue": None})],
    [{"key": "no value"}],
    [{"value": {"stringValue": "no key"}}],
    [{"value": {"intValue": "x"}}],  # no key and a bad number: the key is read first
    ["not an item"],
    [["key", "value"]],
    [7],
    [_kv("s", "stringValue inside a string")],
    [_kv("s", "a plain string")],
    [_kv("l", ["stringValue"])],
    [_kv("l", [1, 2])],
    [_kv("n", 5)],
    [_kv("n", None)],
    [_kv("i", {"intValue": "abc"})],
    [_kv("i", {"intValue": 1e20})],  # a float orjson may have made of an integer
    [_kv("i", {"intValue": 2.5})],
    [_kv("i", {"intValue": None})],
    [_kv("b", {"boolValue": True}), _kv("d", {"doubleValue": "1.5"}), _kv("d2", {"doubleValue": "x"})],
    [_kv("arr", {"arrayValue": {"values": [{"intValue": "1"}, {"stringValue": "s"}, {"boolValue": False}]}})],
    [_kv("arr", {"arrayValue": {"values": [{"intValue": 3e30}]}})],
    [_kv("arr", {"arrayValue": {"values": [{"arrayValue": {"values": [{"intValue": "9"}]}}]}})],
    [_kv("arr", {"arrayValue": ["not", "a", "dict"]})],
    [_kv("arr", {"arrayValue": {}, "boolValue": True})],
    [_kv("kv", {"kvlistValue": {"values": [_kv("x", {"stringValue": "y"})]}})],
    [_kv("kv", {"kvlistValue": {"values": [{"value": {}}]}})],
    [_kv("bytes", {"bytesValue": "aGk="}), _kv("bad", {"bytesValue": "!"})],
    [_kv("empty", {})],
    [_kv(["unhashable"], {"stringValue": "x"})],
    [_kv(["unhashable"], {"intValue": "x"})],  # a bad number before an unhashable key
    [_kv(1, {"stringValue": "an int key"})],
    {"key": "a dict, not a list"},
    "a string",
    7,
]


@pytest.mark.parametrize("to_int", [exact_int, int], ids=["exact_int", "int"])
@pytest.mark.parametrize("items", AWKWARD, ids=range(len(AWKWARD)))
def test_attributes_decode_as_the_comprehension_did(items: Any, to_int: Callable[[Any], int]) -> None:
    """Same dict (same order) or the same exception, with the same message, as the old decoder."""
    got = _outcome(lambda: _attributes(items, to_int))
    want = _outcome(lambda: _reference(items, to_int))
    assert got == want
    if got[0] == "value":
        assert list(got[1]) == list(want[1])


def test_builders_make_what_the_classes_make() -> None:
    """The __dict__-filling builders give objects equal to (and repr'd like) the dataclasses' own."""
    body = _events.new_body(b"x", 1, "s", True)
    assert body == Body(b"x", 1, "s", True)
    request = _events.new_request("GET", "u", (("a", "b"),), b"")
    assert request == RequestData("GET", "u", (("a", "b"),), b"")
    response = _events.new_response(200, (), body, "OK", "HTTP/1.1", (1,), (0,), "complete")
    assert response == ResponseData(200, (), Body(b"x", 1, "s", True), "OK", "HTTP/1.1", (1,), (0,), "complete")
    error = RecordedError("E", "m")
    exchange = _events.new_exchange("l", 0, ("s",), request, response, error, "t", "p", {"k": "v"})
    made = Exchange("l", 0, ("s",), request, response, error, "t", "p", {"k": "v"})
    assert exchange == made
    assert repr(exchange) == repr(made)
    assert list(vars(exchange)) == list(vars(made))
    with pytest.raises(AttributeError):
        exchange.library = "other"  # type: ignore[misc]  # still frozen


def _call(body: Any, content_type: str, url: str = "https://h.example/p") -> Exchange:
    data = b"ok"
    return Exchange(
        "httpx",
        0,
        (),
        RequestData("POST", url, (("content-type", content_type),), body),
        ResponseData(200, (), Body(data, 2, hashlib.sha256(data).hexdigest())),
    )


def test_matcher_digests_equal_bodies_as_it_digests_each() -> None:
    """Equal bodies share a digest only under the same content type; mutable bodies are digested each time."""
    json_body = b'{"b": 1, "a": [1, 2]}'
    form_body = b"b=1&a=2"
    calls = [
        _call(json_body, "application/json"),
        _call(bytes(json_body), "application/json"),  # equal bytes, another object
        _call(json_body, "text/plain"),  # same bytes, another content type
        _call(form_body, "application/x-www-form-urlencoded"),
        _call(form_body, "text/plain"),
        _call(bytearray(form_body), "application/x-www-form-urlencoded"),
        _call(bytearray(form_body), "application/x-www-form-urlencoded"),
        _call(form_body, "application/x-www-form-urlencoded"),
        _call(b"", "application/json"),
        _call(b"", "text/plain"),
    ]
    matcher = Matcher(calls)
    for entry, call in zip(matcher._entries, calls):
        assert entry.key[3] == _digest(bytes(call.request.body), call.request.headers)
    for call in calls:  # each is served, once, to a request sending what it recorded
        found = matcher.match(call.request, ())
        assert not hasattr(found, "differences"), found
