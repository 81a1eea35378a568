"""Find the recorded exchange for a live request: a hash index keyed by causal position.

A call's key is (method, normalized URL, step path, canonical body): JSON bodies compare as
data (key order and whitespace do not matter), query parameters in any order. Each key holds
the recorded calls with that key in recorded order; serving one pops it, so the n-th equal call
in a step gets the n-th recorded response, and concurrent tasks that interleave differently
from the recording still each get the response to their own request. Lookup is O(1) in the
size of the recording: a 10,000-call trace costs the same per call as a 10-call one.

Headers are compared after the key matched, ignoring volatile ones (:data:`VOLATILE_HEADERS`,
:data:`VOLATILE_PREFIXES`) and secrets (recorded redacted, so never comparable).

The matcher is thread-safe under one lock; it knows nothing of runs or modes, which the
session decides.
"""

from __future__ import annotations

import hashlib
import json
import math
import operator
import os
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from agenttrace._capture.model import Exchange, RequestData
from agenttrace._capture.payload import redactor
from agenttrace._format.exactjson import fast_loads, has_inexact, leaves, orjson_module

__all__ = [
    "IGNORE_ENV",
    "VOLATILE_HEADERS",
    "VOLATILE_PREFIXES",
    "Entry",
    "IgnoreRules",
    "Matcher",
    "Miss",
    "body_differences",
    "call_differences",
    "ignoring",
    "json_differences",
    "normalize_url",
    "parse_ignore",
]

# Headers that differ between two runs of the same agent (tracing context, clocks, client
# versions and platforms, retry bookkeeping, connection management) or follow from the URL and
# body (host, content-length). Comparing them would make every replay a mismatch.
VOLATILE_HEADERS = frozenset(
    {
        "traceparent",
        "tracestate",
        "baggage",
        "date",
        "user-agent",
        "idempotency-key",
        "x-idempotency-key",
        "content-length",
        "host",
        "connection",
        "keep-alive",
        "accept-encoding",
        "te",
        "x-request-id",
        "request-id",
        "x-amz-date",
        "x-amz-user-agent",
        "amz-sdk-invocation-id",
        "amz-sdk-request",
        "sentry-trace",
        "b3",
        "uber-trace-id",
        "x-cloud-trace-context",
        "retry-count",
    }
)
VOLATILE_PREFIXES = ("x-stainless-", "x-b3-", "x-datadog-", "x-amzn-trace-", "x-ot-span-")

_PLACEHOLDER = re.compile(r"\[REDACTED sha256:[0-9a-f]+\]")
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_MAX_DIFF_LINES = 8


def _volatile(name: str) -> bool:
    return name in VOLATILE_HEADERS or name.startswith(VOLATILE_PREFIXES)


# The URLs almost every agent calls: http(s), a plain host name, an optional port, a path and
# query made of characters that percent-encoding leaves as they are. For these, normalize_url's
# answer is computed without urlsplit/unquote/quote/parse_qsl/urlencode (tests/replay/test_matcher.py
# checks both ways agree); anything else (userinfo, IPv6, fragments, %-escapes, "+", ...) goes
# the general way.
_SIMPLE_BASE = re.compile(
    r"(?P<scheme>[Hh][Tt][Tt][Pp][Ss]?)://(?P<host>[A-Za-z0-9.-]+)(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<path>/[A-Za-z0-9/:@!$&'()*,;=._~-]*)?"
)
_SIMPLE_QUERY = re.compile(r"[A-Za-z0-9_.~&=-]*")
_DEFAULT_PORTS = (("http", 80), ("https", 443))
_bases: dict[str, str | None] = {}  # the part before "?" -> its normal form (None: not simple)
_first = operator.itemgetter(0)


def _simple_base(text: str) -> str | None:
    match = _SIMPLE_BASE.fullmatch(text)
    if match is None:
        return None
    scheme, host, port_text, path = match.group("scheme", "host", "port", "path")
    scheme = scheme.lower()
    netloc = host.lower()
    if port_text is not None:
        port = int(port_text)
        if port > 65535:
            return None
        if (scheme, port) not in _DEFAULT_PORTS:
            netloc = f"{netloc}:{port}"
    return f"{scheme}://{netloc}{path or '/'}"


