"""Which recorded calls are calls to a language model (the ``llm`` kind of replay's live door).

A call is an LLM call when its request goes to one of the model APIs the agent frameworks use
(the OpenAI API and the many servers compatible with it, Anthropic's Messages API, Google's
Gemini, Amazon Bedrock) or, for paths other APIs share (Ollama's ``/api/chat``, Cohere's
``/v1/chat``, ``…/completions``), when its JSON body names a ``model``; whatever the path, a JSON
body with a ``model`` beside ``messages``, ``prompt``, ``input`` or ``contents`` is one too.
Everything else (a tool's API, a vector store, a web page) is a ``tool`` call. The rules are in
docs/replay.md; the check is cheap (a few substring tests, the body parsed only when the path
says nothing).

:func:`describe` reads one recorded LLM exchange (the request and response as recorded: secrets
redacted, filters applied) into an :class:`LLMCall`: operation, provider, model, the request's
sampling parameters, the response's id, model, finish reasons and token usage, for the OpenAI
Chat Completions, Responses, Completions and Embeddings APIs (at OpenAI or any server with the
same routes), Anthropic Messages and Gemini's generateContent, whole or streamed. The call span
gets its OpenTelemetry GenAI attributes from it (:func:`genai_attributes`), ``agenttrace show`` and
the server their model and token columns. A body that does not parse (not JSON, cut at
``max_body_bytes``, filtered) just leaves the fields it would have given unset: never an error.
A stream is not parsed event by event: only its first event and its last few are (where the
usage and finish reasons are), unless the messages' text is asked for (``content=True``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.GEN_AI_OPERATION
from agenttrace._format.exactjson import fast_loads

__all__ = [
    "LLMCall",
    "Message",
    "describe",
    "describe_recorded",
    "genai_attributes",
    "is_llm_call",
    "openinference_attributes",
]

# Path endings only model APIs have (the URL's path, lowercased, without its query).
_LLM_PATH_ENDS = (
    "/chat/completions",  # OpenAI and compatible servers (vLLM, LiteLLM proxy, Together, Groq, ...)
    "/v1/completions",
    "/v1/responses",  # OpenAI Responses API
    "/v1/embeddings",
    "/v1/messages",  # Anthropic
)
# Substrings of model API paths that are not at the end (Gemini's model:method form).
_LLM_PATH_PARTS = (":generatecontent", ":streamgeneratecontent", ":embedcontent")
# Amazon Bedrock: /model/<model id>/invoke, /converse and their streaming forms.
_BEDROCK = re.compile(r"/model/[^/]+/(?:invoke|invoke-with-response-stream|converse|converse-stream)$")
# Endings other APIs use too (Ollama's /api/chat, Cohere's /v1/chat, a chat app's /messages):
# a model call only when the body names a model.
_SHARED_PATH_ENDS = ("/api/chat", "/api/generate", "/v1/chat", "/v2/chat", "/completions", "/responses", "/embeddings")
_PROMPT_FIELDS = ("messages", "prompt", "input", "contents")
_MAX_SNIFF = 1 << 20  # bodies beyond this are not parsed to decide


def is_llm_call(method: str, url: str, headers: Sequence[tuple[str, str]], body: bytes) -> bool:
    """True when the request is a call to a language model (see the module docstring)."""
    if method.upper() != "POST":
        return False
    path = _url_path(url)
    if path.endswith(_LLM_PATH_ENDS) or any(part in path for part in _LLM_PATH_PARTS) or _BEDROCK.search(path):
        return True
    data = _json(body)
    if not isinstance(data, dict) or not isinstance(data.get("model"), str):
        return False
    return path.endswith(_SHARED_PATH_ENDS) or any(field in data for field in _PROMPT_FIELDS)


def _url_path(url: str) -> str:
    """The URL's path, lower-cased, without its query, fragment and last ``/``: what
    ``urlsplit(url).path`` gives, found with three searches (it runs on every recorded POST)."""
    scheme = url.find("://")
    at = scheme + 3 if scheme >= 0 else 0
    # The authority ends at the first "/", "?" or "#": only a "/" there starts a path.
    ends = [i for i in (url.find("/", at), url.find("?", at), url.find("#", at)) if i >= 0]
    if not ends:
        return ""
    start = min(ends)
    if url[start] != "/":
        return ""
    stop = [i for i in (url.find("?", start), url.find("#", start)) if i >= 0]
    return url[start : min(stop) if stop else len(url)].lower().rstrip("/")


def _json(body: bytes) -> object:
    if not body or len(body) > _MAX_SNIFF or b'"model"' not in body:
        return None
    return _loads(body)


# --- what a recorded LLM call said --------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One message of a conversation as OpenInference shows it: role, text, tool calls (name, arguments)."""

    role: str
    content: str = ""
    tool_calls: tuple[tuple[str, str], ...] = ()


