"""A fake LLM server on 127.0.0.1 speaking enough OpenAI and Anthropic for their real SDKs.

Run it with ``python -m agenttrace._demo.llm_server [--port N] [--chunk-delay S]``, or in
code::

    with FakeLLMServer() as server:
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="sk-demo")
        client.chat.completions.create(model="demo", messages=[...])

Routes: ``POST /v1/chat/completions`` (plain, ``stream=True`` SSE, tool calls, usage chunk
with ``stream_options.include_usage``), ``POST /v1/responses`` (OpenAI's Responses API: plain,
``stream=True`` events, function calls) and ``POST /v1/messages`` (plain, ``stream=True``
events, tool use). Every answer reports its token ``usage``. Every response carries random ids
and a random ``nonce`` in its text, so a replayed run that prints the same ids provably got them
from the recording.

Behaviour: with tools offered and no tool result yet in the conversation, the model calls the
first tool with arguments built from the last user message; after a tool result it answers
with that result; otherwise it echoes the last user message. Nothing here touches the network
beyond the loopback socket it listens on.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agenttrace._demo._loopback import LoopbackServer

__all__ = ["FakeLLMServer", "main"]


def _nonce() -> str:
    return uuid.uuid4().hex[:8]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for block in content:
            if isinstance(block, Mapping):
                if block.get("type") == "text":
                    parts.append(str(block.get("text", "")))
                elif block.get("type") == "tool_result":
                    parts.append(_text_of(block.get("content", "")))
        return " ".join(parts)
    return ""


def _arguments(schema: Mapping[str, Any], text: str) -> dict[str, Any]:
    """Arguments fitting a JSON schema's properties, filled from the user's words."""
    out: dict[str, Any] = {}
    properties = schema.get("properties", {}) if isinstance(schema, Mapping) else {}
    for name, spec in properties.items():
        kind = spec.get("type") if isinstance(spec, Mapping) else None
        if kind in ("integer", "number"):
            out[name] = len(text.split())
        elif kind == "boolean":
            out[name] = True
        elif isinstance(spec, Mapping) and spec.get("enum"):
            out[name] = spec["enum"][0]
        else:
            out[name] = text
    return out


def _split(text: str, size: int = 8) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


# --- OpenAI chat completions -------------------------------------------------------------------


def _openai_decision(body: Mapping[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """``(text, tool_call)``: what the fake model says or which tool it calls."""
    messages = body.get("messages") or []
    last_user = next((_text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    tool_results = [m for m in messages if m.get("role") == "tool"]
    tools = body.get("tools") or []
    if tools and not tool_results:
        fn = tools[0].get("function", {})
        call = {
            "id": f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {
                "name": fn.get("name", "tool"),
                "arguments": json.dumps(_arguments(fn.get("parameters", {}), last_user)),
            },
        }
        return "", call
    if tool_results:
        return f"The tool said: {_text_of(tool_results[-1].get('content'))} (nonce {_nonce()})", None
    return f"You said: {last_user} (nonce {_nonce()})", None


def _usage(body: Mapping[str, Any], text: str) -> dict[str, int]:
    prompt = len(json.dumps(body.get("messages", []))) // 4
    completion = max(1, len(text) // 4)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def openai_completion(body: Mapping[str, Any]) -> dict[str, Any]:
    """A ``chat.completion`` object answering ``body``."""
    text, call = _openai_decision(body)
    message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
    if call is not None:
        message["tool_calls"] = [call]
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "demo"),
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": "tool_calls" if call else "stop"}
        ],
        "usage": _usage(body, text),
        "system_fingerprint": "fp_demo",
    }


def openai_stream(body: Mapping[str, Any]) -> Iterator[bytes]:
    """SSE chunks of a streamed ``chat.completion.chunk`` answer, ``[DONE]`` last."""
    text, call = _openai_decision(body)
    ident = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    model = body.get("model", "demo")

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        data = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_demo",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        return f"data: {json.dumps(data)}\n\n".encode()

    yield chunk({"role": "assistant", "content": "" if call is None else None, "refusal": None})
    if call is not None:
        fn = call["function"]
        yield chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": fn["name"], "arguments": ""},
                    }
                ]
            }
        )
        for piece in _split(fn["arguments"]):
            yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
        yield chunk({}, "tool_calls")
    else:
        for piece in _split(text):
            yield chunk({"content": piece})
        yield chunk({}, "stop")
    options = body.get("stream_options") or {}
    if options.get("include_usage"):
        usage = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": _usage(body, text),
        }
        yield f"data: {json.dumps(usage)}\n\n".encode()
    yield b"data: [DONE]\n\n"


# --- OpenAI responses ------------------------------------------------------------------------


def _responses_decision(body: Mapping[str, Any]) -> tuple[str, dict[str, Any] | None]:
    given = body.get("input")
    items = [{"role": "user", "content": given}] if isinstance(given, str) else list(given or [])
    outputs = [i for i in items if isinstance(i, Mapping) and i.get("type") == "function_call_output"]
    last_user = next(
        (_text_of(i.get("content")) for i in reversed(items) if isinstance(i, Mapping) and i.get("role") == "user"), ""
    )
    tools = body.get("tools") or []
    if tools and not outputs:
        tool = tools[0]
        return "", {
            "type": "function_call",
            "id": f"fc_{uuid.uuid4().hex[:24]}",
            "call_id": f"call_{uuid.uuid4().hex[:24]}",
            "name": tool.get("name", "tool"),
            "arguments": json.dumps(_arguments(tool.get("parameters", {}), last_user)),
            "status": "completed",
        }
    if outputs:
        return f"The tool said: {outputs[-1].get('output', '')} (nonce {_nonce()})", None
    return f"You said: {last_user} (nonce {_nonce()})", None


def openai_response(body: Mapping[str, Any], ident: str | None = None) -> dict[str, Any]:
    """A Responses API ``response`` object answering ``body``."""
    text, call = _responses_decision(body)
    item: dict[str, Any] = call or {
        "type": "message",
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }
    prompt = len(json.dumps(body.get("input", ""))) // 4
    completion = max(1, len(text) // 4)
    return {
        "id": ident or f"resp_{uuid.uuid4().hex}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": body.get("model", "demo"),
        "output": [item],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": body.get("tools") or [],
        "usage": {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion,
        },
    }


def openai_response_stream(body: Mapping[str, Any]) -> Iterator[bytes]:
    """The SSE events of a streamed Responses API answer: created, text deltas, completed."""
    final = openai_response(body)
    number = iter(range(1_000_000))

    def event(name: str, data: Mapping[str, Any]) -> bytes:
        payload = json.dumps({"type": name, "sequence_number": next(number), **data})
        return f"event: {name}\ndata: {payload}\n\n".encode()

    yield event("response.created", {"response": dict(final, status="in_progress", output=[], usage=None)})
    item = final["output"][0]
    if item["type"] == "message":
        for piece in _split(item["content"][0]["text"]):
            yield event(
                "response.output_text.delta",
                {"item_id": item["id"], "output_index": 0, "content_index": 0, "delta": piece, "logprobs": []},
            )
    yield event("response.output_item.done", {"output_index": 0, "item": item})
    yield event("response.completed", {"response": final})


# --- Anthropic messages ----------------------------------------------------------------------


def _anthropic_decision(body: Mapping[str, Any]) -> tuple[str, dict[str, Any] | None]:
    messages = body.get("messages") or []
    tool_results = [
        b
        for m in messages
        if m.get("role") == "user" and isinstance(m.get("content"), list)
        for b in m["content"]
        if isinstance(b, Mapping) and b.get("type") == "tool_result"
    ]
    last_user = next((_text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    tools = body.get("tools") or []
    if tools and not tool_results:
        tool = tools[0]
        return "", {
            "type": "tool_use",
            "id": f"toolu_{uuid.uuid4().hex[:24]}",
            "name": tool.get("name", "tool"),
            "input": _arguments(tool.get("input_schema", {}), last_user),
        }
    if tool_results:
        return f"The tool said: {_text_of(tool_results[-1].get('content'))} (nonce {_nonce()})", None
    return f"You said: {last_user} (nonce {_nonce()})", None


def anthropic_message(body: Mapping[str, Any]) -> dict[str, Any]:
    """A ``message`` object answering ``body``."""
    text, tool = _anthropic_decision(body)
    content: list[dict[str, Any]] = [tool] if tool is not None else [{"type": "text", "text": text}]
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "demo"),
        "content": content,
        "stop_reason": "tool_use" if tool else "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": len(json.dumps(body.get("messages", []))) // 4,
            "output_tokens": max(1, len(text) // 4),
        },
    }


def anthropic_stream(body: Mapping[str, Any]) -> Iterator[bytes]:
    """The SSE events of a streamed Anthropic message."""
    message = anthropic_message(body)
    content = message["content"]

    def event(name: str, data: Mapping[str, Any]) -> bytes:
        return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

    start = dict(
        message,
        content=[],
        stop_reason=None,
        usage={"input_tokens": message["usage"]["input_tokens"], "output_tokens": 1},
    )
    yield event("message_start", {"type": "message_start", "message": start})
    block = content[0]
    if block["type"] == "text":
        yield event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        )
        yield event("ping", {"type": "ping"})
        for piece in _split(block["text"]):
            yield event(
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
            )
    else:
        yield event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": dict(block, input={})},
        )
        for piece in _split(json.dumps(block["input"])):
            yield event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": piece},
                },
            )
    yield event("content_block_stop", {"type": "content_block_stop", "index": 0})
    yield event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": message["usage"]["output_tokens"]},
        },
    )
    yield event("message_stop", {"type": "message_stop"})


# --- HTTP plumbing ---------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stalls
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet by default: the demo prints its own story."""

    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex[:16]}")
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, chunks: Iterator[bytes]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex[:16]}")
        self.end_headers()
        for i, data in enumerate(chunks):
            if i and self.server.chunk_delay:
                time.sleep(self.server.chunk_delay)
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        self.server.calls += 1
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._json(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}})
            return
        path = self.path.split("?", 1)[0].rstrip("/")
        if path.endswith("/chat/completions"):
            if body.get("stream"):
                self._stream(openai_stream(body))
            else:
                self._json(200, openai_completion(body))
        elif path.endswith("/responses"):
            if body.get("stream"):
                self._stream(openai_response_stream(body))
            else:
                self._json(200, openai_response(body))
        elif path.endswith("/messages"):
            if body.get("stream"):
                self._stream(anthropic_stream(body))
            else:
                self._json(200, anthropic_message(body))
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    chunk_delay = 0.0
    calls = 0
    connections = 0

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up mid-stream is normal for a demo server: stay quiet."""

    def get_request(self) -> tuple[Any, Any]:
        conn = super().get_request()
        self.connections += 1
        return conn


class FakeLLMServer(LoopbackServer):
    """The fake LLM server; a context manager that serves from a daemon thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, chunk_delay: float = 0.0) -> None:
        super().__init__(_Server((host, port), _Handler), "fake-llm")
        self._server.chunk_delay = chunk_delay

    @property
    def openai_base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``: the OpenAI SDK's ``base_url`` (the Anthropic SDK takes ``base_url``)."""
        return self.base_url + "/v1"

    @property
    def calls(self) -> int:
        """How many API calls it has answered."""
        return int(self._server.calls)

    @property
    def connections(self) -> int:
        """How many TCP connections it has accepted (a replay's tripwire: it must not move)."""
        return int(self._server.connections)

    def serve_forever(self) -> None:
        """Serve on the calling thread until interrupted."""
        self._server.serve_forever()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the fake LLM server in the foreground, printing its URLs."""
    parser = argparse.ArgumentParser(prog="python -m agenttrace._demo.llm_server", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between streamed chunks")
    args = parser.parse_args(argv)
    server = FakeLLMServer(port=args.port, chunk_delay=args.chunk_delay)
    print(f"fake LLM server on {server.base_url} (OpenAI base_url {server.openai_base_url})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._server.server_close()


if __name__ == "__main__":
    main()