def _simple_normalize(url: str) -> str | None:
    text, _, query = url.partition("?")
    try:
        base = _bases[text]  # the few hosts and paths an agent calls, each looked at once
    except KeyError:
        base = _simple_base(text)
        if len(_bases) < 4096:
            _bases[text] = base
    if base is None or _SIMPLE_QUERY.fullmatch(query) is None:
        return None
    if not query:
        return base
    if "&" not in query:  # one parameter, the usual case
        name, _, value = query.partition("=")
        return None if "=" in value else f"{base}?{name}={value}"
    pairs: list[tuple[str, str]] = []
    for piece in query.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        if "=" in value:
            return None  # urlencode escapes it: the general way
        pairs.append((name, value))
    if not pairs:
        return base
    pairs.sort(key=_first)
    return base + "?" + "&".join(f"{k}={v}" for k, v in pairs)


def normalize_url(url: str) -> str:
    """``url`` with case, default port, percent-encoding and query order made canonical."""
    simple = _simple_normalize(url)
    if simple is not None:
        return simple
    return _general_normalize(url)


def _general_normalize(url: str) -> str:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port is None or (scheme, port) in (("http", 80), ("https", 443)) else f"{host}:{port}"
    path = quote(unquote(parts.path or "/"), safe=_PATH_SAFE)
    query = _query(parts.query)
    return f"{scheme}://{netloc}{path}" + (f"?{urlencode(query)}" if query else "")


def _query(query: str) -> list[tuple[str, str]]:
    pairs = parse_qsl(query, keep_blank_values=True)
    # Secrets in the query are recorded as placeholders of the recording's secret; any secret
    # compares equal to any other, so a CI key replays a production recording.
    return sorted(((k, _PLACEHOLDER.sub("[REDACTED]", v)) for k, v in pairs), key=lambda kv: kv[0])


def _content_type(headers: Sequence[tuple[str, str]]) -> str:
    for key, value in headers:
        if key.lower() == "content-type":
            return value.lower()
    return ""


def _parse_body(body: bytes, headers: Sequence[tuple[str, str]], content_type: str | None = None) -> tuple[str, Any]:
    """``(kind, value)``: ("json", data), ("form", sorted pairs) or ("bytes", body).

    ``content_type``: ``_content_type(headers)``, when the caller already worked it out.
    """
    if not body:
        return "bytes", b""
    if content_type is None:
        content_type = _content_type(headers)
    head = body[:1]
    if "json" in content_type or head in (b"{", b"["):
        fast = fast_loads()
        if fast is not None:
            try:
                value = fast(body)
            except ValueError:
                pass  # json decides (NaN, other encodings, ...)
            else:
                if not has_inexact(value):
                    return "json", value
        try:
            return "json", json.loads(body)
        except ValueError:
            pass
    if "x-www-form-urlencoded" in content_type:
        try:
            return "form", sorted(parse_qsl(body.decode("utf-8"), keep_blank_values=True), key=lambda kv: kv[0])
        except UnicodeDecodeError:
            pass
    return "bytes", body


def _canonical_json(value: Any) -> bytes:
    """One serialization per JSON value (keys sorted), whichever parser read it.

    orjson's when it writes ``value`` faithfully: not when ``value`` holds a float that is not
    finite (orjson writes null) or an integer beyond 64 bits (orjson refuses it), which the
    standard library writes (as it always did here).
    """
    dumps = _fast_dumps()
    if dumps is not None and _orjson_writes(value):
        try:
            return dumps(value)
        except TypeError:  # a lone surrogate, too deep a nesting: the standard library's form
            pass
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate ("\\ud800" in the body) stays comparable


def _orjson_writes(value: Any) -> bool:
    for item in leaves(value):
        kind = type(item)
        if (kind is float and not math.isfinite(item)) or (kind is int and not -(2**63) <= item < 2**64):
            return False
    return True


_dumps: Any = None


def _fast_dumps() -> Callable[[Any], bytes] | None:
    """``orjson.dumps`` with sorted keys, or None when orjson is not installed."""
    global _dumps  # noqa: PLW0603 - built once, on first use
    if _dumps is None:
        module = orjson_module()
        if module is None:
            return None
        _dumps = partial(module.dumps, option=module.OPT_SORT_KEYS)
    return _dumps  # type: ignore[no-any-return]


def _body_digest(kind: str, value: Any) -> str:
    if kind == "json":
        data = _canonical_json(value)
    elif kind == "form":
        data = urlencode(value).encode("utf-8")
    else:
        data = value
    return hashlib.sha256(kind.encode() + b"\0" + data).hexdigest()


