"""The global filter (init(filter=...), AGENTTRACE_FILTER): what no run records, end to end."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agenttrace
from agenttrace._core import errors as _warn
from tests.recording import Recorder, read_trace, replaying
from tests.servers import TestServer


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    """A trace folder; the process is configured back without any filter afterwards."""
    _warn._reset_for_tests()
    yield tmp_path
    agenttrace.init(trace_dir=str(tmp_path), quiet=True, filter=[])


def _echo(server: TestServer, payload: dict[str, Any]) -> dict[str, Any]:
    return dict(requests.post(server.url("/json"), json=payload, timeout=5).json())


def test_variable_filters_every_run_step_and_result(
    folder: Path, server: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AGENTTRACE_FILTER masks call bodies, step arguments, set_result and the run's return value."""
    monkeypatch.setenv("AGENTTRACE_FILTER", "password, user.ssn")
    agenttrace.init(trace_dir=str(folder), quiet=True)

    def agent() -> dict[str, Any]:
        echoed = _echo(server, {"password": "hunter2", "user": {"ssn": "123-45", "name": "al"}})
        with agenttrace.step("lookup", type="tool_call", password="pw-in-kwargs"):
            agenttrace.set_result({"password": "pw-in-result", "ok": True})
        return {"echoed": echoed, "password": "pw-in-return"}

    result, trace = Recorder(folder).run(agent)
    assert "hunter2" in str(result["echoed"]["body"])  # the agent saw the real data
    assert result["password"] == "pw-in-return"
    sent = json.loads(trace.exchanges[0].request.body)
    assert sent == {"password": "[FILTERED]", "user": {"ssn": "[FILTERED]", "name": "al"}}
    assert trace.exchanges[0].extra.get("request_body_filtered") == "true"
    # The echo server sends the request body back as JSON held in a string (as an LLM's tool
    # call holds its "arguments"): its fields are filtered too. A path counts from the root of
    # the body, so "user.ssn" does not reach the echo's "body.user.ssn"; the name rule does.
    echoed_text = json.loads(trace.exchanges[0].response.body.data)["body"]  # type: ignore[union-attr]
    assert json.loads(echoed_text) == {"password": "[FILTERED]", "user": {"ssn": "123-45", "name": "al"}}
    run_span = next(s for s in trace.spans if trace.attrs(s).get("agenttrace.kind") == "run")
    assert json.loads(trace.attrs(run_span)["agenttrace.run.result"])["password"] == "[FILTERED]"
    step_span = next(s for s in trace.spans if trace.attrs(s).get("agenttrace.kind") == "step")
    assert trace.attrs(step_span)["agenttrace.step.kwargs.password"] == "[FILTERED]"
    assert json.loads(trace.attrs(step_span)["agenttrace.step.result"]) == {"password": "[FILTERED]", "ok": True}


def test_patterns_apply_to_text_bodies_and_urls(folder: Path, server: TestServer) -> None:
    """A compiled pattern and a 're:' text pattern replace matches in a text body and in the URL."""
    agenttrace.init(trace_dir=str(folder), quiet=True, filter=[re.compile(r"sk-[A-Za-z0-9]{8,}"), "re:tok_[0-9]+"])

    def agent() -> str:
        response = httpx.post(
            server.url("/json?q=sk-ABCDEFGH12345678"),
            content=b"token tok_424242 and key sk-ZYXWVUTS98765432",
            headers={"Content-Type": "text/plain"},
        )
        return response.text

    text, trace = Recorder(folder).run(agent)
    assert "tok_424242" in text  # the server echoed the real body to the agent
    exchange = trace.exchanges[0]
    assert exchange.request.body == b"token [FILTERED] and key [FILTERED]"
    assert "sk-ABCDEFGH12345678" not in exchange.request.url
    assert "q=%5BFILTERED%5D" in exchange.request.url or "q=[FILTERED]" in exchange.request.url
    served = exchange.response.body.data  # type: ignore[union-attr]  # the echo: patterns reach into its text
    assert b"tok_424242" not in served
    assert b"sk-ZYXWVUTS98765432" not in served
    assert b"sk-ABCDEFGH12345678" not in served


