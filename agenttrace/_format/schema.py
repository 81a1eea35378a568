"""Every span attribute and event name AgentTrace writes, in one place (docs/span-model.md).

Bump :data:`SCHEMA_VERSION` when the meaning of a name changes; readers accept every version
listed in :data:`READABLE_SCHEMA_VERSIONS` so a file written by one release replays on the next.
"""

from __future__ import annotations

__all__ = [
    "READABLE_SCHEMA_VERSIONS",
    "SCHEMA_VERSION",
]

SCHEMA_VERSION = 1
READABLE_SCHEMA_VERSIONS = frozenset({1})

INSTRUMENTATION_SCOPE = "agenttrace"

# On every span AgentTrace opens.
KIND = "agenttrace.kind"  # "run" | "step" | "call"
SCHEMA = "agenttrace.schema_version"

# Run spans.
RUN_NAME = "agenttrace.run.name"
RUN_FUNCTION = "agenttrace.run.function"
RUN_SOURCE_FILE = "agenttrace.run.source_file"
RUN_SOURCE = "agenttrace.run.source"
RUN_DISTRIBUTIONS = "agenttrace.run.distributions"
RUN_PYTHON = "agenttrace.run.python"
RUN_MODE = "agenttrace.run.mode"
RUN_GOVERNANCE_LEVEL = "agenttrace.run.governance_level"
RUN_STATUS = "agenttrace.run.status"  # "ok" | "error"
RUN_RESULT = "agenttrace.run.result"  # JSON
RUN_REPLAY_OF = "agenttrace.run.replay_of"  # trace id of the recording a replay serves from

# Step spans.
STEP_NAME = "agenttrace.step.name"
STEP_TYPE = "agenttrace.step.type"
STEP_RESULT = "agenttrace.step.result"  # JSON
STEP_KWARG_PREFIX = "agenttrace.step.kwargs."  # one attribute per keyword argument

# Call spans (one per intercepted I/O exchange).
CALL_LIBRARY = "agenttrace.call.library"
CALL_ORDINAL = "agenttrace.call.ordinal"
CALL_STEP_PATH = "agenttrace.call.step_path"
CALL_REPLAYED = "agenttrace.call.replayed"
CALL_LIVE = "agenttrace.call.live"  # bool, on a call span of a replay: the call went live by the settings

# Events.
EVENT_RESULT_FILTERED = "[FILTERED]"

# Call spans also carry the stable HTTP semantic-convention attributes: http.request.method,
# url.full, server.address, server.port, http.response.status_code, error.type.
STEP_NAME_ON_CALL = STEP_NAME  # the active step's name, repeated on each call span

# Call events: one request, then one response or one error (never more, whatever the number of
# stream chunks, so OTel's 128-events-per-span limit can never drop part of a payload), and at
# most one agenttrace.entropy event before them.
EVENT_REQUEST = "agenttrace.request"
EVENT_RESPONSE = "agenttrace.response"
EVENT_ERROR = "agenttrace.error"
EVENT_DNS = "agenttrace.dns"
EVENT_CONNECT = "agenttrace.connect"
# The run's random draws: on a call span, those drawn since the last call began (so a run cut short
# keeps them); on the run span, the rest. Each event's draws follow on from ENTROPY_FIRST.
EVENT_ENTROPY = "agenttrace.entropy"

HTTP_METHOD = "agenttrace.http.method"
HTTP_URL = "agenttrace.http.url"
HTTP_HEADERS = "agenttrace.http.headers"  # JSON list of [name, value] pairs, order and repeats kept
HTTP_STATUS = "agenttrace.http.status_code"
HTTP_REASON = "agenttrace.http.reason"
HTTP_VERSION = "agenttrace.http.version"

BODY = "agenttrace.body"  # the bytes as text (utf-8) or base64, see BODY_ENCODING
BODY_ENCODING = "agenttrace.body.encoding"  # "utf-8" | "base64"
BODY_SIZE = "agenttrace.body.size"  # full size in bytes, even when truncated
BODY_SHA256 = "agenttrace.body.sha256"  # hex digest of the full body
BODY_TRUNCATED = "agenttrace.body.truncated"  # True when cut at max_body_bytes
BODY_FILTERED = "agenttrace.body.filtered"  # True when a filter changed the bytes (replay knows)
# On the response event of a call a replay served: where the served body is recorded (the body
# itself is not repeated in the replay's trace; size, digest and chunk boundaries are).
SERVED_TRACE_ID = "agenttrace.served.trace_id"  # trace id of the recording's call span
SERVED_SPAN_ID = "agenttrace.served.span_id"  # span id of the recording's call span

STREAM_CHUNK_SIZES = "agenttrace.stream.chunk_sizes"  # int[]: boundaries of the chunks in BODY
STREAM_CHUNK_OFFSETS = "agenttrace.stream.chunk_offsets_ns"  # int[]: each chunk's time after the response head
STREAM_END = "agenttrace.stream.end"  # "complete" | "closed_early" | "error" | "not_read"

ERROR_TYPE = "agenttrace.error.type"  # qualified exception class, e.g. "httpx.ConnectTimeout"
ERROR_MESSAGE = "agenttrace.error.message"
ERROR_PHASE = "agenttrace.error.phase"  # "request" | "stream"