@dataclass
class LLMCall:
    """The GenAI view of one recorded LLM exchange (what :func:`describe` could read; None: not said)."""

    operation: str  # gen_ai.operation.name
    provider: str  # gen_ai.provider.name
    api: str  # "openai.chat" | "openai.responses" | "openai.completions" | "openai.embeddings" | "anthropic" | "gemini"
    request_model: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)  # gen_ai.request.<name> -> value
    stream: bool = False
    response_model: str | None = None
    response_id: str | None = None
    finish_reasons: list[str] = field(default_factory=list)
    input_tokens: int | None = None  # cached input tokens included, as the conventions say
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_creation_tokens: int | None = None
    reasoning_tokens: int | None = None
    input_messages: list[Message] = field(default_factory=list)  # with content=True only
    output_messages: list[Message] = field(default_factory=list)  # with content=True only

    @property
    def model(self) -> str | None:
        """The model that answered, else the one asked for."""
        return self.response_model or self.request_model

    @property
    def span_name(self) -> str:
        """``{operation} {model}``, the conventions' span name (``{operation}`` without a model)."""
        return f"{self.operation} {self.request_model}" if self.request_model else self.operation


_GEMINI_MODEL = re.compile(r"/models/([^/:]+):")
_BEDROCK_MODEL = re.compile(r"/model/([^/]+)/")


def _api(url: str) -> tuple[str, str, str, str | None] | None:
    """``(api, operation, provider, model named by the URL)`` of a model API's URL, or None."""
    try:
        parts = urlsplit(url)
        path = parts.path.rstrip("/")
        host = (parts.hostname or "").lower()
    except ValueError:
        return None
    lower = path.lower()
    # OpenAI's routes, at OpenAI or any server speaking its API: the conventions' provider for the
    # OpenAI flavour is "openai" (server.address says which server it was); Azure OpenAI has its own.
    openai = "azure.ai.openai" if host.endswith((".openai.azure.com", ".cognitiveservices.azure.com")) else "openai"
    if lower.endswith("/chat/completions"):
        return "openai.chat", "chat", openai, None
    if lower.endswith("/responses"):
        return "openai.responses", "chat", openai, None
    if lower.endswith("/embeddings"):
        return "openai.embeddings", "embeddings", openai, None
    if lower.endswith("/completions"):
        return "openai.completions", "text_completion", openai, None
    if lower.endswith("/v1/messages"):
        return "anthropic", "chat", "anthropic", None
    if ":generatecontent" in lower or ":streamgeneratecontent" in lower:
        provider = "gcp.vertex_ai" if "aiplatform" in host else "gcp.gemini"
        found = _GEMINI_MODEL.search(path)
        return "gemini", "generate_content", provider, found.group(1) if found else None
    if _BEDROCK.search(lower):
        found = _BEDROCK_MODEL.search(path)
        return "bedrock", "chat", "aws.bedrock", found.group(1) if found else None
    return None


def _loads(data: bytes | str) -> Any:
    fast = fast_loads()
    try:
        return fast(data) if fast is not None else json.loads(data)
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None


def _index(value: Any) -> int:
    return value if type(value) is int else 0


def _number(value: Any) -> int | float | None:
    return value if type(value) in (int, float) else None


def _text(value: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list of parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for part in value:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping):
                text = part.get("text")
                if isinstance(text, str):
                    texts.append(text)
                elif part.get("type") == "tool_result":
                    texts.append(_text(part.get("content")))
        return "\n".join(texts)
    return ""


