"""Redaction, step filters on payloads, and the body size limit, end to end through real clients."""

from __future__ import annotations

import json
import re

import httpx
import requests

import agenttrace
from agenttrace._capture.payload import Redactor, filter_body, placeholder
from tests.recording import Recorder
from tests.servers import TestServer


def test_default_header_redaction(recorder: Recorder, server: TestServer) -> None:
    """Secret headers become equal placeholders for equal values; the value never appears."""

    def agent() -> None:
        for _ in range(2):
            httpx.get(
                server.url("/status/200"),  # not the echo route: it would reflect the headers in its body
                headers={
                    "Authorization": "Bearer s3cr3t",
                    "X-Session-Token": "tok-9",
                    "Cookie": "a=b",
                    "X-Plain": "ok",
                },
            )

    _, trace = recorder.run(agent)
    first, second = (dict(e.request.headers) for e in trace.exchanges)
    assert first["Authorization"] == second["Authorization"] == placeholder("Bearer s3cr3t")
    assert first["X-Session-Token"].startswith("[REDACTED sha256:")
    assert first["Cookie"].startswith("[REDACTED sha256:")
    assert first["X-Plain"] == "ok"
    dumped = json.dumps(trace.call_spans)
    assert "s3cr3t" not in dumped
    assert "tok-9" not in dumped


def test_set_cookie_redacted(recorder: Recorder, server: TestServer) -> None:
    """Set-Cookie in a response is redacted too."""

    def agent() -> None:
        httpx.get(server.url("/redirect?to=/json"))

    _, trace = recorder.run(agent)
    headers = dict(trace.exchanges[0].response.headers)  # type: ignore[union-attr]
    assert headers["Set-Cookie"].startswith("[REDACTED sha256:")


def test_extra_redacted_headers_setting(tmp_path: object, server: TestServer) -> None:
    """The redact_headers setting adds exact names and globs to the defaults."""
    recorder = Recorder(tmp_path)  # type: ignore[arg-type]
    agenttrace.init(trace_dir=str(tmp_path), quiet=True, redact_headers="x-tenant,x-internal-*")
    try:

        def agent() -> None:
            httpx.get(server.url("/json"), headers={"X-Tenant": "acme", "X-Internal-Route": "r1", "X-Other": "v"})

        _, trace = recorder.run(agent)
    finally:
        agenttrace.init(trace_dir=str(tmp_path), quiet=True, redact_headers=",")
    headers = dict(trace.exchanges[0].request.headers)
    assert headers["X-Tenant"].startswith("[REDACTED")
    assert headers["X-Internal-Route"].startswith("[REDACTED")
    assert headers["X-Other"] == "v"


def test_url_credentials_and_secret_query(recorder: Recorder, server: TestServer) -> None:
    """Userinfo and secret-named query parameters are redacted in url.full and the request event."""

    def agent() -> None:
        httpx.get(server.url("/status/200?api_key=abc123&page=2").replace("http://", "http://user:pw@"))

    _, trace = recorder.run(agent)
    url = trace.exchanges[0].request.url
    assert "abc123" not in url
    assert "pw@" not in url
    assert "page=2" in url
    assert trace.attrs(trace.call_spans[0])["url.full"] == url


def test_step_filter_json_bodies(recorder: Recorder, server: TestServer) -> None:
    """step(filter=...) removes JSON fields by name and path from request and response bodies."""

    def agent() -> dict[str, object]:
        with agenttrace.step("login", filter=["password", "user.ssn", "id"]):
            return dict(
                requests.post(
                    server.url("/json"),
                    json={"password": "hunter2", "user": {"ssn": "123-45", "name": "al"}},
                    timeout=5,
                ).json()
            )

    echoed, trace = recorder.run(agent)
    assert "hunter2" in str(echoed["body"])  # the agent saw the real data
    exchange = trace.exchanges[0]
    sent = json.loads(exchange.request.body)
    assert sent == {"password": "[FILTERED]", "user": {"ssn": "[FILTERED]", "name": "al"}}
    recorded = json.loads(exchange.response.body.data)  # type: ignore[union-attr]
    assert recorded["id"] == "[FILTERED]" != echoed["id"]
    assert exchange.extra.get("request_body_filtered") == "true"


def test_step_filter_pattern_in_stream(recorder: Recorder, server: TestServer) -> None:
    """A text pattern is applied to every SSE chunk, boundaries kept per chunk."""

    def agent() -> None:
        with (
            agenttrace.step("s", filter=re.compile(r'"id": "[0-9a-f]+"')),
            httpx.stream("GET", server.url("/sse?n=3")) as r,
        ):
            r.read()

    _, trace = recorder.run(agent)
    response = trace.exchanges[0].response
    assert response is not None
    assert b'"id": "' not in response.body.data
    assert response.body.data.count(b"[FILTERED]") == 3
    assert sum(response.chunk_sizes) == len(response.body.data)