# A number orjson may read or write differently from the standard library (see has_inexact and
# _orjson_writes) has an exponent or 16 digits and more in a row: with digits mapped to "0" and
# "e"/"E" to "e" (everything else to a space), such a body shows "0e" or sixteen "0"s. A body that
# shows neither (digits and "e" inside strings can only make it look suspect, never clean) needs
# neither walk over its parsed value, which cost twice what parsing and writing it did.
_NUMBER_SHAPE = bytes(48 if c in b"0123456789" else 101 if c in b"eE" else 32 for c in range(256))
_LONG_NUMBER = b"0" * 16


def _digest(body: bytes, headers: Sequence[tuple[str, str]], content_type: str | None = None) -> str:
    """``_body_digest(*_parse_body(body, headers))``: the body part of a key, cheaper for plain JSON.

    ``content_type``: ``_content_type(headers)``, when the caller already worked it out.
    """
    if body and type(body) is bytes:
        if content_type is None:
            content_type = _content_type(headers)
        if "json" in content_type or body[:1] in (b"{", b"["):
            fast, dumps = fast_loads(), _fast_dumps()
            if fast is not None and dumps is not None:
                shape = body.translate(_NUMBER_SHAPE)
                if _LONG_NUMBER not in shape and b"0e" not in shape:
                    try:
                        data = dumps(fast(body))
                    except (ValueError, TypeError):  # not JSON to orjson, a lone surrogate: the long way
                        pass
                    else:
                        return hashlib.sha256(b"json\0" + data).hexdigest()
    return _body_digest(*_parse_body(body, headers, content_type))