# str[]: "urandom", "sysrandom", "random.seed", "random.state", or "clock" (a wall-clock reading: 8 bytes,
# big-endian nanoseconds since the epoch, served back by replay's virtual clock)
ENTROPY_SOURCES = "agenttrace.entropy.sources"
ENTROPY_VALUES = "agenttrace.entropy.values"  # str[]: base64 of each draw, in order
ENTROPY_FIRST = "agenttrace.entropy.first"  # int: the run's draw number of the event's first draw (absent: 0)
ENTROPY_RUN_SPAN_ID = "agenttrace.entropy.run_span_id"  # on a call span: the run span the draws are of

# Socket instrumentor: DNS lookups and raw connects made outside an instrumented client.
DNS_FUNCTION = "agenttrace.dns.function"  # "getaddrinfo", "gethostbyname", ...
DNS_HOST = "agenttrace.dns.host"
DNS_PORT = "agenttrace.dns.port"
DNS_ANSWER = "agenttrace.dns.answer"  # JSON of what the lookup returned
CONNECT_HOST = "agenttrace.connect.host"
CONNECT_PORT = "agenttrace.connect.port"

# GenAI semantic conventions (OpenTelemetry's gen_ai.* names), on the call span of an LLM call,
# parsed from its recorded payloads (agenttrace._format.genai; docs/span-model.md).
GEN_AI_OPERATION = "gen_ai.operation.name"  # "chat" | "text_completion" | "embeddings" | "generate_content"
GEN_AI_PROVIDER = "gen_ai.provider.name"  # "openai" | "anthropic" | "azure.ai.openai" | "gcp.gemini" | ...
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_PREFIX = "gen_ai.request."  # + temperature, max_tokens, top_p, top_k, seed, stream, ...
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_FINISH_REASONS = "gen_ai.response.finish_reasons"  # str[]
GEN_AI_INPUT_TOKENS = "gen_ai.usage.input_tokens"  # cached input tokens included
GEN_AI_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_CACHE_CREATION_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_REASONING_TOKENS = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_OUTPUT_TYPE = "gen_ai.output.type"
OPENAI_API_TYPE = "openai.api.type"  # "chat_completions" | "responses"

# OpenInference's names (Arize Phoenix), beside the GenAI ones with the openinference setting.
OI_SPAN_KIND = "openinference.span.kind"  # "LLM" | "EMBEDDING"
OI_MODEL_NAME = "llm.model_name"
OI_PROVIDER = "llm.provider"
OI_SYSTEM = "llm.system"
OI_INVOCATION_PARAMETERS = "llm.invocation_parameters"  # JSON
OI_PROMPT_TOKENS = "llm.token_count.prompt"
OI_COMPLETION_TOKENS = "llm.token_count.completion"
OI_TOTAL_TOKENS = "llm.token_count.total"
OI_INPUT_VALUE = "input.value"
OI_INPUT_MIME = "input.mime_type"
OI_OUTPUT_VALUE = "output.value"
OI_OUTPUT_MIME = "output.mime_type"
OI_INPUT_MESSAGES = "llm.input_messages"  # + .{i}.message.role / .content / .tool_calls.{j}.tool_call.function.*
OI_OUTPUT_MESSAGES = "llm.output_messages"

# WebSocket connections (the websockets instrumentor): the call span's request and response events
# hold the opening handshake; one agenttrace.websocket event holds every data and close frame of
# the connection, both directions, in the order they were sent or received (parallel arrays), their
# payloads one after the other in agenttrace.body (split by the sizes). Ping and pong frames are not kept.
EVENT_WEBSOCKET = "agenttrace.websocket"
WS_DIRECTIONS = "agenttrace.websocket.directions"  # str[]: "sent" | "received"
WS_OPCODES = "agenttrace.websocket.opcodes"  # str[]: "text" | "binary" | "continuation" | "close"
WS_FINS = "agenttrace.websocket.fins"  # bool[]: the FIN bit (False: a fragment of a longer message)
WS_SIZES = "agenttrace.websocket.sizes"  # int[]: each frame's payload size in agenttrace.body
WS_OFFSETS = "agenttrace.websocket.offsets_ns"  # int[]: each frame's time after the handshake's end

# Replay report, on the replay run's span.
REPLAY_SOURCE = "agenttrace.replay.source"
REPLAY_CALLS_SERVED = "agenttrace.replay.calls_served"
REPLAY_CALLS_MISSED = "agenttrace.replay.calls_missed"
REPLAY_LEAKS = "agenttrace.replay.leaks"
REPLAY_CALLS_UNUSED = "agenttrace.replay.calls_unused"
REPLAY_ENTROPY_SERVED = "agenttrace.replay.entropy_served"
REPLAY_CLOCK_SERVED = "agenttrace.replay.clock_served"  # int: wall-clock readings served from the recording
REPLAY_CALLS_LIVE = "agenttrace.replay.calls_live"  # int: calls a replay let go live (replay_live, replay_live_from)
REPLAY_LIVE_FROM = "agenttrace.replay.live_from"  # string: where the run went live (replay_live_from)
REPLAY_FIRST_DIVERGENCE = "agenttrace.replay.first_divergence"  # string: where the run first left the recording
REPLAY_VIOLATIONS = "agenttrace.replay.violations"
