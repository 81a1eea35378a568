"""GenAI semantic-convention attributes on LLM call spans, from the real openai and anthropic SDKs
against the bundled fake LLM server (docs/span-model.md#llm-calls)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

import agenttrace
from agenttrace._demo.llm_server import FakeLLMServer
from agenttrace._format.genai import describe
from tests.recording import Recorder, Trace, read_trace, replaying

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


def _openai(llm: FakeLLMServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=llm.openai_base_url, api_key="sk-test-secret", max_retries=0)


def _anthropic(llm: FakeLLMServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=llm.base_url, api_key="sk-ant-secret", max_retries=0)


def _only_call(trace: Trace) -> tuple[str, dict[str, Any]]:
    (span,) = trace.call_spans
    return span["name"], trace.attrs(span)


def test_openai_chat_plain(recorder: Recorder, llm: FakeLLMServer) -> None:
    """A chat completion's span is `chat <model>`, with the request's parameters and the server's usage."""

    def agent() -> Any:
        return _openai(llm).chat.completions.create(
            model="gpt-demo",
            messages=[{"role": "user", "content": "how many tokens is this?"}],
            temperature=0.3,
            top_p=0.9,
            max_tokens=64,
            seed=7,
            stop=["END"],
        )

    reply, trace = recorder.run(agent)
    name, attrs = _only_call(trace)
    assert name == "chat gpt-demo"
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["openai.api.type"] == "chat_completions"
    assert attrs["gen_ai.request.model"] == "gpt-demo"
    assert attrs["gen_ai.request.temperature"] == 0.3
    assert attrs["gen_ai.request.top_p"] == 0.9
    assert attrs["gen_ai.request.max_tokens"] == 64
    assert attrs["gen_ai.request.seed"] == 7
    assert attrs["gen_ai.request.stop_sequences"] == ["END"]
    assert "gen_ai.request.stream" not in attrs
    assert attrs["gen_ai.response.model"] == reply.model
    assert attrs["gen_ai.response.id"] == reply.id
    assert attrs["gen_ai.response.finish_reasons"] == ["stop"]
    assert attrs["gen_ai.usage.input_tokens"] == reply.usage.prompt_tokens
    assert attrs["gen_ai.usage.output_tokens"] == reply.usage.completion_tokens
    assert reply.usage.prompt_tokens != reply.usage.completion_tokens  # a swap would show
    # The HTTP attributes stay: an OpenAI-compatible server at another base URL is still "openai".
    assert attrs["server.address"] == "127.0.0.1"
    assert attrs["http.request.method"] == "POST"
    # Not asked for: no OpenInference names.
    assert not [k for k in attrs if k.startswith(("llm.", "openinference.", "input.", "output."))]