def _significant_headers(headers: Iterable[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    secret = redactor().is_secret
    out: dict[str, list[str]] = {}
    for key, value in headers:
        name = key.lower()
        if _volatile(name) or secret(name) or _PLACEHOLDER.fullmatch(value):
            continue
        out.setdefault(name, []).append(value)
    return {k: tuple(v) for k, v in out.items()}


Key = tuple[str, str, tuple[str, ...], str]


@dataclass
class Entry:
    """One recorded exchange in the index."""

    exchange: Exchange
    key: Key
    url: str
    headers: dict[str, tuple[str, ...]]
    position: int  # place in the recording, for stable reporting
    used: bool = False


@dataclass
class Miss:
    """Why a live call has no recorded exchange: the closest recorded call and what differs."""

    method: str
    url: str
    step_path: tuple[str, ...]
    closest: Entry | None
    differences: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """The multi-line explanation used in warnings and ReplayMismatchError messages."""
        lines = [f"  call:    {self.method} {self.url} (step {_step(self.step_path)})"]
        if self.closest is None:
            lines.append("  closest: none: the recording holds no calls")
        else:
            ex = self.closest.exchange
            state = "already served" if self.closest.used else "not served yet"
            lines.append(
                f"  closest: {ex.request.method} {ex.request.url} (step {_step(ex.step_path)}, "
                f"call #{ex.ordinal} of trace {ex.trace_id or '?'}, {state})"
            )
            lines.append("  differs:")
            lines.extend(f"    {d}" for d in self.differences or ["nothing the matcher compares (see docs/replay.md)"])
        return "\n".join(lines)


def _step(path: Sequence[str]) -> str:
    return "/".join(repr(p) for p in path) if path else "(run, no step)"


class Matcher:
    """The index of one recording; ``match`` serves each recorded exchange at most once.

    The parts of a key are remembered by their exact input while the index is built (the
    recorded URL strings, the recorded (content type, body bytes), the recorded header lists):
    a live call that sends exactly what was recorded, the usual case, finds them there instead
    of parsing its URL and canonicalising its JSON body again.
    """

    def __init__(self, exchanges: Iterable[Exchange], ignore: IgnoreRules | None = None) -> None:
        """``ignore``: the parts of a request never compared (default: the rules :func:`ignoring` set)."""
        self._lock = threading.Lock()
        rules = _rules_in_force() if ignore is None else ignore
        self._ignore = rules if rules else None
        self._entries: list[Entry] = []
        self._index: dict[Key, deque[Entry]] = {}
        self._served_per_key: dict[Key, int] = {}
        self._urls: dict[str, str] = {}
        self._digests: dict[tuple[str, bytes], str] = {}
        self._headers: dict[tuple[tuple[str, str], ...], dict[str, tuple[str, ...]]] = {}
        # recorded header list -> (content type, significant headers)
        self._heads: dict[tuple[tuple[str, str], ...], tuple[str, dict[str, tuple[str, ...]]]] = {}
        self._redactor = redactor()
        for position, exchange in enumerate(exchanges):
            entry = self._entry(exchange, position)
            self._entries.append(entry)
            self._index.setdefault(entry.key, deque()).append(entry)

    def _entry(self, exchange: Exchange, position: int) -> Entry:
        req = exchange.request if self._ignore is None else self._ignore.apply(exchange.request)
        url = self._urls.get(req.url)
        if url is None:
            url = self._urls[req.url] = normalize_url(req.url)
        headers = req.headers
        try:
            head = self._heads.get(headers)
        except TypeError:  # not hashable (a list of lists): no cache
            head = (_content_type(headers), _significant_headers(headers))
        if head is None:  # recorded header lists repeat: look at each once
            head = self._heads[headers] = (_content_type(headers), self._significant(headers, remember=True))
        body = req.body
        cache = (head[0], body)
        try:
            digest = self._digests.get(cache)
            if digest is None:
                digest = self._digests[cache] = _digest(body, headers, head[0])
        except TypeError:  # a body that is not hashable (bytearray): no cache
            digest = _digest(body, headers, head[0])
        key = (req.method.upper(), url, tuple(exchange.step_path), digest)
        return Entry(exchange, key, url, head[1], position)

    def _significant(
        self, headers: tuple[tuple[str, str], ...], *, remember: bool = False
    ) -> dict[str, tuple[str, ...]]:
        if redactor() is not self._redactor:  # redaction rules changed: what is secret may differ
            return _significant_headers(headers)
        try:
            found = self._headers.get(headers)
        except TypeError:  # not hashable (a list of lists): no cache
            return _significant_headers(headers)
        if found is None:
            found = _significant_headers(headers)
            if remember:
                self._headers[headers] = found
        return found  # shared between entries: never modified

    def __len__(self) -> int:
        return len(self._entries)

    def match(self, request: RequestData, step_path: Sequence[str]) -> Entry | Miss:
        """Pop the recorded exchange for ``request`` made in ``step_path``, or explain the miss."""
        if self._ignore is not None:
            request = self._ignore.apply(request)
        url = self._urls.get(request.url) or normalize_url(request.url)
        kind, value = "", None
        content_type = _content_type(request.headers)
        try:
            digest = self._digests.get((content_type, request.body))
        except TypeError:  # a body that is not hashable (bytearray): canonicalise it
            digest = None
        if digest is None:
            digest = _digest(request.body, request.headers, content_type)
        key = (request.method.upper(), url, tuple(step_path), digest)
        headers = self._significant(request.headers)
        with self._lock:
            queue = self._index.get(key)
            if queue:
                for i, entry in enumerate(queue):
                    if entry.headers == headers:
                        del queue[i]  # O(1) for the head, which is the usual hit
                        entry.used = True
                        self._served_per_key[key] = self._served_per_key.get(key, 0) + 1
                        return entry
        if not kind:
            kind, value = _parse_body(request.body, request.headers, content_type)
        return self._miss(request, url=url, key=key, kind=kind, value=value, headers=headers, queue=queue)

    def take_place_of(self, miss: Miss) -> Exchange | None:
        """The recorded call a live call that matched nothing stands in for: the closest one
        with the same method, URL and step, not served yet (consumed: it is not unused)."""
        entry = miss.closest
        if entry is None or entry.used:
            return None
        method, url, step_path = entry.key[:3]
        if (method, step_path) != (miss.method, miss.step_path) or url != normalize_url(miss.url):
            return None
        with self._lock:
            queue = self._index.get(entry.key)
            for index, queued in enumerate(queue or ()):
                if queued is entry:
                    del queue[index]  # type: ignore[union-attr]  # found in it
                    entry.used = True
                    return entry.exchange
        return None

    def unused(self, trace_id: str | None = None) -> list[Exchange]:
        """Recorded exchanges never served (of one recorded trace when ``trace_id`` is given)."""
        with self._lock:
            return [
                e.exchange
                for e in self._entries
                if not e.used and (trace_id is None or e.exchange.trace_id == trace_id)
            ]

    # --- explaining a miss (rare: cost is linear in the recording, only when there is no match) ---

    def _miss(
        self,
        request: RequestData,
        *,
        url: str,
        key: Key,
        kind: str,
        value: Any,
        headers: dict[str, tuple[str, ...]],
        queue: deque[Entry] | None,
    ) -> Miss:
        miss = Miss(request.method.upper(), request.url, tuple(key[2]), None)
        with self._lock:
            if queue:  # same call, same step: only headers differ
                miss.closest = queue[0]
                miss.differences = _header_diff(queue[0].headers, headers)
                return miss
            served = self._served_per_key.get(key, 0)
            if served:
                miss.closest = next(e for e in reversed(self._entries) if e.key == key)
                miss.differences = [
                    f"occurrence: this call was recorded {served} time(s) in this step and every one was "
                    f"already served; this is call #{served + 1} with the same method, URL and body"
                ]
                return miss
            best = _closest(self._entries, key, headers)
        if best is None:
            return miss
        miss.closest = best
        miss.differences = _differences(
            best, request, url=url, key=key, kind=kind, value=value, headers=headers, ignore=self._ignore
        )
        return miss


def _closest(entries: Sequence[Entry], key: Key, headers: dict[str, tuple[str, ...]]) -> Entry | None:
    method, url, step, body = key
    base = url.split("?", 1)[0]
    best: Entry | None = None
    best_score = -1
    for entry in entries:
        e_method, e_url, e_step, e_body = entry.key
        score = (
            8 * (e_url.split("?", 1)[0] == base)
            + 4 * (e_method == method)
            + 2 * (e_url == url)
            + 2 * (e_step == step)
            + 2 * (e_body == body)
            + (entry.headers == headers)
            + 3 * (not entry.used)  # an unused call is the likelier intended match
        )
        if score > best_score:
            best, best_score = entry, score
    return best


def _differences(
    entry: Entry,
    request: RequestData,
    *,
    url: str,
    key: Key,
    kind: str,
    value: Any,
    headers: dict[str, tuple[str, ...]],
    ignore: IgnoreRules | None = None,
) -> list[str]:
    out: list[str] = []
    rec = entry.exchange.request if ignore is None else ignore.apply(entry.exchange.request)
    if rec.method.upper() != key[0]:
        out.append(f"method: recorded {rec.method.upper()}, called {key[0]}")
    r_base, _, r_query = entry.url.partition("?")
    c_base, _, c_query = url.partition("?")
    if r_base != c_base:
        out.append(f"url: recorded {r_base}, called {c_base}")
    out.extend(
        _pairs_diff(
            "query param", parse_qsl(r_query, keep_blank_values=True), parse_qsl(c_query, keep_blank_values=True)
        )
    )
    if tuple(entry.exchange.step_path) != key[2]:
        out.append(f"step: recorded {_step(entry.exchange.step_path)}, called {_step(key[2])}")
    if entry.key[3] != key[3]:
        r_kind, r_value = _parse_body(rec.body, rec.headers)
        if r_kind == kind == "json":
            out.extend(_json_diff(r_value, value, "$"))
        elif r_kind == kind == "form":
            out.extend(_pairs_diff("body field", r_value, value))
        else:
            out.append(_bytes_diff(rec.body, request.body))
    out.extend(_header_diff(entry.headers, headers))
    if len(out) > _MAX_DIFF_LINES:
        out = [*out[:_MAX_DIFF_LINES], f"... and {len(out) - _MAX_DIFF_LINES} more difference(s)"]
    return out


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, bytes) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_diff(recorded: Any, called: Any, path: str, words: tuple[str, str] = ("recorded", "called")) -> list[str]:
    a, b = words
    if isinstance(recorded, dict) and isinstance(called, dict):
        out: list[str] = []
        for name in sorted(set(recorded) | set(called), key=str):
            sub = (
                f"{path}.{name}"
                if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name))
                else f"{path}[{json.dumps(name)}]"
            )
            if name not in called:
                out.append(f"body {sub}: {a} {_short(recorded[name])}, {_absent(b)}")
            elif name not in recorded:
                out.append(f"body {sub}: {_absent(a)}, {b} {_short(called[name])}")
            else:
                out.extend(_json_diff(recorded[name], called[name], sub, words))
        return out
    if isinstance(recorded, list) and isinstance(called, list):
        out = []
        for i in range(max(len(recorded), len(called))):
            sub = f"{path}[{i}]"
            if i >= len(called):
                out.append(f"body {sub}: {a} {_short(recorded[i])}, {_absent(b)}")
            elif i >= len(recorded):
                out.append(f"body {sub}: {_absent(a)}, {b} {_short(called[i])}")
            else:
                out.extend(_json_diff(recorded[i], called[i], sub, words))
        return out
    if recorded != called or type(recorded) is not type(called):
        return [f"body {path}: {a} {_short(recorded)}, {b} {_short(called)}"]
    return []


