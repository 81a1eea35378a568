"""The matcher on Exchange objects built directly: keys, occurrences, volatile headers, diffs, threads."""

from __future__ import annotations

import hashlib
import json
import random
import threading

from agenttrace._capture.model import Body, Exchange, RequestData, ResponseData
from agenttrace._replay.matcher import (
    Entry,
    Matcher,
    Miss,
    _body_digest,
    _digest,
    _general_normalize,
    _parse_body,
    _simple_normalize,
    normalize_url,
)


def _exchange(
    url: str,
    body: object = None,
    step: tuple[str, ...] = ("s",),
    method: str = "POST",
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),),
    answer: str = "ok",
    ordinal: int = 0,
) -> Exchange:
    raw = b"" if body is None else json.dumps(body).encode()
    data = answer.encode()
    return Exchange(
        library="httpx",
        ordinal=ordinal,
        step_path=step,
        request=RequestData(method, url, headers, raw),
        response=ResponseData(200, (), Body(data, len(data), hashlib.sha256(data).hexdigest())),
        trace_id="t1",
    )


def _request(
    url: str, body: object = None, method: str = "POST", headers: tuple[tuple[str, str], ...] = ()
) -> RequestData:
    raw = b"" if body is None else json.dumps(body).encode()
    return RequestData(method, url, (("content-type", "application/json"), *headers), raw)


def _served(found: Entry | Miss) -> str:
    assert isinstance(found, Entry), found.describe() if isinstance(found, Miss) else found
    assert found.exchange.response is not None
    return found.exchange.response.body.data.decode()


def test_json_bodies_compare_as_data_and_queries_in_any_order() -> None:
    """Key order, whitespace, query order, host case and default port do not matter."""
    m = Matcher([_exchange("https://API.example.com:443/v1?b=2&a=1", {"x": 1, "y": [1, 2]})])
    req = RequestData(
        "post", "https://api.example.com/v1?a=1&b=2", (("content-type", "application/json"),), b'{ "y": [1,2], "x": 1 }'
    )
    assert _served(m.match(req, ("s",))) == "ok"


def test_volatile_and_secret_headers_are_ignored_but_others_compared() -> None:
    """traceparent, user-agent, x-stainless-*, idempotency keys and secrets never cause a miss."""
    recorded = (
        ("content-type", "application/json"),
        ("traceparent", "00-aaa-bbb-01"),
        ("user-agent", "OpenAI/Python 1.0"),
        ("x-stainless-retry-count", "0"),
        ("idempotency-key", "stainless-python-retry-1"),
        ("authorization", "[REDACTED sha256:deadbeef]"),
        ("x-tenant", "acme"),
    )
    m = Matcher(
        [_exchange("http://h/a", {"q": 1}, headers=recorded), _exchange("http://h/a", {"q": 1}, headers=recorded)]
    )
    live = (
        ("traceparent", "00-ccc-ddd-01"),
        ("user-agent", "OpenAI/Python 2.0"),
        ("x-stainless-retry-count", "1"),
        ("idempotency-key", "other"),
        ("authorization", "[REDACTED sha256:0badf00d]"),
        ("x-tenant", "acme"),
    )
    assert isinstance(m.match(_request("http://h/a", {"q": 1}, headers=live), ("s",)), Entry)
    miss = m.match(_request("http://h/a", {"q": 1}, headers=(("x-tenant", "other"),)), ("s",))
    assert isinstance(miss, Miss)
    assert 'header \'x-tenant\': recorded "acme", called "other"' in miss.describe()


def test_equal_calls_are_served_in_recorded_order_then_miss() -> None:
    """The n-th equal call in a step gets the n-th response; one more is an occurrence miss."""
    m = Matcher([_exchange("http://h/a", {"q": 1}, answer=f"r{i}", ordinal=i) for i in range(3)])
    assert [_served(m.match(_request("http://h/a", {"q": 1}), ("s",))) for _ in range(3)] == ["r0", "r1", "r2"]
    miss = m.match(_request("http://h/a", {"q": 1}), ("s",))
    assert isinstance(miss, Miss)
    assert "recorded 3 time(s) in this step and every one was already served" in miss.describe()


