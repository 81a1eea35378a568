"""Which recorded calls are calls to a language model (the ``llm`` kind of replay's live door).

A call is an LLM call when its request goes to one of the model APIs the agent frameworks use
(the OpenAI API and the many servers compatible with it, Anthropic's Messages API, Google's
Gemini, Ollama, Amazon Bedrock, Cohere, Mistral) or, whatever the path, when its JSON body is a
model request: a ``model`` field beside ``messages``, ``prompt``, ``input`` or ``contents``.
Everything else (a tool's API, a vector store, a web page) is a ``tool`` call. The rules are in
docs/replay.md; the check is cheap (a few substring tests, the body parsed only when the path
says nothing).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from urllib.parse import urlsplit

__all__ = ["is_llm_call"]

# Path endings of model APIs (the URL's path, without its query).
_LLM_PATH_ENDS = (
    "/chat/completions",  # OpenAI and compatible servers (vLLM, LiteLLM proxy, Together, Groq, ...)
    "/completions",
    "/responses",  # OpenAI Responses API
    "/embeddings",
    "/messages",  # Anthropic
    "/api/chat",  # Ollama
    "/api/generate",
    "/converse",  # Amazon Bedrock
    "/converse-stream",
    "/invoke",
    "/invoke-with-response-stream",
    "/v1/chat",  # Cohere
    "/v2/chat",
)
# Substrings of model API paths that are not at the end (Gemini's model:method form).
_LLM_PATH_PARTS = (":generatecontent", ":streamgeneratecontent", ":embedcontent")
_PROMPT_FIELDS = ("messages", "prompt", "input", "contents")
_MAX_SNIFF = 1 << 20  # bodies beyond this are not parsed to decide


def is_llm_call(method: str, url: str, headers: Sequence[tuple[str, str]], body: bytes) -> bool:
    """True when the request is a call to a language model (see the module docstring)."""
    if method.upper() != "POST":
        return False
    try:
        path = urlsplit(url).path.lower().rstrip("/")
    except ValueError:
        return False
    if path.endswith(_LLM_PATH_ENDS) or any(part in path for part in _LLM_PATH_PARTS):
        return True
    if not body or len(body) > _MAX_SNIFF or b'"model"' not in body:
        return False
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and "model" in data and any(field in data for field in _PROMPT_FIELDS)