def _absent(word: str) -> str:
    """How a value missing on one side reads: in a replay's words, or a diff's ("A", "B")."""
    return {"recorded": "not in the recording", "called": "missing in the call"}.get(word, f"absent in {word}")


def _pairs_diff(
    label: str,
    recorded: Sequence[tuple[str, str]],
    called: Sequence[tuple[str, str]],
    words: tuple[str, str] = ("recorded", "called"),
) -> list[str]:
    a, b = words
    rec: dict[str, list[str]] = {}
    cal: dict[str, list[str]] = {}
    for k, v in recorded:
        rec.setdefault(k, []).append(v)
    for k, v in called:
        cal.setdefault(k, []).append(v)
    out: list[str] = []
    for name in sorted(set(rec) | set(cal)):
        r, c = rec.get(name), cal.get(name)
        if r == c:
            continue
        if c is None:
            out.append(f"{label} {name!r}: {a} {_values(r)}, {_absent(b)}")
        elif r is None:
            out.append(f"{label} {name!r}: {_absent(a)}, {b} {_values(c)}")
        else:
            out.append(f"{label} {name!r}: {a} {_values(r)}, {b} {_values(c)}")
    return out


def _values(values: Sequence[str] | None) -> str:
    values = values or []
    return _short(values[0]) if len(values) == 1 else _short(list(values))