def test_step_is_part_of_the_causal_position() -> None:
    """The same call from another step is a miss whose diff names the steps."""
    m = Matcher([_exchange("http://h/a", {"q": 1}, step=("search",))])
    miss = m.match(_request("http://h/a", {"q": 1}), ("answer",))
    assert isinstance(miss, Miss)
    assert "step: recorded 'search', called 'answer'" in miss.describe()


def test_diff_names_json_path_query_param_and_url() -> None:
    """The closest recorded call is found and each difference is named precisely."""
    m = Matcher(
        [
            _exchange("http://h/chat?model=a", {"messages": [{"role": "user", "content": "Hi"}], "n": 1}),
            _exchange("http://h/other", {"z": 1}),
        ]
    )
    miss = m.match(
        _request("http://h/chat?model=b", {"messages": [{"role": "user", "content": "Hello"}], "n": 1}), ("s",)
    )
    assert isinstance(miss, Miss)
    text = miss.describe()
    assert "closest: POST http://h/chat?model=a" in text
    assert 'query param \'model\': recorded "a", called "b"' in text
    assert 'body $.messages[0].content: recorded "Hi", called "Hello"' in text
    miss = m.match(
        _request("http://h/chat2?model=a", {"messages": [{"role": "user", "content": "Hi"}], "n": 1}), ("s",)
    )
    assert isinstance(miss, Miss)
    assert "url: recorded http://h/chat, called http://h/chat2" in miss.describe()