def test_step_rules_add_to_the_global_ones(folder: Path, server: TestServer) -> None:
    """Inside a step both the global and the step's rules apply; outside it, only the global ones."""
    agenttrace.init(trace_dir=str(folder), quiet=True, filter="password")

    def agent() -> None:
        _echo(server, {"password": "p1", "email": "a@example.com"})
        with agenttrace.step("signup", filter="email"):
            _echo(server, {"password": "p2", "email": "b@example.com"})

    _, trace = Recorder(folder).run(agent)
    outside, inside = (json.loads(e.request.body) for e in trace.exchanges)
    assert outside == {"password": "[FILTERED]", "email": "a@example.com"}
    assert inside == {"password": "[FILTERED]", "email": "[FILTERED]"}


def test_argument_beats_variable_and_an_empty_list_turns_it_off(
    folder: Path, server: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """init(filter=[]) overrides AGENTTRACE_FILTER: nothing is filtered."""
    monkeypatch.setenv("AGENTTRACE_FILTER", "ssn")
    agenttrace.init(trace_dir=str(folder), quiet=True, filter=[])

    def agent() -> None:
        _echo(server, {"ssn": "visible"})

    _, trace = Recorder(folder).run(agent)
    assert json.loads(trace.exchanges[0].request.body) == {"ssn": "visible"}


def test_a_call_outside_any_run_is_filtered(folder: Path, server: TestServer) -> None:
    """A thread started without the run's context records its call under the global filter."""
    agenttrace.init(trace_dir=str(folder), quiet=True, filter="password")
    done = threading.Event()

    def outside() -> None:
        try:
            _echo(server, {"password": "from-a-bare-thread"})
        finally:
            done.set()

    @agenttrace.run("with-a-bare-thread")
    def agent() -> None:
        # threading.Thread does not carry contextvars: the call has no run or step around it.
        thread = threading.Thread(target=outside)
        thread.start()
        assert done.wait(10)
        thread.join()

    # Outside a run a call has no trace file: read it from the provider, as any exporter would.
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        agent()
        spans = exporter.get_finished_spans()
    finally:
        exporter.shutdown()  # a processor cannot be removed: a stopped exporter keeps nothing
    bodies = [
        event.attributes["agenttrace.body"]
        for span in spans
        if span.attributes is not None and span.attributes.get("agenttrace.kind") == "call"
        for event in span.events
        if event.name == "agenttrace.request" and event.attributes is not None
    ]
    assert [json.loads(body) for body in bodies] == [{"password": "[FILTERED]"}]


def test_replay_with_the_same_filter_serves_the_filtered_recording(folder: Path, server: TestServer) -> None:
    """A governance replay under the recording's filter matches the calls and serves [FILTERED] fields."""
    agenttrace.init(trace_dir=str(folder), quiet=True, filter=["password", "method"])

    def agent() -> dict[str, Any]:
        return _echo(server, {"password": "hunter2", "q": "refund"})

    recorded, _ = Recorder(folder).run(agent)
    with replaying(folder, filter=["password", "method"]):
        replayed = agenttrace.run("test-agent")(agent)()
    assert replayed["id"] == recorded["id"]  # served from the recording, not the live server
    assert recorded["method"] == "POST"  # what the agent saw live
    assert replayed["method"] == "[FILTERED]"  # what the recording kept


def test_replay_without_the_filter_misses_a_filtered_call(folder: Path, server: TestServer) -> None:
    """The recording holds [FILTERED] where the live request has the value: governance names the miss."""
    agenttrace.init(trace_dir=str(folder), quiet=True, filter="password")

    def agent() -> dict[str, Any]:
        return _echo(server, {"password": "hunter2", "q": "refund"})

    Recorder(folder).run(agent)
    with replaying(folder, filter=[]), pytest.raises(agenttrace.ReplayMismatchError) as caught:
        agenttrace.run("test-agent")(agent)()
    assert "[FILTERED]" in str(caught.value)


@pytest.mark.parametrize(
    ("where", "value", "expected"),
    [
        ("env", "re:*a", r"AGENTTRACE_FILTER: filter entry 're:\*a' is not a valid regular expression"),
        ("env", "re:sk-{, password", r"AGENTTRACE_FILTER\) has an unclosed bracket.*JSON array"),
        ("env", '["password", 3]', r"AGENTTRACE_FILTER\) is not a JSON array of strings"),
        ("arg", "password,token", r"init\(filter=\.\.\.\): filter entry 'password,token' holds a comma"),
        ("arg", 42, r"init\(filter=\.\.\.\): filter 42 is not valid"),
    ],
)
def test_bad_filter_names_its_source(
    where: str, value: Any, expected: str, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad rule stops init() with a ConfigurationError naming the variable or the argument."""
    if where == "env":
        monkeypatch.setenv("AGENTTRACE_FILTER", value)
        with pytest.raises(agenttrace.ConfigurationError, match=expected):
            agenttrace.init(trace_dir=str(folder), quiet=True)
    else:
        with pytest.raises(agenttrace.ConfigurationError, match=expected):
            agenttrace.init(trace_dir=str(folder), quiet=True, filter=value)


def test_step_refuses_a_comma_separated_string() -> None:
    """step(filter="a,b") would filter a field named "a,b": it is refused with the list to give."""
    with pytest.raises(agenttrace.ConfigurationError, match=r"\['password', 'token'\]"):
        agenttrace.step("s", filter="password,token")


def test_variable_keeps_commas_inside_a_pattern(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In the comma form, a comma inside {}, [] or () belongs to the pattern, not between two rules."""
    monkeypatch.setenv("AGENTTRACE_FILTER", r"re:sk-[A-Za-z0-9]{8,}, password, re:(a|b){2,3}, re:[(,]x, token")
    agenttrace.init(trace_dir=str(folder), quiet=True)
    rules = agenttrace._core.runtime.runtime.current_settings().filter
    assert [p.pattern for p in rules.patterns] == ["sk-[A-Za-z0-9]{8,}", "(a|b){2,3}", "[(,]x"]
    assert rules.names == frozenset({"password", "token"})
    assert rules.text("key sk-ABCDEFGH1234") == "key [FILTERED]"


def test_empty_pattern_is_refused(folder: Path) -> None:
    """'re:' alone would match between every two characters: refused, naming the source."""
    with pytest.raises(agenttrace.ConfigurationError, match=r"init\(filter=\.\.\.\): filter entry 're:' has an empty"):
        agenttrace.init(trace_dir=str(folder), quiet=True, filter=["password", "re:"])


def test_a_run_inside_a_step_keeps_the_steps_rules(folder: Path, server: TestServer) -> None:
    """A nested @run started inside a filtering step records under that step's rules and the global ones."""
    agenttrace.init(trace_dir=str(folder), quiet=True, filter="password")

    @agenttrace.run("inner")
    def inner() -> dict[str, str]:
        _echo(server, {"password": "p", "label": "secret-label"})
        return {"label": "inner-label"}

    def agent() -> None:
        with agenttrace.step("outer-step", filter="label"):
            inner()

    _, trace = Recorder(folder).run(agent)
    assert json.loads(trace.exchanges[0].request.body) == {"password": "[FILTERED]", "label": "[FILTERED]"}
    runs = {
        trace.attrs(s)["agenttrace.run.name"]: trace.attrs(s)
        for s in trace.spans
        if trace.attrs(s).get("agenttrace.kind") == "run"
    }
    assert json.loads(runs["inner"]["agenttrace.run.result"]) == {"label": "[FILTERED]"}


def test_patterns_reach_error_text(folder: Path) -> None:
    """A failed run's exception message, stack trace and status are filtered by patterns."""
    agenttrace.init(trace_dir=str(folder), quiet=True, filter="re:sk-[A-Za-z0-9]{8,}")

    def agent() -> None:
        raise ValueError("Incorrect API key provided: sk-ABCDEFGH12345678")

    with pytest.raises(ValueError, match="sk-ABCDEFGH12345678"):  # the agent's own exception is untouched
        Recorder(folder).run(agent)
    trace = read_trace(next(iter(folder.glob("*.jsonl"))))
    run_span = next(s for s in trace.spans if trace.attrs(s).get("agenttrace.kind") == "run")
    exception = next(e for e in run_span["events"] if e["name"] == "exception")
    attributes = trace.attrs(exception)
    assert attributes["exception.message"] == "Incorrect API key provided: [FILTERED]"
    assert "Incorrect API key provided: [FILTERED]" in attributes["exception.stacktrace"]
    assert run_span["status"]["message"] == "ValueError: Incorrect API key provided: [FILTERED]"
    # This file's source (the run's entry file) holds the key too: the pattern reaches it there.
    source = trace.attrs(run_span)["agenttrace.run.source"]
    assert "def test_patterns_reach_error_text" in source
    assert "sk-ABCDEFGH12345678" not in source


def test_call_error_message_is_filtered(folder: Path, server: TestServer) -> None:
    """A call's recorded error message goes through the patterns too (the replay raises it so)."""
    agenttrace.init(trace_dir=str(folder), quiet=True, filter="re:unreachable-[0-9]+")

    def agent() -> None:
        with pytest.raises(httpx.UnsupportedProtocol):
            httpx.get("ftp://unreachable-4242.invalid/")

    _, trace = Recorder(folder).run(agent)
    error = trace.exchanges[0].error
    assert error is not None
    assert "unreachable-4242" not in error.message


def test_replay_of_a_filtered_body_read_in_part_does_not_look_whole(folder: Path, server: TestServer) -> None:
    """A body the agent closed early is a prefix: its Content-Length is kept, so a full read still fails."""
    agenttrace.init(trace_dir=str(folder), quiet=True, filter="re:tok_[0-9]+")

    def partial() -> bytes:
        response = requests.post(server.url("/json"), data=b"tok_4242 " * 500, stream=True, timeout=5)
        head = response.raw.read(2000)
        response.close()
        return bytes(head)

    Recorder(folder).run(partial)

    def whole() -> bytes:
        return requests.post(server.url("/json"), data=b"tok_4242 " * 500, timeout=5).content

    with replaying(folder, "relaxed", filter="re:tok_[0-9]+"), pytest.raises(requests.exceptions.RequestException):
        agenttrace.run("test-agent")(whole)()


@pytest.mark.parametrize(
    ("library", "encoding"),
    # urllib3 decodes zstd only through compression.zstd (Python 3.14) or backports.zstd, not
    # zstandard: on this Python requests hands the agent zstd bytes as they came, so no pair.
    [("httpx", "gzip"), ("httpx", "br"), ("httpx", "zstd"), ("requests", "gzip"), ("requests", "br")],
)
def test_compressed_bodies_are_filtered_and_replay(
    encoding: str, library: str, folder: Path, server: TestServer
) -> None:
    """gzip, br and zstd bodies are decoded, filtered and encoded again; the replay decodes them."""
    agenttrace.init(trace_dir=str(folder), quiet=True, filter="token")

    def agent() -> dict[str, Any]:
        url = server.url(f"/compressed?encoding={encoding}")
        if library == "httpx":
            return dict(httpx.get(url).json())
        return dict(requests.get(url, timeout=5).json())

    live, trace = Recorder(folder).run(agent)
    assert live["token"] == "tok-secret-1"  # the agent saw the real data
    exchange = trace.exchanges[0]
    assert exchange.response is not None
    assert b"tok-secret-1" not in exchange.response.body.data
    assert exchange.response.body.data != b"[FILTERED]"  # still a body of that encoding, not dropped
    with replaying(folder, filter="token"):
        replayed = agenttrace.run("test-agent")(agent)()
    assert replayed == {"token": "[FILTERED]", "id": live["id"]}


def test_zstd_body_of_several_frames_is_filtered_whole() -> None:
    """A zstd body sent as two frames (clients decode them all) is filtered in its second frame too."""
    import zstandard

    from agenttrace._capture.filter import compile_filter
    from agenttrace._capture.payload import filter_body

    frames = zstandard.ZstdCompressor().compress(b'{"a": 1, ') + zstandard.ZstdCompressor().compress(
        b'"token": "tok-secret-1"}'
    )
    out, changed = filter_body(frames, [("Content-Encoding", "zstd")], compile_filter("token"))
    assert changed
    reader = zstandard.ZstdDecompressor().decompressobj()
    assert json.loads(reader.decompress(out)) == {"a": 1, "token": "[FILTERED]"}


def test_json_in_a_string_keeps_the_patterns(folder: Path) -> None:
    """After a name rule hits JSON held in a string, the patterns still run over the result."""
    agenttrace.init(trace_dir=str(folder), quiet=True, filter=["password", "re:\\d{16}"])

    def agent() -> None:
        with agenttrace.step("pay", args='{"password": "x", "card": 4111111111111111}'):
            pass

    _, trace = Recorder(folder).run(agent)
    step = next(trace.attrs(s) for s in trace.spans if trace.attrs(s)["agenttrace.kind"] == "step")
    # Patterns work on the text (the number was not a string): the result is text, not JSON.
    assert step["agenttrace.step.kwargs.args"] == '{"password": "[FILTERED]", "card": [FILTERED]}'