def _header_diff(
    recorded: dict[str, tuple[str, ...]],
    called: dict[str, tuple[str, ...]],
    words: tuple[str, str] = ("recorded", "called"),
) -> list[str]:
    pairs_r = [(k, v) for k, vs in recorded.items() for v in vs]
    pairs_c = [(k, v) for k, vs in called.items() for v in vs]
    return _pairs_diff("header", pairs_r, pairs_c, words)


def _bytes_diff(recorded: bytes, called: bytes) -> str:
    at = next((i for i, (a, b) in enumerate(zip(recorded, called)) if a != b), min(len(recorded), len(called)))
    return (
        f"body: recorded {len(recorded)} bytes, called {len(called)} bytes; first difference at byte {at}: "
        f"recorded {recorded[at : at + 24]!r}, called {called[at : at + 24]!r}"
    )


# --- match rules: parts of a request never compared ----------------------------------------------

_PATH_TOKEN = re.compile(
    r"\.(?P<name>[A-Za-z_][A-Za-z0-9_-]*|\*)|\[(?P<index>\d+|\*)\]|\[(?P<quoted>\"(?:[^\"\\]|\\.)*\")\]"
)


@dataclass(frozen=True)
class IgnoreRules:
    """What the matcher leaves out of every request before comparing (both the recorded and the live one).

    ``json_paths``: paths into a JSON request body, each a tuple of keys (str), indexes (int) or
    ``"*"`` (any key or index); ``headers``: header names (lower case); ``query``: query parameter
    names. Built by :func:`parse_ignore` from rules such as ``"$.metadata.request_time"``,
    ``"header:x-request-id"`` and ``"query:ts"``.
    """

    json_paths: tuple[tuple[str | int, ...], ...] = ()
    headers: frozenset[str] = frozenset()
    query: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.json_paths or self.headers or self.query)

    def apply(self, request: RequestData) -> RequestData:
        """``request`` without the ignored headers, query parameters and JSON body fields."""
        headers = request.headers
        if self.headers:
            headers = tuple((k, v) for k, v in headers if k.lower() not in self.headers)
        url = request.url
        if self.query and "?" in url:
            base, _, rest = url.partition("?")
            query, hash_mark, fragment = rest.partition("#")
            kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in self.query]
            url = base + (f"?{urlencode(kept)}" if kept else "") + (hash_mark + fragment)
        body = request.body
        if self.json_paths and body:
            kind, value = _parse_body(bytes(body), headers)
            if kind == "json":
                for path in self.json_paths:
                    _drop(value, path)
                body = _canonical_json(value)
        if headers is request.headers and url == request.url and body is request.body:
            return request
        return RequestData(request.method, url, headers, body)


def _drop(value: Any, path: tuple[str | int, ...]) -> None:
    """Delete what ``path`` names inside ``value`` (in place); a path that leads nowhere is no error."""
    if not path:
        return
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        names = list(value) if head == "*" else [head] if head in value else []
        for name in names:
            if rest:
                _drop(value[name], rest)
            else:
                del value[name]
    elif isinstance(value, list):
        if head == "*":
            indexes = list(range(len(value)))
        elif isinstance(head, int) and head < len(value):
            indexes = [head]
        else:
            indexes = []
        for index in reversed(indexes):
            if rest:
                _drop(value[index], rest)
            else:
                del value[index]