def test_threads_interleaving_differently_get_their_own_responses() -> None:
    """200 calls with distinct bodies served from 8 threads in shuffled order: each gets its own."""
    m = Matcher([_exchange("http://h/a", {"task": i}, answer=f"r{i}") for i in range(200)])
    order = list(range(200))
    random.Random(7).shuffle(order)
    got: dict[int, str] = {}
    lock = threading.Lock()

    def worker(items: list[int]) -> None:
        for i in items:
            answer = _served(m.match(_request("http://h/a", {"task": i}), ("s",)))
            with lock:
                got[i] = answer

    threads = [threading.Thread(target=worker, args=(order[k::8],)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == {i: f"r{i}" for i in range(200)}
    assert m.unused() == []


def test_unused_lists_calls_never_served() -> None:
    """unused() returns what the run never asked for, optionally for one recorded trace."""
    m = Matcher([_exchange("http://h/a"), _exchange("http://h/b")])
    m.match(_request("http://h/a"), ("s",))
    assert [e.request.url for e in m.unused()] == ["http://h/b"]
    assert m.unused("other-trace") == []


def test_lookup_does_not_scan_the_recording() -> None:
    """A hit touches one hash bucket: 10,000 distinct recorded calls, every lookup a direct hit."""
    m = Matcher([_exchange(f"http://h/item/{i}", {"i": i}, answer=str(i)) for i in range(10_000)])
    for i in (0, 5_000, 9_999):
        assert _served(m.match(_request(f"http://h/item/{i}", {"i": i}), ("s",))) == str(i)
    assert len(m._index) == 10_000  # one bucket per distinct call: lookups are O(1)


def test_normalize_url() -> None:
    """Normalization keeps what matters and drops what does not."""
    assert normalize_url("HTTP://Example.COM:80/a%7Eb?z=1&a=2#frag") == "http://example.com/a~b?a=2&z=1"
    assert normalize_url("http://h/?k=[REDACTED sha256:abcd1234]") == normalize_url(
        "http://h/?k=[REDACTED sha256:ffff0000]"
    )


def test_simple_url_fast_path_agrees_with_the_general_way() -> None:
    """normalize_url's shortcut for plain http(s) URLs gives what urlsplit/quote/urlencode give."""
    fixed = [
        "http://127.0.0.1:8000/json?i=0",
        "HTTPS://API.Example.com:443/v1?b=2&a=1",
        "http://h",
        "http://h:80/",
        "http://h:080/x",
        "http://h:99999/x",
        "http://h/a?x",
        "http://h/a?&&",
        "http://h/a?=v",
        "http://h/a?b=1&a=2&a=1",
        "http://h/p?a=b=c",
        "https://h/a/b;c=d?q=-_.~",
        "http://h/a?",
        "http://h.com./x",
        "http://h/a?b=&a",
        "http://u:p@h/x",
        "http://[::1]:8080/x",
        "http://h/a%2Fb?q=a%20b",
        "http://h/a?q=a+b#frag",
    ]
    rng = random.Random(7)
    alphabet = "aZ09-._~:/?#[]@!$&'()*+,;=% é"
    generated = [
        "http"
        + rng.choice(["", "s", "S"])
        + "://"
        + rng.choice(["h", "H.x", "h:81", "h:443"])
        + "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 20)))
        for _ in range(3000)
    ]
    for url in fixed + generated:
        fast = _simple_normalize(url)
        try:
            general = _general_normalize(url)
        except ValueError:  # e.g. "Invalid IPv6 URL": the fast path must not accept it either
            assert fast is None, url
            continue
        assert fast is None or fast == general, url
        assert normalize_url(url) == general, url
    assert _simple_normalize(fixed[0]) is not None


def test_exact_and_canonical_bodies_share_one_order() -> None:
    """Recorded bodies equal as data but spelt differently are served in recorded order either way."""
    spellings = [b'{"a":1,"b":2}', b'{"b": 2, "a": 1}']
    recorded = [
        Exchange(
            library="httpx",
            ordinal=i,
            step_path=("s",),
            request=RequestData("POST", "http://h/x", (("content-type", "application/json"),), raw),
            response=ResponseData(200, (), Body(f"r{i}".encode(), 2, hashlib.sha256(f"r{i}".encode()).hexdigest())),
            trace_id="t1",
        )
        for i, raw in enumerate(spellings)
    ]
    m = Matcher(recorded)
    live = RequestData("POST", "http://h/x", (("content-type", "application/json"),), spellings[1])
    assert _served(m.match(live, ("s",))) == "r0"  # the first equal call gets the first response
    assert _served(m.match(live, ("s",))) == "r1"
    assert isinstance(m.match(live, ("s",)), Miss)


def test_lone_surrogate_in_a_json_body_matches_instead_of_raising() -> None:
    """A body holding the escape of a lone surrogate (valid JSON, not valid UTF-8 decoded) is indexed and served."""
    m = Matcher([_exchange("https://api.example.com/v1", {"text": "\ud800 broken emoji"})])
    assert _served(m.match(_request("https://api.example.com/v1", {"text": "\ud800 broken emoji"}), ("s",))) == "ok"
    assert isinstance(m.match(_request("https://api.example.com/v1", {"text": "\udc00 other"}), ("s",)), Miss)


def test_plain_json_digest_agrees_with_the_long_way() -> None:
    """The digest that skips walking a plain JSON body is the one parsing and walking it gives."""
    json_type = (("content-type", "application/json"),)
    bodies = [
        b'{"a":1,"b":[1,2.5,"x"]}',
        b'{"b": 2, "a": 1}',
        b"[1, 2, 3]",
        b'{"n": 12345678901234567890}',  # beyond 2**53: orjson reads a float, the long way an int
        b'{"n": 123456789012345678901234567890}',  # beyond 64 bits
        b'{"n": 9007199254740993}',
        b'{"x": 1e400}',  # not finite once read
        b'{"x": 1.5E-3, "y": -2e+10}',
        b'{"x": NaN}',  # not JSON to orjson, JSON to the standard library
        b'{"t": "\\ud800 lone"}',
        b'{"t": "digits 1234567890123456789 and e5 in a string"}',
        b'{"t": "caf\xc3\xa9 \xe2\x82\xac"}',
        b"{not json",
        b"[",
        b"plain text",
        b"",
        b'{"deep": ' + b"[" * 600 + b"]" * 600 + b"}",
    ]
    for headers in (json_type, (("content-type", "text/plain"),), ()):
        for body in bodies:
            assert _digest(body, headers) == _body_digest(*_parse_body(body, headers)), (body[:40], headers)
    form = (("content-type", "application/x-www-form-urlencoded"),)
    assert _digest(b"b=2&a=1", form) == _body_digest(*_parse_body(b"b=2&a=1", form))
