"""The demo agent: asks the (fake) LLM, runs the tool it calls, and streams the final answer.

Run it on its own with ``python -m agenttrace._demo.agent --base-url http://127.0.0.1:PORT/v1``;
``agenttrace demo`` records it, then replays it with the server gone.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Sequence
from typing import Any

import agenttrace

__all__ = ["main", "support_agent"]

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Look up an order's status by the customer's words",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
        },
    }
]


def _lookup_order(query: str) -> dict[str, Any]:
    # A local "tool": its ticket id comes from uuid4, which replay serves from the recording too.
    return {"query": query, "status": "shipped", "ticket": uuid.uuid4().hex[:12]}


@agenttrace.run("demo-support-agent")
def support_agent(base_url: str, question: str) -> dict[str, Any]:
    """Answer ``question`` with one tool call and a streamed reply; return everything it saw."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="sk-demo-not-a-real-key")
    messages: list[dict[str, Any]] = [{"role": "user", "content": question}]
    with agenttrace.step("plan", type="thought"):
        first = client.chat.completions.create(model="demo", messages=messages, tools=TOOLS)  # type: ignore[arg-type]
    message = first.choices[0].message
    calls = message.tool_calls or []
    call = calls[0]
    arguments = json.loads(call.function.arguments)  # type: ignore[union-attr]
    with agenttrace.step("lookup_order", type="tool_call", **arguments):
        result = _lookup_order(str(arguments.get("query", "")))
        agenttrace.set_result(result)
    messages.append(message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})
    parts: list[str] = []
    with agenttrace.step("answer", type="observation"):
        stream: Any = client.chat.completions.create(model="demo", messages=messages, stream=True)  # type: ignore[arg-type]
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
    return {"completion_id": first.id, "tool_call_id": call.id, "tool_result": result, "answer": "".join(parts)}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo agent once and print what it produced as JSON."""
    parser = argparse.ArgumentParser(prog="python -m agenttrace._demo.agent")
    parser.add_argument("--base-url", required=True, help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--question", default="Where is my order 1234?")
    args = parser.parse_args(argv)
    print(json.dumps(support_agent(args.base_url, args.question), indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