def _json_path(text: str) -> tuple[str | int, ...]:
    if not text.startswith("$"):
        raise ValueError(f"JSON path {text!r} must start with '$' (for example '$.metadata.request_time')")
    parts: list[str | int] = []
    at = 1
    while at < len(text):
        token = _PATH_TOKEN.match(text, at)
        if token is None:
            raise ValueError(
                f'JSON path {text!r} cannot be read at character {at + 1}; expected .name, [N], [*] or ["name"]'
            )
        name, index, quoted = token.group("name", "index", "quoted")
        if name is not None:
            parts.append(name)
        elif index is not None:
            parts.append("*" if index == "*" else int(index))
        else:
            parts.append(str(json.loads(quoted)))
        at = token.end()
    if not parts:
        raise ValueError(f"JSON path {text!r} names the whole body; name a field inside it")
    return tuple(parts)


def parse_ignore(rules: Iterable[str] | str | None) -> IgnoreRules:
    """Read match rules: ``"$.path.in[0].body"``, ``"header:NAME"``, ``"query:NAME"``.

    ValueError names the rule and says what was expected.
    """
    if rules is None:
        return IgnoreRules()
    if isinstance(rules, str):
        rules = [rules]
    paths: list[tuple[str | int, ...]] = []
    headers: set[str] = set()
    query: set[str] = set()
    for rule in rules:
        if not isinstance(rule, str) or not rule.strip():
            raise ValueError(f"match rule {rule!r} is not valid; expected '$.json.path', 'header:NAME' or 'query:NAME'")
        text = rule.strip()
        kind, colon, name = text.partition(":")
        if text.startswith("$"):
            paths.append(_json_path(text))
        elif colon and kind.lower() == "body" and name.strip().startswith("$"):
            paths.append(_json_path(name.strip()))
        elif colon and kind.lower() == "header" and name.strip():
            headers.add(name.strip().lower())
        elif colon and kind.lower() == "query" and name.strip():
            query.add(name.strip())
        else:
            raise ValueError(
                f"match rule {rule!r} is not valid; expected a JSON path into the request body "
                "('$.metadata.request_time'), 'header:NAME' or 'query:NAME'"
            )
    return IgnoreRules(tuple(paths), frozenset(headers), frozenset(query))


# The rules a Matcher built without explicit ones uses (the pytest plugin sets them per test,
# around the init() that builds the replay session).
_ignore_in_force: list[IgnoreRules] = [IgnoreRules()]


# A Python subprocess of a marked test gets its rules through the environment (a JSON list), as
# it gets the rest of its settings; the variable is the plugin's, not a user setting.
IGNORE_ENV = "_AGENTTRACE_MATCH_IGNORE"


def _rules_in_force() -> IgnoreRules:
    rules = _ignore_in_force[0]
    if rules:
        return rules
    text = os.environ.get(IGNORE_ENV, "")
    if not text:
        return rules
    try:
        return parse_ignore(json.loads(text))
    except ValueError as exc:
        from agenttrace._core.errors import warn_once

        warn_once("match-ignore-env", f"{IGNORE_ENV} is not a JSON list of match rules ({exc}); no field is ignored")
        return rules


def ignoring(rules: IgnoreRules) -> IgnoreRules:
    """Make ``rules`` the ones new matchers use; returns the rules they replace."""
    previous = _ignore_in_force[0]
    _ignore_in_force[0] = rules
    return previous


# --- field-level differences between two calls (agenttrace diff) ---------------------------------


def json_differences(a: Any, b: Any, words: tuple[str, str] = ("A", "B")) -> list[str]:
    """The JSON paths at which ``a`` and ``b`` differ, one line each (``body $.x: A 1, B 2``)."""
    return _json_diff(a, b, "$", words)