def test_openai_chat_stream_usage_chunk(recorder: Recorder, llm: FakeLLMServer) -> None:
    """A stream with include_usage: the tokens come from its last chunk, the id and model from its first."""

    def agent() -> tuple[Any, str, str]:
        stream = _openai(llm).chat.completions.create(
            model="gpt-demo",
            messages=[{"role": "user", "content": "stream a longer answer please, with usage"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        return chunks[-1].usage, chunks[0].id, chunks[0].model

    (usage, ident, model), trace = recorder.run(agent)
    name, attrs = _only_call(trace)
    assert name == "chat gpt-demo"
    assert attrs["gen_ai.request.stream"] is True
    assert attrs["gen_ai.response.id"] == ident
    assert attrs["gen_ai.response.model"] == model
    assert attrs["gen_ai.response.finish_reasons"] == ["stop"]
    assert attrs["gen_ai.usage.input_tokens"] == usage.prompt_tokens
    assert attrs["gen_ai.usage.output_tokens"] == usage.completion_tokens


def test_openai_stream_without_usage(recorder: Recorder, llm: FakeLLMServer) -> None:
    """A stream that reports no usage gets no token attributes (never a guess), the rest as usual."""

    def agent() -> None:
        for _ in _openai(llm).chat.completions.create(
            model="gpt-demo", messages=[{"role": "user", "content": "no usage"}], stream=True
        ):
            pass

    _, trace = recorder.run(agent)
    _, attrs = _only_call(trace)
    assert attrs["gen_ai.response.finish_reasons"] == ["stop"]
    assert "gen_ai.usage.input_tokens" not in attrs
    assert "gen_ai.usage.output_tokens" not in attrs


def test_openai_tool_call(recorder: Recorder, llm: FakeLLMServer) -> None:
    """A tool-calling answer's finish reason is tool_calls, streamed or not."""

    def agent() -> Any:
        client = _openai(llm)
        ask = [{"role": "user", "content": "weather in Paris?"}]
        first = client.chat.completions.create(model="gpt-demo", messages=ask, tools=TOOLS)  # type: ignore[arg-type]
        for _ in client.chat.completions.create(
            model="gpt-demo",
            messages=ask,  # type: ignore[arg-type]
            tools=TOOLS,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        ):
            pass
        return first.usage

    usage, trace = recorder.run(agent)
    plain, streamed = (trace.attrs(s) for s in trace.call_spans)
    assert plain["gen_ai.response.finish_reasons"] == ["tool_calls"]
    assert plain["gen_ai.usage.input_tokens"] == usage.prompt_tokens
    assert streamed["gen_ai.response.finish_reasons"] == ["tool_calls"]
    assert streamed["gen_ai.usage.input_tokens"] == usage.prompt_tokens


def test_openai_responses_api(recorder: Recorder, llm: FakeLLMServer) -> None:
    """The Responses API, whole and streamed: operation chat, api type responses, the usage of the final response."""

    def agent() -> tuple[Any, Any]:
        client = _openai(llm)
        whole = client.responses.create(model="gpt-resp", input="say something", max_output_tokens=32, temperature=0)
        final = None
        for event in client.responses.create(model="gpt-resp", input="say something streamed", stream=True):
            if event.type == "response.completed":
                final = event.response
        return whole, final

    (whole, final), trace = recorder.run(agent)
    first, second = (trace.attrs(s) for s in trace.call_spans)
    assert [s["name"] for s in trace.call_spans] == ["chat gpt-resp", "chat gpt-resp"]
    assert first["openai.api.type"] == "responses"
    assert first["gen_ai.request.max_tokens"] == 32
    assert first["gen_ai.request.temperature"] == 0.0
    assert first["gen_ai.response.id"] == whole.id
    assert first["gen_ai.usage.input_tokens"] == whole.usage.input_tokens
    assert first["gen_ai.usage.output_tokens"] == whole.usage.output_tokens
    assert first["gen_ai.response.finish_reasons"] == ["stop"]
    assert second["gen_ai.request.stream"] is True
    assert second["gen_ai.response.id"] == final.id
    assert second["gen_ai.usage.output_tokens"] == final.usage.output_tokens


def test_anthropic_messages(recorder: Recorder, llm: FakeLLMServer) -> None:
    """Anthropic create and stream: provider, stop reasons, usage from message_start and message_delta."""

    def agent() -> tuple[Any, Any]:
        client = _anthropic(llm)
        created = client.messages.create(
            model="claude-demo",
            max_tokens=100,
            extra_body={"temperature": 0.5, "top_k": 5},  # this SDK release no longer takes them as arguments
            tools=[{"name": "lookup", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}],
            messages=[{"role": "user", "content": "look it up"}],
        )
        with client.messages.stream(
            model="claude-demo", max_tokens=100, messages=[{"role": "user", "content": "a streamed answer"}]
        ) as stream:
            "".join(stream.text_stream)
            final = stream.get_final_message()
        return created, final

    (created, final), trace = recorder.run(agent)
    plain, streamed = (trace.attrs(s) for s in trace.call_spans)
    assert [s["name"] for s in trace.call_spans] == ["chat claude-demo", "chat claude-demo"]
    assert plain["gen_ai.provider.name"] == "anthropic"
    assert "openai.api.type" not in plain
    assert plain["gen_ai.request.max_tokens"] == 100
    assert plain["gen_ai.request.temperature"] == 0.5
    assert plain["gen_ai.request.top_k"] == 5.0
    assert plain["gen_ai.response.id"] == created.id
    assert plain["gen_ai.response.finish_reasons"] == ["tool_use"]
    assert plain["gen_ai.usage.input_tokens"] == created.usage.input_tokens
    assert plain["gen_ai.usage.output_tokens"] == created.usage.output_tokens
    assert streamed["gen_ai.request.stream"] is True
    assert streamed["gen_ai.response.id"] == final.id
    assert streamed["gen_ai.response.finish_reasons"] == ["end_turn"]
    assert streamed["gen_ai.usage.input_tokens"] == final.usage.input_tokens
    assert streamed["gen_ai.usage.output_tokens"] == final.usage.output_tokens
    assert final.usage.output_tokens > 1  # message_delta's count, not message_start's placeholder


def test_replayed_call_is_described_from_the_recording(recorder: Recorder, llm: FakeLLMServer) -> None:
    """In a governance replay the served call's span carries the recorded call's GenAI attributes (no request sent)."""

    def agent() -> str:
        return _openai(llm).chat.completions.create(model="gpt-demo", messages=[{"role": "user", "content": "x"}]).id

    ident, recorded = recorder.run(agent)
    before = llm.calls
    with replaying(recorder.folder):
        assert agenttrace.run("test-agent")(agent)() == ident
    assert llm.calls == before
    (replay_file,) = (recorder.folder / "replay").glob("*.jsonl")
    replayed = read_trace(replay_file)
    (span,) = replayed.call_spans
    attrs = replayed.attrs(span)
    assert attrs["agenttrace.call.replayed"] is True
    assert span["name"] == "chat gpt-demo"
    expected = _only_call(recorded)[1]
    for key in ("gen_ai.response.id", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"):
        assert attrs[key] == expected[key]


def test_filtered_usage_is_not_described(recorder: Recorder, llm: FakeLLMServer) -> None:
    """Attributes come from the payload as recorded: a step filter that removes `usage` removes the token counts too."""

    def agent() -> Any:
        with agenttrace.step("private", filter=["usage"]):
            return _openai(llm).chat.completions.create(model="gpt-demo", messages=[{"role": "user", "content": "x"}])

    reply, trace = recorder.run(agent)
    assert reply.usage is not None  # the agent got it
    _, attrs = _only_call(trace)
    assert attrs["gen_ai.request.model"] == "gpt-demo"
    assert "gen_ai.usage.input_tokens" not in attrs


def test_cut_body_is_described_as_recorded(recorder: Recorder, llm: FakeLLMServer, tmp_path: Path) -> None:
    """Bodies cut at max_body_bytes are described as the trace keeps them (cut: no model, no usage); the call works."""
    agenttrace.init(trace_dir=str(tmp_path), quiet=True, local_files=True, max_body_bytes=40)

    def agent() -> str:
        reply = _openai(llm).chat.completions.create(model="gpt-demo", messages=[{"role": "user", "content": "hi"}])
        return reply.choices[0].message.content or ""

    text, trace = recorder.run(agent)
    assert text.startswith("You said: hi")
    name, attrs = _only_call(trace)
    assert name == "chat"
    assert attrs["gen_ai.operation.name"] == "chat"
    assert "gen_ai.request.model" not in attrs
    assert "gen_ai.usage.input_tokens" not in attrs


def test_openinference_attributes(recorder: Recorder, llm: FakeLLMServer, tmp_path: Path) -> None:
    """With openinference on, LLM spans also carry OpenInference's kind, model, token counts, input and output."""
    agenttrace.init(trace_dir=str(tmp_path), quiet=True, local_files=True, openinference=True)

    def agent() -> tuple[Any, str]:
        client = _openai(llm)
        reply = client.chat.completions.create(
            model="gpt-demo", messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
        )
        streamed = "".join(
            chunk.choices[0].delta.content or ""
            for chunk in client.chat.completions.create(
                model="gpt-demo",
                messages=[{"role": "user", "content": "weather?"}],
                tools=TOOLS,  # type: ignore[arg-type]
                stream=True,
                stream_options={"include_usage": True},
            )
            if chunk.choices
        )
        return reply, streamed

    (reply, _), trace = recorder.run(agent)
    plain, streamed = (trace.attrs(s) for s in trace.call_spans)
    assert plain["openinference.span.kind"] == "LLM"
    assert plain["llm.model_name"] == reply.model
    assert plain["llm.provider"] == "openai"
    assert plain["llm.token_count.prompt"] == reply.usage.prompt_tokens
    assert plain["llm.token_count.completion"] == reply.usage.completion_tokens
    assert plain["llm.token_count.total"] == reply.usage.total_tokens
    assert json.loads(plain["input.value"])["messages"][1]["content"] == "hi"
    assert plain["input.mime_type"] == "application/json"
    assert json.loads(plain["output.value"])["id"] == reply.id
    assert plain["llm.input_messages.0.message.role"] == "system"
    assert plain["llm.input_messages.1.message.content"] == "hi"
    assert plain["llm.output_messages.0.message.content"] == reply.choices[0].message.content
    # A streamed tool call: its name and the arguments put together from the chunks.
    assert streamed["llm.output_messages.0.message.tool_calls.0.tool_call.function.name"] == "get_weather"
    arguments = json.loads(streamed["llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments"])
    assert arguments == {"city": "weather?"}
    assert streamed["gen_ai.usage.input_tokens"] == streamed["llm.token_count.prompt"]


# --- describe() on payloads the SDKs do not send here ------------------------------------------


def _chat_body(**fields: Any) -> bytes:
    return json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], **fields}).encode()


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"id": "chatcmpl-1", "usage": {"prompt_tokens": 3', b"\xff\xfe", b"[1, 2]", b'{"usage": "many"}'],
)
def test_describe_survives_bodies_that_do_not_parse(body: bytes) -> None:
    """A response that is not the JSON expected gives the request's attributes and no usage."""
    call = describe("POST", "https://api.openai.com/v1/chat/completions", (), _chat_body(), response_body=body)
    assert call is not None
    assert call.request_model == "m"
    assert call.input_tokens is None


def test_describe_gzip_and_providers() -> None:
    """A gzip body is decoded first; Azure OpenAI and Gemini get their provider names; other calls are none."""
    answer = {"id": "c1", "model": "m-1", "choices": [{"finish_reason": "length"}], "usage": {"prompt_tokens": 11}}
    call = describe(
        "POST",
        "https://me.openai.azure.com/openai/deployments/d/chat/completions?api-version=1",
        (),
        _chat_body(),
        response_headers=[("Content-Encoding", "gzip"), ("Content-Type", "application/json")],
        response_body=gzip.compress(json.dumps(answer).encode()),
    )
    assert call is not None
    assert (call.provider, call.response_model, call.finish_reasons, call.input_tokens) == (
        "azure.ai.openai",
        "m-1",
        ["length"],
        11,
    )
    gemini = describe(
        "POST",
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent",
        (),
        b'{"contents": [], "generationConfig": {"temperature": 0.1, "maxOutputTokens": 9}}',
        response_body=b'{"candidates": [{"finishReason": "STOP"}], "usageMetadata": '
        b'{"promptTokenCount": 4, "candidatesTokenCount": 2}, "modelVersion": "gemini-2.0-flash-001"}',
    )
    assert gemini is not None
    assert (gemini.operation, gemini.provider, gemini.request_model, gemini.response_model) == (
        "generate_content",
        "gcp.gemini",
        "gemini-2.0-flash",
        "gemini-2.0-flash-001",
    )
    assert (gemini.input_tokens, gemini.output_tokens, gemini.finish_reasons) == (4, 2, ["stop"])
    assert gemini.parameters == {"temperature": 0.1, "max_tokens": 9}
    assert describe("POST", "https://example.com/api/survey/responses", (), b'{"answer": 1}') is None
    assert describe("GET", "https://api.openai.com/v1/chat/completions", (), b"") is None


def test_describe_anthropic_cache_tokens() -> None:
    """Anthropic's input_tokens leave out cached tokens: the conventions' input count adds them back."""
    call = describe(
        "POST",
        "https://api.anthropic.com/v1/messages",
        (),
        b'{"model": "claude", "max_tokens": 5, "messages": []}',
        response_body=b'{"id": "msg_1", "stop_reason": "end_turn", "usage": {"input_tokens": 10, '
        b'"cache_read_input_tokens": 100, "cache_creation_input_tokens": 20, "output_tokens": 3}}',
    )
    assert call is not None
    assert (call.input_tokens, call.cache_read_tokens, call.cache_creation_tokens, call.output_tokens) == (
        130,
        100,
        20,
        3,
    )


def test_describe_long_stream_reads_its_ends() -> None:
    """A 500-event stream: id and model from its first event, finish reason and usage from its last ones."""
    from agenttrace._demo.llm_server import openai_stream

    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "data: [DONE] " + "x" * 4000}],  # event-like text in the content
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    events = b"".join(openai_stream(body))
    assert events.count(b"data:") > 500
    first = json.loads(events.split(b"\n")[0][len(b"data: ") :])
    usage = json.loads(events.split(b"data: ")[-2])["usage"]
    call = describe(
        "POST",
        "http://127.0.0.1:8000/v1/chat/completions",
        (),
        json.dumps(body).encode(),
        response_headers=[("content-type", "text/event-stream")],
        response_body=events,
    )
    assert call is not None
    assert (call.response_id, call.response_model, call.finish_reasons) == (first["id"], "m", ["stop"])
    assert (call.input_tokens, call.output_tokens) == (usage["prompt_tokens"], usage["completion_tokens"])
    whole = describe(
        "POST",
        "http://127.0.0.1:8000/v1/chat/completions",
        (),
        json.dumps(body).encode(),
        response_headers=[("content-type", "text/event-stream")],
        response_body=events,
        content=True,
    )
    assert whole is not None
    assert whole.output_messages[0].content.startswith("You said: data: [DONE] xxx")
    assert (whole.input_tokens, whole.finish_reasons) == (call.input_tokens, call.finish_reasons)


@pytest.mark.parametrize(
    "url",
    [
        "http://h/v1/chat/completions?x=1",
        "https://api.openai.com/v1/responses/",
        "http://h?q=/v1/messages",
        "http://h#/v1/messages",
        "http://h",
        "http://[::1]:80/V1/Messages/#x",
        "http://user@h:1/p/?a=/v1/messages",
        "http://h/p#f?q",
    ],
)
def test_the_url_path_an_llm_call_is_known_by_is_urlsplits(url: str) -> None:
    from urllib.parse import urlsplit

    from agenttrace._format.genai import _url_path

    assert _url_path(url) == urlsplit(url).path.lower().rstrip("/")
