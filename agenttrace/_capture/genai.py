"""Which recorded calls are calls to a language model (the ``llm`` kind of replay's live door).

A call is an LLM call when its request goes to one of the model APIs the agent frameworks use
(the OpenAI API and the many servers compatible with it, Anthropic's Messages API, Google's
Gemini, Amazon Bedrock) or, for paths other APIs share (Ollama's ``/api/chat``, Cohere's
``/v1/chat``, ``…/completions``), when its JSON body names a ``model``; whatever the path, a JSON
body with a ``model`` beside ``messages``, ``prompt``, ``input`` or ``contents`` is one too.
Everything else (a tool's API, a vector store, a web page) is a ``tool`` call. The rules are in
docs/replay.md; the check is cheap (a few substring tests, the body parsed only when the path
says nothing).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

__all__ = ["is_llm_call"]

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
    try:
        path = urlsplit(url).path.lower().rstrip("/")
    except ValueError:
        return False
    if path.endswith(_LLM_PATH_ENDS) or any(part in path for part in _LLM_PATH_PARTS) or _BEDROCK.search(path):
        return True
    data = _json(body)
    if not isinstance(data, dict) or not isinstance(data.get("model"), str):
        return False
    return path.endswith(_SHARED_PATH_ENDS) or any(field in data for field in _PROMPT_FIELDS)


def _json(body: bytes) -> object:
    if not body or len(body) > _MAX_SNIFF or b'"model"' not in body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None