def call_differences(a: Exchange, b: Exchange, words: tuple[str, str] = ("A", "B")) -> list[str]:
    """What differs between two recorded calls, field by field, as the matcher compares requests.

    Method, URL and query parameters, significant request headers (not the volatile ones or
    secrets), request bodies (JSON as data, with the paths that differ), response status,
    significant response headers and bodies (a body a replay served from its recording
    compares by its digest), the recorded error, and a WebSocket connection's frames (how many
    each way, and the first that differs).
    """
    out: list[str] = []
    ra, rb = a.request, b.request
    if ra.method.upper() != rb.method.upper():
        out.append(f"method: {words[0]} {ra.method.upper()}, {words[1]} {rb.method.upper()}")
    ua, ub = normalize_url(ra.url), normalize_url(rb.url)
    base_a, _, query_a = ua.partition("?")
    base_b, _, query_b = ub.partition("?")
    if base_a != base_b:
        out.append(f"url: {words[0]} {base_a}, {words[1]} {base_b}")
    out.extend(
        _pairs_diff(
            "query param",
            parse_qsl(query_a, keep_blank_values=True),
            parse_qsl(query_b, keep_blank_values=True),
            words,
        )
    )
    out.extend(_header_diff(_significant_headers(ra.headers), _significant_headers(rb.headers), words))
    out.extend(_body_differences("", ra.body, ra.headers, rb.body, rb.headers, words))
    sa, sb = a.response, b.response
    if (sa is None) != (sb is None):
        status_a = "none" if sa is None else sa.status_code
        status_b = "none" if sb is None else sb.status_code
        out.append(f"response: {words[0]} {status_a}, {words[1]} {status_b}")
    elif sa is not None and sb is not None:
        if sa.status_code != sb.status_code:
            out.append(f"response status: {words[0]} {sa.status_code}, {words[1]} {sb.status_code}")
        # A call a replay served keeps only the status, size and digest of what it served (the
        # recording holds the rest): its response headers are not compared.
        served = "served_from" in a.extra or "served_from" in b.extra
        if not served:
            out.extend(
                line.replace("header ", "response header ", 1)
                for line in _header_diff(_significant_headers(sa.headers), _significant_headers(sb.headers), words)
            )
        if sa.body.sha256 != sb.body.sha256:
            if served or sa.body.truncated or sb.body.truncated:
                out.append(
                    f"response body: {words[0]} {sa.body.size} bytes (sha256 {sa.body.sha256[:12]}), "
                    f"{words[1]} {sb.body.size} bytes (sha256 {sb.body.sha256[:12]})"
                )
            else:
                out.extend(_body_differences("response ", sa.body.data, sa.headers, sb.body.data, sb.headers, words))
    ea, eb = a.error, b.error
    if (ea.type if ea else None) != (eb.type if eb else None):
        out.append(f"error: {words[0]} {ea.type if ea else 'none'}, {words[1]} {eb.type if eb else 'none'}")
    out.extend(_frame_differences(a, b, words))
    return out


def _frame_differences(a: Exchange, b: Exchange, words: tuple[str, str]) -> list[str]:
    """WebSocket frames: the counts each way, then the first frame that differs (JSON as data)."""
    out: list[str] = []
    for direction in ("sent", "received"):
        fa = [f for f in a.frames if f.direction == direction]
        fb = [f for f in b.frames if f.direction == direction]
        if len(fa) != len(fb):
            out.append(f"{direction} frames: {words[0]} {len(fa)}, {words[1]} {len(fb)}")
        for number, (x, y) in enumerate(zip(fa, fb), 1):
            if x.opcode != y.opcode:
                out.append(f"{direction} frame #{number}: {words[0]} {x.opcode}, {words[1]} {y.opcode}")
                break
            lines = body_differences(x.data, y.data, words) if x.data != y.data else []
            if lines:
                out.extend(f"{direction} frame #{number} {line}" for line in lines)
                break
    return out


def body_differences(a: bytes, b: bytes, words: tuple[str, str] = ("recorded", "called")) -> list[str]:
    """What differs between two bodies, as the matcher compares them: JSON as data (one line per
    path), form fields by name, anything else by its first differing byte; [] when equal as data."""
    return _body_differences("", a, (), b, (), words)


def _body_differences(  # noqa: PLR0917 - two (body, headers) pairs side by side
    label: str,
    a: bytes,
    a_headers: Sequence[tuple[str, str]],
    b: bytes,
    b_headers: Sequence[tuple[str, str]],
    words: tuple[str, str],
) -> list[str]:
    kind_a, value_a = _parse_body(bytes(a), a_headers)
    kind_b, value_b = _parse_body(bytes(b), b_headers)
    if kind_a == kind_b == "json":
        return [label + line for line in _json_diff(value_a, value_b, "$", words)]
    if kind_a == kind_b == "form":
        return [label + line for line in _pairs_diff("body field", value_a, value_b, words)]
    if bytes(a) == bytes(b):
        return []
    line = _bytes_diff(bytes(a), bytes(b)).replace("recorded", words[0]).replace("called", words[1])
    return [label + line]