# The request fields each API's sampling parameters come from, by their gen_ai.request.* name.
_PARAMETERS: dict[str, tuple[tuple[str, str], ...]] = {
    "openai.chat": (
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("max_completion_tokens", "max_tokens"),
        ("max_tokens", "max_tokens"),
        ("frequency_penalty", "frequency_penalty"),
        ("presence_penalty", "presence_penalty"),
        ("seed", "seed"),
        ("n", "choice.count"),
        ("stop", "stop_sequences"),
    ),
    "openai.responses": (("temperature", "temperature"), ("top_p", "top_p"), ("max_output_tokens", "max_tokens")),
    "openai.completions": (
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("max_tokens", "max_tokens"),
        ("frequency_penalty", "frequency_penalty"),
        ("presence_penalty", "presence_penalty"),
        ("seed", "seed"),
        ("n", "choice.count"),
        ("stop", "stop_sequences"),
    ),
    "openai.embeddings": (("encoding_format", "encoding_formats"), ("dimensions", "embedding.dimension")),
    "anthropic": (
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("top_k", "top_k"),
        ("max_tokens", "max_tokens"),
        ("stop_sequences", "stop_sequences"),
    ),
}


def _parameters(api: str, body: Mapping[str, Any], source: Mapping[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    fields = source if source is not None else body
    for key, name in _PARAMETERS.get(api, ()):
        value = fields.get(key)
        if name in out or value is None:
            continue
        if name in ("stop_sequences", "encoding_formats"):
            values = [value] if isinstance(value, str) else value
            if isinstance(values, list) and all(isinstance(v, str) for v in values):
                out[name] = list(values)
        elif name in ("seed", "choice.count", "max_tokens", "embedding.dimension"):
            if _int(value) is not None:
                out[name] = value
        elif _number(value) is not None:
            out[name] = float(value)
    return out


def _request(call: LLMCall, body: Any, content: bool) -> None:
    if not isinstance(body, Mapping):
        return
    model = body.get("model")
    if isinstance(model, str):
        call.request_model = model
    call.stream = body.get("stream") is True
    if call.api == "gemini":
        config = body.get("generationConfig")
        if isinstance(config, Mapping):
            names = (
                ("temperature", "temperature"),
                ("topP", "top_p"),
                ("topK", "top_k"),
                ("maxOutputTokens", "max_tokens"),
                ("seed", "seed"),
                ("candidateCount", "choice.count"),
            )
            for key, name in names:
                if _number(config.get(key)) is not None:
                    call.parameters[name] = (
                        config[key] if name in ("max_tokens", "seed", "choice.count") else float(config[key])
                    )
        return
    call.parameters = _parameters(call.api, body)
    if call.api == "openai.chat":
        fmt = body.get("response_format")
        kind = fmt.get("type") if isinstance(fmt, Mapping) else None
        if kind in ("json_object", "json_schema"):
            call.parameters["output.type"] = "json"  # written as gen_ai.output.type
        elif kind == "text":
            call.parameters["output.type"] = "text"
    if content:
        call.input_messages = _input_messages(call.api, body)


def _input_messages(api: str, body: Mapping[str, Any]) -> list[Message]:
    out: list[Message] = []
    if api == "anthropic" and body.get("system"):
        out.append(Message("system", _text(body.get("system"))))
    if api == "openai.responses":
        if isinstance(body.get("instructions"), str):
            out.append(Message("system", body["instructions"]))
        given = body.get("input")
        if isinstance(given, str):
            return [*out, Message("user", given)]
        items: list[Any] = given if isinstance(given, list) else []
    elif api == "openai.completions":
        prompt = body.get("prompt")
        return [Message("user", prompt if isinstance(prompt, str) else _text(prompt))]
    else:
        messages = body.get("messages")
        items = messages if isinstance(messages, list) else []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        if item.get("type") == "function_call_output":  # a Responses API tool result
            out.append(Message("tool", str(item.get("output", ""))))
            continue
        calls = []
        for tool in item.get("tool_calls") or ():
            fn = tool.get("function") if isinstance(tool, Mapping) else None
            if isinstance(fn, Mapping):
                calls.append((str(fn.get("name", "")), str(fn.get("arguments", ""))))
        message_content = item.get("content")
        if isinstance(message_content, list):
            for block in message_content:
                if isinstance(block, Mapping) and block.get("type") == "tool_use":
                    calls.append((str(block.get("name", "")), json.dumps(block.get("input", {}))))
        out.append(Message(str(item.get("role", "")), _text(message_content), tuple(calls)))
    return out


def _usage(call: LLMCall, usage: Any) -> None:
    """Token counts from a usage object of any of the APIs (later objects override earlier ones)."""
    if not isinstance(usage, Mapping):
        return
    if call.api == "anthropic":
        base = _int(usage.get("input_tokens"))
        read = _int(usage.get("cache_read_input_tokens"))
        made = _int(usage.get("cache_creation_input_tokens"))
        if base is not None:
            # Anthropic's input_tokens leave the cache's out; the conventions' count includes them.
            call.input_tokens = base + (read or 0) + (made or 0)
        if read is not None:
            call.cache_read_tokens = read
        if made is not None:
            call.cache_creation_tokens = made
        out = _int(usage.get("output_tokens"))
        if out is not None:
            call.output_tokens = out
        return
    if call.api == "gemini":
        prompt, candidates = _int(usage.get("promptTokenCount")), _int(usage.get("candidatesTokenCount"))
        thoughts = _int(usage.get("thoughtsTokenCount"))
        if prompt is not None:
            call.input_tokens = prompt
        if candidates is not None or thoughts is not None:
            call.output_tokens = (candidates or 0) + (thoughts or 0)
        if thoughts is not None:
            call.reasoning_tokens = thoughts
        if _int(usage.get("cachedContentTokenCount")) is not None:
            call.cache_read_tokens = usage["cachedContentTokenCount"]
        return
    # OpenAI: prompt_tokens/completion_tokens (Chat, Completions, Embeddings), input_tokens/output_tokens (Responses).
    given = _int(usage.get("prompt_tokens", usage.get("input_tokens")))
    if given is not None:
        call.input_tokens = given
    made_out = _int(usage.get("completion_tokens", usage.get("output_tokens")))
    if made_out is not None:
        call.output_tokens = made_out
    elif call.api == "openai.embeddings" and given is not None:
        call.output_tokens = 0
    details = usage.get("prompt_tokens_details", usage.get("input_tokens_details"))
    if isinstance(details, Mapping) and _int(details.get("cached_tokens")) is not None:
        call.cache_read_tokens = details["cached_tokens"]
    details = usage.get("completion_tokens_details", usage.get("output_tokens_details"))
    if isinstance(details, Mapping) and _int(details.get("reasoning_tokens")) is not None:
        call.reasoning_tokens = details["reasoning_tokens"]


def _ident(call: LLMCall, data: Mapping[str, Any]) -> None:
    if isinstance(data.get("id"), str):
        call.response_id = data["id"]
    elif isinstance(data.get("responseId"), str):
        call.response_id = data["responseId"]
    model = data.get("model", data.get("modelVersion"))
    if isinstance(model, str):
        call.response_model = model


def _openai_chat(call: LLMCall, data: Mapping[str, Any], content: bool) -> None:
    _ident(call, data)
    reasons: list[str] = []
    for choice in data.get("choices") or ():
        if not isinstance(choice, Mapping):
            continue
        if isinstance(choice.get("finish_reason"), str):
            reasons.append(choice["finish_reason"])
        if content:
            message = choice.get("message")
            if isinstance(message, Mapping):
                calls = tuple(
                    (str(t["function"].get("name", "")), str(t["function"].get("arguments", "")))
                    for t in message.get("tool_calls") or ()
                    if isinstance(t, Mapping) and isinstance(t.get("function"), Mapping)
                )
                call.output_messages.append(
                    Message(str(message.get("role", "assistant")), _text(message.get("content")), calls)
                )
            elif isinstance(choice.get("text"), str):  # the Completions API
                call.output_messages.append(Message("assistant", choice["text"]))
    if reasons:
        call.finish_reasons = reasons
    _usage(call, data.get("usage"))


def _responses(call: LLMCall, data: Mapping[str, Any], content: bool) -> None:
    _ident(call, data)
    status = data.get("status")
    if status == "completed":
        call.finish_reasons = ["stop"]
    elif status == "incomplete":
        details = data.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, Mapping) else None
        call.finish_reasons = [reason if isinstance(reason, str) else "incomplete"]
    elif isinstance(status, str) and status not in ("in_progress", "queued"):
        call.finish_reasons = [status]
    if call.finish_reasons == ["stop"] and any(
        isinstance(item, Mapping) and item.get("type") == "function_call" for item in data.get("output") or ()
    ):
        call.finish_reasons = ["tool_calls"]
    _usage(call, data.get("usage"))
    if content:
        text: list[str] = []
        calls: list[tuple[str, str]] = []
        for item in data.get("output") or ():
            if not isinstance(item, Mapping):
                continue
            if item.get("type") == "message":
                text.append(_text(item.get("content")))
            elif item.get("type") == "function_call":
                calls.append((str(item.get("name", "")), str(item.get("arguments", ""))))
        if text or calls:
            call.output_messages = [Message("assistant", "".join(text), tuple(calls))]


def _anthropic(call: LLMCall, data: Mapping[str, Any], content: bool) -> None:
    _ident(call, data)
    if isinstance(data.get("stop_reason"), str):
        call.finish_reasons = [data["stop_reason"]]
    _usage(call, data.get("usage"))
    if content:
        given = data.get("content")
        blocks: list[Any] = given if isinstance(given, list) else []
        calls = tuple(
            (str(b.get("name", "")), json.dumps(b.get("input", {})))
            for b in blocks
            if isinstance(b, Mapping) and b.get("type") == "tool_use"
        )
        call.output_messages = [Message(str(data.get("role", "assistant")), _text(blocks), calls)]


def _gemini(call: LLMCall, data: Mapping[str, Any], content: bool) -> None:
    _ident(call, data)
    reasons = [
        str(c["finishReason"]).lower()
        for c in data.get("candidates") or ()
        if isinstance(c, Mapping) and isinstance(c.get("finishReason"), str)
    ]
    if reasons:
        call.finish_reasons = reasons
    _usage(call, data.get("usageMetadata"))
    if content:
        for candidate in data.get("candidates") or ():
            got = candidate.get("content") if isinstance(candidate, Mapping) else None
            if isinstance(got, Mapping):
                call.output_messages.append(Message(str(got.get("role", "model")), _text(got.get("parts"))))


_WHOLE: dict[str, Callable[[LLMCall, Mapping[str, Any], bool], None]] = {
    "openai.chat": _openai_chat,
    "openai.completions": _openai_chat,
    "openai.embeddings": _openai_chat,
    "openai.responses": _responses,
    "anthropic": _anthropic,
    "gemini": _gemini,
}

# When only the figures are wanted, a stream's first event (id, model) is parsed, and its last
# events, walking back while they carry usage or a finish reason (these patterns in the raw event),
# at least _TAIL_MIN and at most _TAIL_MAX of them: every API puts its usage and finish reasons at
# the end (OpenAI's usage chunk after the finish chunk, Anthropic's message_delta, the Responses
# API's response.completed, Gemini's last chunk), so a long stream costs what a short one does.
_WORTH = {
    "openai.chat": re.compile(rb'"usage"\s*:\s*\{|"finish_reason"\s*:\s*"'),
    "openai.completions": re.compile(rb'"usage"\s*:\s*\{|"finish_reason"\s*:\s*"'),
    "openai.responses": re.compile(rb'"response\.(?:completed|incomplete|failed)"'),
    "anthropic": re.compile(rb'"message_delta"'),
    "gemini": re.compile(rb'"usageMetadata"|"finishReason"'),
}


_TAIL_MIN = 2
_TAIL_MAX = 16


def _sse_events(body: bytes) -> Iterable[bytes]:
    for line in body.split(b"\n"):
        if line.startswith(b"data:"):
            data = line[5:].strip()
            if data and data != b"[DONE]":
                yield data


def _sse_events_backwards(body: bytes) -> Iterator[bytes]:
    """The stream's ``data:`` payloads from the last one back, without splitting the whole body."""
    end = len(body)
    while end > 0:
        start = body.rfind(b"data:", 0, end)
        if start < 0:
            return
        if start and body[start - 1] not in b"\r\n":  # "data:" inside an event's text
            end = start
            continue
        stop = body.find(b"\n", start, end)
        data = body[start + 5 : end if stop < 0 else stop].strip()
        end = start
        if data and data != b"[DONE]":
            yield data


def _figures_events(body: bytes, worth: re.Pattern[bytes] | None) -> list[bytes]:
    """The events :func:`_stream` parses for the figures only: the first, then the tail, in stream order."""
    tail: list[bytes] = []
    for raw in _sse_events_backwards(body):
        if len(tail) >= _TAIL_MAX or (len(tail) >= _TAIL_MIN and (worth is None or not worth.search(raw))):
            break
        tail.append(raw)
    first = _first_event(body)
    if first is not None and (not tail or first != tail[-1]):  # a short stream's first event is in the tail
        tail.append(first)
    tail.reverse()
    return tail


def _first_event(body: bytes) -> bytes | None:
    start = 0
    while (start := body.find(b"data:", start)) >= 0:
        if not start or body[start - 1] in b"\r\n":
            stop = body.find(b"\n", start)
            data = body[start + 5 : len(body) if stop < 0 else stop].strip()
            if data and data != b"[DONE]":
                return data
        start += 5
    return None


def _stream(call: LLMCall, body: bytes, content: bool) -> None:
    worth = _WORTH.get(call.api)
    texts: dict[int, list[str]] = {}  # choice (or Anthropic block) -> its text pieces
    tools: dict[tuple[int, int], list[str]] = {}  # (choice, tool index) -> [name, argument pieces...]
    for raw in _sse_events(body) if content else _figures_events(body, worth):
        data = _loads(raw)
        if not isinstance(data, Mapping):
            continue
        if call.api in ("openai.chat", "openai.completions"):
            _openai_chunk(call, data, texts if content else None, tools)
        elif call.api == "openai.responses":
            if isinstance(data.get("response"), Mapping):
                _responses(call, data["response"], content)
        elif call.api == "anthropic":
            _anthropic_event(call, data, texts if content else None, tools)
        elif call.api == "gemini":
            _gemini(call, data, False)
            if content:
                for index, candidate in enumerate(data.get("candidates") or ()):
                    got = candidate.get("content") if isinstance(candidate, Mapping) else None
                    if isinstance(got, Mapping):
                        texts.setdefault(index, []).append(_text(got.get("parts")))
    if content and (texts or tools):
        if call.api == "anthropic":  # one message, its blocks in order
            text = "".join(piece for index in sorted(texts) for piece in texts[index])
            calls = tuple((bits[0], "".join(bits[1:]) or "{}") for _, bits in sorted(tools.items()))
            call.output_messages = [Message("assistant", text, calls)]
            return
        call.output_messages = [
            Message(
                "assistant",
                "".join(texts.get(index, [])),
                tuple((bits[0], "".join(bits[1:])) for (owner, _), bits in sorted(tools.items()) if owner == index),
            )
            for index in sorted(set(texts) | {owner for owner, _ in tools})
        ]


def _openai_chunk(
    call: LLMCall,
    data: Mapping[str, Any],
    texts: dict[int, list[str]] | None,
    tools: dict[tuple[int, int], list[str]],
) -> None:
    _ident(call, data)
    _usage(call, data.get("usage"))
    for choice in data.get("choices") or ():
        if not isinstance(choice, Mapping):
            continue
        index = _index(choice.get("index"))
        if isinstance(choice.get("finish_reason"), str):
            call.finish_reasons.append(choice["finish_reason"])
        if texts is None:
            continue
        delta = choice.get("delta")
        if not isinstance(delta, Mapping):
            if isinstance(choice.get("text"), str):  # the Completions API
                texts.setdefault(index, []).append(choice["text"])
            continue
        if isinstance(delta.get("content"), str):
            texts.setdefault(index, []).append(delta["content"])
        for tool in delta.get("tool_calls") or ():
            fn = tool.get("function") if isinstance(tool, Mapping) else None
            if not isinstance(fn, Mapping):
                continue
            position = _index(tool.get("index"))
            bits = tools.setdefault((index, position), [""])
            if isinstance(fn.get("name"), str):
                bits[0] = fn["name"]
            if isinstance(fn.get("arguments"), str):
                bits.append(fn["arguments"])


def _anthropic_event(
    call: LLMCall,
    data: Mapping[str, Any],
    texts: dict[int, list[str]] | None,
    tools: dict[tuple[int, int], list[str]],
) -> None:
    kind = data.get("type")
    if kind == "message_start" and isinstance(data.get("message"), Mapping):
        _anthropic(call, data["message"], False)
    elif kind == "message_delta":
        delta = data.get("delta")
        if isinstance(delta, Mapping) and isinstance(delta.get("stop_reason"), str):
            call.finish_reasons = [delta["stop_reason"]]
        _usage(call, data.get("usage"))
    if texts is None:
        return
    index = _index(data.get("index"))
    if kind == "content_block_start":
        block = data.get("content_block")
        if isinstance(block, Mapping) and block.get("type") == "tool_use":
            tools[(0, index)] = [str(block.get("name", ""))]
        elif isinstance(block, Mapping) and isinstance(block.get("text"), str) and block["text"]:
            texts.setdefault(index, []).append(block["text"])
    elif kind == "content_block_delta":
        delta = data.get("delta")
        if not isinstance(delta, Mapping):
            return
        if isinstance(delta.get("text"), str):
            texts.setdefault(index, []).append(delta["text"])
        elif isinstance(delta.get("partial_json"), str) and (0, index) in tools:
            tools[(0, index)].append(delta["partial_json"])


def _sse(headers: Sequence[tuple[str, str]], body: bytes) -> bool:
    for name, value in headers:
        if name.lower() == "content-type":
            return value.lower().startswith("text/event-stream")
    return body.startswith((b"data:", b"event:"))


def describe(
    method: str,
    url: str,
    request_headers: Sequence[tuple[str, str]],
    request_body: bytes,
    *,
    response_headers: Sequence[tuple[str, str]] = (),
    response_body: bytes | None = None,
    content: bool = False,
) -> LLMCall | None:
    """What a recorded call to a model API said, or None when it is not one (:func:`is_llm_call`, a known API).

    ``response_body`` is the body as recorded (still content-encoded: it is decoded here); None
    when the call got no response. ``content`` also reads the messages' text (for OpenInference's
    ``llm.input_messages``/``llm.output_messages``), which parses a stream event by event.
    """
    if not is_llm_call(method, url, request_headers, request_body):
        return None
    found = _api(url)
    if found is None:
        return None
    api, operation, provider, path_model = found
    call = LLMCall(operation, provider, api, request_model=path_model)
    if "streamgeneratecontent" in url.lower() or "-stream" in url.lower():
        call.stream = True
    try:
        _request(call, _loads(request_body) if request_body else None, content)
        if path_model is not None and call.request_model is None:
            call.request_model = path_model
        if call.api == "bedrock" or not response_body:
            return call
        from agenttrace._capture.payload import decoded_body

        body = decoded_body(response_body, response_headers)
        if _sse(response_headers, body):
            call.stream = True
            _stream(call, body, content)
        else:
            data = _loads(body)
            if isinstance(data, Mapping):
                _WHOLE[call.api](call, data, content)
    except Exception:  # noqa: BLE001, S110 - a payload of any shape: what was read so far stands
        pass
    return call


def describe_recorded(
    request: Mapping[str, Any], response: Mapping[str, Any] | None, *, content: bool = False
) -> LLMCall | None:
    """:func:`describe` of a recorded call from the attributes of its ``agenttrace.request`` and
    ``agenttrace.response`` events (a trace file's, a stored span's); None when it is not a model
    call or its payloads cannot be read."""
    from agenttrace._format.exchange import header_pairs
    from agenttrace._format.otlp_json import decode_body

    try:
        body = None
        headers: Sequence[tuple[str, str]] = ()
        if response is not None and S.BODY in response:
            body = decode_body(str(response[S.BODY]), str(response.get(S.BODY_ENCODING, "utf-8")))
            headers = header_pairs(response.get(S.HTTP_HEADERS) or "[]")
        return describe(
            str(request.get(S.HTTP_METHOD, "")),
            str(request.get(S.HTTP_URL, "")),
            header_pairs(request.get(S.HTTP_HEADERS) or "[]"),
            decode_body(str(request.get(S.BODY, "")), str(request.get(S.BODY_ENCODING, "utf-8"))),
            response_headers=headers,
            response_body=body,
            content=content,
        )
    except (ValueError, TypeError):
        return None


def genai_attributes(call: LLMCall) -> dict[str, Any]:
    """The call's OpenTelemetry GenAI semantic-convention attributes (only those it knows)."""
    out: dict[str, Any] = {S.GEN_AI_OPERATION: call.operation, S.GEN_AI_PROVIDER: call.provider}
    if call.request_model is not None:
        out[S.GEN_AI_REQUEST_MODEL] = call.request_model
    for name, value in call.parameters.items():
        out[f"gen_ai.{name}" if name == "output.type" else S.GEN_AI_REQUEST_PREFIX + name] = value
    if call.stream:
        out[S.GEN_AI_REQUEST_PREFIX + "stream"] = True
    if call.api in ("openai.chat", "openai.responses"):
        out[S.OPENAI_API_TYPE] = "chat_completions" if call.api == "openai.chat" else "responses"
    optional: tuple[tuple[str, Any], ...] = (
        (S.GEN_AI_RESPONSE_MODEL, call.response_model),
        (S.GEN_AI_RESPONSE_ID, call.response_id),
        (S.GEN_AI_INPUT_TOKENS, call.input_tokens),
        (S.GEN_AI_OUTPUT_TOKENS, call.output_tokens),
        (S.GEN_AI_CACHE_READ_TOKENS, call.cache_read_tokens),
        (S.GEN_AI_CACHE_CREATION_TOKENS, call.cache_creation_tokens),
        (S.GEN_AI_REASONING_TOKENS, call.reasoning_tokens),
    )
    for key, value in optional:
        if value is not None:
            out[key] = value
    if call.finish_reasons:
        out[S.GEN_AI_FINISH_REASONS] = tuple(call.finish_reasons)
    return out


def openinference_attributes(
    call: LLMCall, request_body: bytes, response_headers: Sequence[tuple[str, str]], response_body: bytes | None
) -> dict[str, Any]:
    """OpenInference's names for the same call (Arize Phoenix's LLM view); needs ``describe(content=True)``.

    ``input.value`` is the request body as recorded; ``output.value`` the response body (decoded),
    or for a stream the text the model streamed (the raw events stay in the response event).
    """
    out: dict[str, Any] = {
        S.OI_SPAN_KIND: "EMBEDDING" if call.operation == "embeddings" else "LLM",
        S.OI_PROVIDER: call.provider.split(".")[0],
        S.OI_SYSTEM: call.api.split(".")[0],
    }
    if call.model is not None:
        out[S.OI_MODEL_NAME] = call.model
    if call.parameters or call.stream:
        parameters = {k: v for k, v in call.parameters.items() if k != "output.type"}
        if call.stream:
            parameters["stream"] = True
        out[S.OI_INVOCATION_PARAMETERS] = json.dumps(parameters)
    if call.input_tokens is not None:
        out[S.OI_PROMPT_TOKENS] = call.input_tokens
    if call.output_tokens is not None:
        out[S.OI_COMPLETION_TOKENS] = call.output_tokens
    if call.input_tokens is not None or call.output_tokens is not None:
        out[S.OI_TOTAL_TOKENS] = (call.input_tokens or 0) + (call.output_tokens or 0)
    try:
        out[S.OI_INPUT_VALUE] = request_body.decode("utf-8")
        out[S.OI_INPUT_MIME] = "application/json"
    except UnicodeDecodeError:
        pass
    if call.stream:
        if call.output_messages:
            out[S.OI_OUTPUT_VALUE] = "\n".join(m.content for m in call.output_messages)
            out[S.OI_OUTPUT_MIME] = "text/plain"
    elif response_body:
        from agenttrace._capture.payload import decoded_body

        try:
            out[S.OI_OUTPUT_VALUE] = decoded_body(response_body, response_headers).decode("utf-8")
            out[S.OI_OUTPUT_MIME] = "application/json"
        except UnicodeDecodeError:
            pass
    for prefix, messages in ((S.OI_INPUT_MESSAGES, call.input_messages), (S.OI_OUTPUT_MESSAGES, call.output_messages)):
        for i, message in enumerate(messages):
            key = f"{prefix}.{i}.message"
            out[f"{key}.role"] = message.role
            if message.content:
                out[f"{key}.content"] = message.content
            for j, (name, arguments) in enumerate(message.tool_calls):
                out[f"{key}.tool_calls.{j}.tool_call.function.name"] = name
                out[f"{key}.tool_calls.{j}.tool_call.function.arguments"] = arguments
    return out