def test_truncation_marker(tmp_path: object, server: TestServer) -> None:
    """A body over max_body_bytes is cut, marked truncated, with full size and digest kept."""
    recorder = Recorder(tmp_path)  # type: ignore[arg-type]
    agenttrace.init(trace_dir=str(tmp_path), quiet=True, max_body_bytes=1000)
    try:

        def agent() -> bytes:
            return httpx.get(server.url("/chunks?n=5&size=600")).content

        content, trace = recorder.run(agent)
    finally:
        agenttrace.init(trace_dir=str(tmp_path), quiet=True, max_body_bytes=10 * 1024 * 1024)
    import hashlib

    body = trace.exchanges[0].response.body  # type: ignore[union-attr]
    assert body.truncated
    assert body.size == len(content) == 3000
    assert len(body.data) == 1000
    assert body.sha256 == hashlib.sha256(content).hexdigest()
    assert trace.events(trace.call_spans[0])["agenttrace.response"]["agenttrace.body.truncated"] is True


def test_redactor_rules() -> None:
    """Default names and words are secret, ordinary headers are not."""
    redactor = Redactor()
    for name in (
        "Authorization",
        "Proxy-Authorization",
        "Cookie",
        "Set-Cookie",
        "x-api-key",
        "api-key",
        "X-Auth-User",
        "my-secret",
        "db-password",
    ):
        assert redactor.is_secret(name), name
    for name in ("Content-Type", "Accept", "User-Agent", "Host", "Content-Length"):
        assert not redactor.is_secret(name), name


def test_filter_gzip_body() -> None:
    """A gzip body is decoded, filtered and encoded again; a body in an unknown encoding is dropped."""
    import gzip

    from agenttrace._capture.filter import compile_filter

    rules = compile_filter("token")
    out, changed = filter_body(gzip.compress(b'{"token": "t1", "a": 1}'), [("Content-Encoding", "gzip")], rules)
    assert changed
    assert json.loads(gzip.decompress(out)) == {"token": "[FILTERED]", "a": 1}
    out, changed = filter_body(b"\x00\x01", [("Content-Encoding", "br")], rules)
    assert (out, changed) == (b"[FILTERED]", True)


def test_query_shortcut_and_header_json_cache_change_nothing() -> None:
    """filter_url's no-secret shortcut and jsonable_headers' cache give what the long ways give."""
    from urllib.parse import parse_qsl, urlencode

    from agenttrace._capture.filter import EMPTY
    from agenttrace._capture.payload import filter_url, jsonable_headers

    def long_way(url: str) -> str:
        base, sep, query = url.partition("?")
        if sep and query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(Redactor().is_secret(k) for k, _ in pairs):
                query = urlencode([(k, placeholder(v) if Redactor().is_secret(k) else v) for k, v in pairs])
        return base + sep + query

    for url in (
        "http://h/x?i=1&b=2",
        "http://h/x?api_key=abc&i=1",
        "http://h/x?a&&b=",
        "http://h/x?Token=1",
        "http://h/x?q=a+b&access%5Ftoken=zz",
        "http://h/x?",
        "http://h/x?i=1#frag&secret=2",
    ):
        assert filter_url(url, EMPTY) == long_way(url), url
    headers = (("content-type", "application/json"), ("x-é", "ü"))
    expected = json.dumps([list(h) for h in headers], ensure_ascii=False, separators=(",", ":"))
    assert jsonable_headers(headers) == jsonable_headers(headers) == expected
    assert jsonable_headers(list(headers)) == expected


def test_server_address_shortcut_agrees_with_urlsplit() -> None:
    """The call span's server.address/port, looked up by URL prefix, equal what urlsplit gives."""
    import random

    from agenttrace._capture.record import _server, _split_server

    rng = random.Random(3)
    alphabet = "aZ09-._~:/?#[]@!$&()*+,;=% "
    urls = ["http://127.0.0.1:8000/x?y", "https://h", "http://u:p@H:81/x", "http://[::1]:80/", "http://h:99999/"]
    urls += [
        "http" + rng.choice(["", "s"]) + "://" + "".join(rng.choice(alphabet) for _ in range(12)) for _ in range(3000)
    ]
    for url in urls + urls:  # the second pass reads the cache
        assert _server(url) == _split_server(url), url
