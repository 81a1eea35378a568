"""The real openai and anthropic SDKs (over httpx2) against the bundled fake LLM server."""

from __future__ import annotations

import json

import anthropic
import openai

import agenttrace
from agenttrace._demo.llm_server import FakeLLMServer
from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.KIND
from tests.recording import Recorder

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


def test_openai_plain(recorder: Recorder, llm: FakeLLMServer) -> None:
    """A chat completion is recorded whole; the API key never reaches the trace."""

    def agent() -> str:
        with agenttrace.step("think", type="thought"):
            reply = _openai(llm).chat.completions.create(model="demo", messages=[{"role": "user", "content": "hi"}])
        return reply.id

    reply_id, trace = recorder.run(agent)
    (exchange,) = trace.exchanges
    assert exchange.library == "httpx2"
    assert exchange.step_path == ("think",)
    assert exchange.response is not None
    assert json.loads(exchange.response.body.data)["id"] == reply_id
    headers = {k.lower(): v for k, v in exchange.request.headers}
    assert headers["authorization"].startswith("[REDACTED sha256:")
    assert "sk-test-secret" not in json.dumps(trace.call_spans)


def test_openai_stream(recorder: Recorder, llm: FakeLLMServer) -> None:
    """A streamed completion keeps every SSE chunk and its boundary, in one response event."""

    def agent() -> str:
        stream = _openai(llm).chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "stream please"}], stream=True
        )
        return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

    text, trace = recorder.run(agent)
    response = trace.exchanges[0].response
    assert response is not None
    # The SDK stops reading at [DONE] and closes the response before the chunked terminator.
    assert response.stream_end in ("complete", "closed_early")
    assert len(response.chunk_sizes) >= 3
    assert sum(response.chunk_sizes) == len(response.body.data)
    assert response.body.data.endswith(b"data: [DONE]\n\n")
    assert text.startswith("You said: stream please")
    # One request and one response event, whatever the number of chunks (and the run's draws before them).
    payloads = [e["name"] for e in trace.call_spans[0]["events"] if e["name"] != S.EVENT_ENTROPY]
    assert payloads == [S.EVENT_REQUEST, S.EVENT_RESPONSE]


def test_openai_tool_calls(recorder: Recorder, llm: FakeLLMServer) -> None:
    """A tool-calling round trip is two calls with ordinals 0 and 1 in their steps."""

    def agent() -> str:
        client = _openai(llm)
        messages: list[dict[str, object]] = [{"role": "user", "content": "Paris"}]
        with agenttrace.step("plan"):
            first = client.chat.completions.create(model="demo", messages=messages, tools=TOOLS)  # type: ignore[arg-type]
        call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
        messages.append(first.choices[0].message.model_dump(exclude_none=True))
        messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny"})
        with agenttrace.step("answer"):
            second = client.chat.completions.create(model="demo", messages=messages, tools=TOOLS)  # type: ignore[arg-type]
        return second.choices[0].message.content or ""

    answer, trace = recorder.run(agent)
    assert answer.startswith("The tool said: sunny")
    first, second = trace.exchanges
    assert (first.ordinal, first.step_path) == (0, ("plan",))
    assert (second.ordinal, second.step_path) == (1, ("answer",))
    assert json.loads(first.response.body.data)["choices"][0]["finish_reason"] == "tool_calls"  # type: ignore[union-attr]


def test_anthropic_create(recorder: Recorder, llm: FakeLLMServer) -> None:
    """anthropic messages.create is recorded; its API key header is redacted."""

    def agent() -> str:
        message = _anthropic(llm).messages.create(
            model="demo", max_tokens=64, messages=[{"role": "user", "content": "hello"}]
        )
        return message.id

    message_id, trace = recorder.run(agent)
    (exchange,) = trace.exchanges
    assert json.loads(exchange.response.body.data)["id"] == message_id  # type: ignore[union-attr]
    assert any(v.startswith("[REDACTED sha256:") for _, v in exchange.request.headers)
    assert "sk-ant-secret" not in json.dumps(trace.call_spans)


def test_anthropic_stream(recorder: Recorder, llm: FakeLLMServer) -> None:
    """anthropic messages.stream events are recorded chunk by chunk."""

    def agent() -> tuple[str, str]:
        with _anthropic(llm).messages.stream(
            model="demo", max_tokens=64, messages=[{"role": "user", "content": "stream"}]
        ) as stream:
            text = "".join(stream.text_stream)
            return text, stream.get_final_message().id

    (text, message_id), trace = recorder.run(agent)
    response = trace.exchanges[0].response
    assert response is not None
    assert text.startswith("You said: stream")
    assert message_id.encode() in response.body.data
    assert b"event: message_stop" in response.body.data
    assert len(response.chunk_sizes) >= 5
    assert response.stream_end == "complete"
