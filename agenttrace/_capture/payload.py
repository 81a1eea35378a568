"""Payload hygiene: body encoding and limits, header redaction, and ``step(filter=...)`` on bodies.

Everything an instrumentor records passes through here before it reaches a span, so what an
exporter can ever see is decided in this one module:

* **Bodies** are kept as text when they are valid UTF-8, else base64; with their full size and
  SHA-256 even when cut at ``max_body_bytes`` (then marked truncated).
* **Headers** whose name is in :data:`DEFAULT_REDACTED_HEADERS`, or contains one of
  :data:`DEFAULT_REDACTED_WORDS`, or matches a glob of the ``redact_headers`` setting
  (``AGENTTRACE_REDACT_HEADERS="x-tenant-id,x-internal-*"``), are replaced by
  ``[REDACTED sha256:<8 hex>]``: the digest lets two calls with the same secret compare equal,
  the value itself never leaves the process. The same names decide which query parameters of a
  URL are secret, wherever the URL is written: ``url.full``, and any text recorded from a call
  (an exception's message and stack trace, a result: :func:`redact_text`).
* **Body fields** named in :data:`DEFAULT_REDACTED_FIELDS` (OAuth's ``client_secret``,
  ``refresh_token``...) in JSON and form bodies are replaced the same way (:func:`redact_fields`).
* A ``redact_headers`` entry starting with ``!`` (``"!x-ratelimit-*"``) relaxes the rules: a
  header, query parameter or body field of that name (or glob) is recorded in clear.
* **Step filters** apply to JSON bodies (field names and paths), to text bodies and URLs
  (patterns), to server-sent-event ``data:`` lines, and to gzip/deflate bodies (decoded,
  filtered, encoded again). A compressed body in an encoding that cannot be filtered is
  replaced whole by ``[FILTERED]`` rather than leaked.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import importlib
import json
import re
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

from agenttrace._capture.filter import FILTERED, Filter
from agenttrace._capture.model import Body, RequestData
from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.BODY_FILTERED

__all__ = [
    "BODY_FILTERED",
    "DEFAULT_REDACTED_FIELDS",
    "DEFAULT_REDACTED_HEADERS",
    "DEFAULT_REDACTED_WORDS",
    "MAX_FIELD_SCAN_BYTES",
    "RELAX_PREFIX",
    "Redactor",
    "decoded_body",
    "filter_body",
    "filter_chunks",
    "filter_url",
    "make_body",
    "redact_chunks",
    "redact_fields",
    "redact_headers",
    "redact_request",
    "redact_text",
    "redactor",
    "set_extra_redacted_headers",
]

BODY_FILTERED = S.BODY_FILTERED

# Header and query parameter names, exact (case-insensitive). ``sig`` is the signature of an Azure
# SAS URL; the AWS and Google names are also caught by the words below, and listed for the docs.
DEFAULT_REDACTED_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "sig",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
    }
)
# A header or query parameter whose name contains one of these is secret (X-Signature,
# X-Hub-Signature-256, X-Session-Token, client_secret, ...).
DEFAULT_REDACTED_WORDS = ("key", "token", "secret", "password", "auth", "signature", "credential")
# JSON and form body fields (exact names, at any depth) that OAuth flows and cloud SDKs send or
# receive in clear.
DEFAULT_REDACTED_FIELDS = frozenset(
    {"access_token", "refresh_token", "id_token", "client_secret", "client_assertion", "password"}
)
# A redact_headers entry starting with this relaxes the rules for that name or glob.
RELAX_PREFIX = "!"
# JSON bodies larger than this (before or after decoding) are not searched for the default
# fields: a token endpoint's answer or a login request is small, while an LLM request can be
# megabytes, and every search costs about a nanosecond per byte on the agent's thread. Form
# bodies, the OAuth token request's format, are always searched.
MAX_FIELD_SCAN_BYTES = 16 * 1024


def placeholder(value: str) -> str:
    """The stand-in recorded for a secret: equal secrets give equal placeholders."""
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"[REDACTED sha256:{digest}]"


class Redactor:
    """Decides which header, query parameter and body field names are secret.

    Results are cached per name (headers repeat). ``allowed`` (names or globs) wins over every
    other rule: it is how a user relaxes the defaults.
    """

    __slots__ = ("_cache", "allowed", "fields", "form_probes", "globs", "json_probes", "names", "urls", "words")

    def __init__(
        self,
        names: Iterable[str] = DEFAULT_REDACTED_HEADERS,
        words: Iterable[str] = DEFAULT_REDACTED_WORDS,
        globs: Iterable[str] = (),
        fields: Iterable[str] = DEFAULT_REDACTED_FIELDS,
        allowed: Iterable[str] = (),
    ) -> None:
        self.names = frozenset(n.lower() for n in names)
        self.words = tuple(w.lower() for w in words)
        self.globs = tuple(g.lower() for g in globs)
        self.allowed = tuple(a.lower() for a in allowed)
        self.fields = frozenset(f.lower() for f in fields if not self._allowed(f.lower()))
        # What a JSON or a form body must contain for a field rule to possibly hit: the cheap test
        # every body gets. A name is followed by '"' in JSON and by '=' in a form; names with a
        # common part share one search (``_token"`` for three of them, not ``max_tokens``).
        self.json_probes = _probes(self.fields, '"')
        self.form_probes = _probes(self.fields, "=")
        self._cache: dict[str, bool] = {}
        # URL -> as recorded without step rules (filter_url's cache: it depends on these rules).
        self.urls: dict[str, str] = {}

    def _allowed(self, lower: str) -> bool:
        return any(lower == a or fnmatch.fnmatchcase(lower, a) for a in self.allowed)

    def is_secret(self, name: str) -> bool:
        """True when the header or query parameter ``name`` must never be recorded in clear."""
        hit = self._cache.get(name)
        if hit is None:
            lower = name.lower()
            hit = (
                lower in self.names
                or any(w in lower for w in self.words)
                or any(fnmatch.fnmatchcase(lower, g) for g in self.globs)
            ) and not (self.allowed and self._allowed(lower))
            if len(self._cache) < 4096:  # bounded: header names come from remote servers too
                self._cache[name] = hit
        return hit

    def headers(self, headers: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
        """``headers`` with every secret value replaced by its placeholder; order and repeats kept."""
        if type(headers) is tuple:
            # The usual case: every name already known and none secret. The tuple is then kept as
            # it is (nothing to replace), without a method call and a new pair per header.
            known = self._cache.get
            for pair in headers:
                if type(pair) is not tuple or len(pair) != 2 or known(pair[0]) is not False:
                    break
            else:
                return headers
        return tuple((k, placeholder(v)) if self.is_secret(k) else (k, v) for k, v in headers)


def _probes(fields: Iterable[str], end: str) -> tuple[bytes, ...]:
    """The substrings to look for in a body, one of which occurs when a field of ``fields`` does."""
    probes: set[bytes] = set()
    for name in fields:
        if name.endswith("_token"):
            probes.add(("_token" + end).encode())
        elif name.startswith("client_"):
            probes.add(b"client_")
        else:
            probes.add((name + end).encode())
    return tuple(sorted(probes))


_redactor = Redactor()


def redactor() -> Redactor:
    """The redactor in force (defaults plus the ``redact_headers`` setting)."""
    return _redactor


def set_extra_redacted_headers(entries: Iterable[str]) -> None:
    """Add header names (exact, case-insensitive) or globs (``x-internal-*``) to the defaults.

    An entry starting with ``!`` (``!x-ratelimit-*``, ``!password``) is the opposite: headers,
    query parameters and body fields of that name or glob are recorded in clear, whatever the
    defaults say.
    """
    global _redactor  # noqa: PLW0603 - one process-wide rule set, swapped atomically
    names: set[str] = set(DEFAULT_REDACTED_HEADERS)
    globs: list[str] = []
    allowed: list[str] = []
    for entry in entries:
        text = entry.strip().lower()
        if text.startswith(RELAX_PREFIX):
            text = text[len(RELAX_PREFIX) :].strip()
            if text:
                allowed.append(text)
            continue
        if not text:
            continue
        if any(c in text for c in "*?["):
            globs.append(text)
        else:
            names.add(text)
    _redactor = Redactor(names, DEFAULT_REDACTED_WORDS, globs, DEFAULT_REDACTED_FIELDS, allowed)


def redact_headers(headers: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """``headers`` with secrets replaced by the current redactor."""
    return _redactor.headers(headers)


# --- bodies -----------------------------------------------------------------------------------


def make_body(data: bytes, max_bytes: int) -> Body:
    """A :class:`Body` for ``data``, cut at ``max_bytes`` with its full size and digest kept."""
    size = len(data)
    digest = hashlib.sha256(data).hexdigest()
    if size > max_bytes:
        return Body(data=data[:max_bytes], size=size, sha256=digest, truncated=True)
    return Body(data=data, size=size, sha256=digest)


def _header(headers: Sequence[tuple[str, str]], name: str) -> str:
    for key, value in headers:
        if key.lower() == name:
            return value.lower()
    return ""


def _filter_json_text(text: str, rules: Filter) -> str | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    # JSON in the body's strings is looked into only when a rule's field name is in the body.
    filtered = rules.apply(data, strings=rules.may_hit(text))
    if filtered != data:
        # Re-serialised only when a field was hit: untouched bodies keep their exact bytes.
        text = json.dumps(filtered, ensure_ascii=False, separators=(",", ":"))
    return rules.text(text)


def _filter_text(text: str, rules: Filter, content_type: str) -> str:
    stripped = text.lstrip()
    if stripped[:1] in ("{", "[") or "json" in content_type:
        filtered = _filter_json_text(text, rules)
        if filtered is not None:
            return filtered
    if "event-stream" in content_type or stripped.startswith(("data:", "event:")):
        return _filter_sse(text, rules)
    if "x-www-form-urlencoded" in content_type:
        return _filter_form(text, rules)
    return rules.text(text)


def _filter_sse(text: str, rules: Filter) -> str:
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("data:"):
            payload = line[5:].lstrip(" ")
            filtered = _filter_json_text(payload, rules) if payload[:1] in ("{", "[") else None
            lines[i] = "data: " + filtered if filtered is not None else rules.text(line)
        else:
            lines[i] = rules.text(line)
    return "\n".join(lines)


def _filter_form(text: str, rules: Filter) -> str:
    from urllib.parse import parse_qsl, urlencode

    pairs = parse_qsl(text, keep_blank_values=True)
    out = [(k, FILTERED if rules.field_hit((k,)) else rules.text(v)) for k, v in pairs]
    return urlencode(out)


def _brotli() -> Any:
    """The brotli module httpx and urllib3 decode ``br`` with (``brotli`` or ``brotlicffi``), or None."""
    for name in ("brotli", "brotlicffi"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def _zstd() -> Any:
    """A zstd codec with ``decompress``/``compress`` of whole multi-frame data, or None.

    Python 3.14's ``compression.zstd`` and its ``backports.zstd`` (what urllib3 decodes with),
    else ``zstandard`` (what httpx decodes with), read every frame, as the clients do: a secret
    in a second frame must not be missed.
    """
    for name in ("compression.zstd", "backports.zstd"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    try:
        zstandard = importlib.import_module("zstandard")
    except ImportError:
        return None
    return _Zstandard(zstandard)


class _Zstandard:
    """``zstandard`` behind the ``compression.zstd`` calls used here, reading every frame."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def decompress(self, data: bytes) -> bytes:
        out: list[bytes] = []
        while data:
            reader = self._module.ZstdDecompressor().decompressobj()
            out.append(reader.decompress(data))
            if not reader.eof:
                raise ValueError("truncated zstd frame")
            data = reader.unused_data
        return b"".join(out)

    def compress(self, data: bytes) -> bytes:
        return bytes(self._module.ZstdCompressor().compress(data))


def decoded_body(data: bytes, headers: Sequence[tuple[str, str]]) -> bytes:
    """``data`` with its ``Content-Encoding`` undone (as the client gives it to the agent); as it is if it cannot be."""
    encoding = _header(headers, "content-encoding").strip()
    if not encoding or encoding == "identity":
        return data
    decoded = _decompress(data, encoding)
    return data if decoded is None else decoded


def _decompress(data: bytes, encoding: str) -> bytes | None:
    """``data`` decoded, or None when it cannot be (unknown encoding, no codec, bad bytes).

    ``br`` and ``zstd`` need the module the client itself decodes them with (httpx and urllib3
    only ask for them when it is installed); without it such a body cannot be inspected.
    """
    try:
        if encoding in ("gzip", "x-gzip"):
            return gzip.decompress(data)
        if encoding == "deflate":
            try:
                return zlib.decompress(data)
            except zlib.error:
                return zlib.decompress(data, -zlib.MAX_WBITS)
        if encoding == "br":
            brotli = _brotli()
            return None if brotli is None else bytes(brotli.decompress(data))
        if encoding == "zstd":
            zstd = _zstd()
            return None if zstd is None else bytes(zstd.decompress(data))
    except Exception:  # noqa: BLE001 - zlib.error, brotli.error, ZstdError...: not decodable
        return None
    return None


def _compress(data: bytes, encoding: str) -> bytes:
    if encoding == "deflate":
        return zlib.compress(data)
    if encoding == "br":
        return bytes(_brotli().compress(data))
    if encoding == "zstd":
        return bytes(_zstd().compress(data))
    return gzip.compress(data, mtime=0)


def filter_body(data: bytes, headers: Sequence[tuple[str, str]], rules: Filter) -> tuple[bytes, bool]:
    """``(bytes to record, changed)`` for a whole body under ``rules``; never raises."""
    if not rules or not data:
        return data, False
    encoding = _header(headers, "content-encoding").strip()
    content_type = _header(headers, "content-type")
    try:
        plain = data
        if encoding and encoding != "identity":
            decoded = _decompress(data, encoding)
            if decoded is None:
                return FILTERED.encode(), True
            plain = decoded
        try:
            text = plain.decode("utf-8")
        except UnicodeDecodeError:
            return data, False  # binary: field and pattern rules do not apply to it
        filtered = _filter_text(text, rules, content_type)
        if filtered == text:
            return data, False
        out = filtered.encode("utf-8")
        if encoding and encoding != "identity":
            out = _compress(out, encoding)
        return out, True
    except Exception:  # noqa: BLE001 - a user rule gone wrong must not leak or break: drop the body
        return FILTERED.encode(), True


def filter_chunks(
    chunks: Sequence[bytes], headers: Sequence[tuple[str, str]], rules: Filter
) -> tuple[list[bytes], bool]:
    """Stream chunks under ``rules``, each filtered on its own so the boundaries stay meaningful.

    An event split across two chunks is matched by patterns only (its JSON cannot be parsed
    from one half); docs/instrumentors.md states this limit.
    """
    if not rules:
        return list(chunks), False
    encoding = _header(headers, "content-encoding").strip()
    if encoding and encoding != "identity":
        whole, changed = filter_body(b"".join(chunks), headers, rules)
        return ([whole] if whole else []), changed
    out: list[bytes] = []
    changed = False
    for chunk in chunks:
        new, hit = filter_body(chunk, headers, rules)
        out.append(new)
        changed = changed or hit
    return out, changed


def filter_url(url: str, rules: Filter) -> str:
    """``url`` as recorded: credentials and secret-named query values redacted, ``rules`` applied."""
    if not rules:
        if "?" not in url and "@" not in url:
            return url
        # Without step rules the result depends on the URL and the redactor only, and an agent
        # calls the same few URLs again and again: each is worked out once per redactor (bounded).
        redactor = _redactor
        known = redactor.urls.get(url)
        if known is None:
            known = _filter_url(url, rules, redactor)
            if len(redactor.urls) < 1024:
                redactor.urls[url] = known
        return known
    return _filter_url(url, rules, _redactor)


def _filter_url(url: str, rules: Filter, redactor: Redactor) -> str:
    base, sep, query = url.partition("?")
    scheme, slashes, rest = base.partition("://")
    authority, slash, path = rest.partition("/")
    if slashes and "@" in authority:
        # Credentials in the URL are secrets like an Authorization header (semconv asks the same).
        # The host follows the last "@": a password may hold one unencoded, as clients accept.
        userinfo, _, host = authority.rpartition("@")
        base = f"{scheme}://{placeholder(userinfo)}@{host}{slash}{path}"
    if sep and query and not rules and "%" not in query and "+" not in query:
        # No escapes: parse_qsl's names are the raw ones. When none is secret the query is kept
        # as it is, as below, without parsing it.
        secret = redactor.is_secret
        if not any(secret(piece.partition("=")[0]) for piece in query.split("&") if piece):
            return base + sep + query
    if sep and query:
        from urllib.parse import parse_qsl, urlencode

        pairs = parse_qsl(query, keep_blank_values=True)
        hits = [redactor.is_secret(k) or (bool(rules) and rules.field_hit((k,))) for k, _ in pairs]
        if any(hits):
            query = urlencode(
                [
                    (k, (FILTERED if rules and rules.field_hit((k,)) else placeholder(v)) if hit else v)
                    for (k, v), hit in zip(pairs, hits)
                ]
            )
    out = base + sep + query
    return rules.text(out) if rules else out


def redact_request(request: RequestData, rules: Filter) -> tuple[RequestData, bool]:
    """The request as it is recorded: secrets in headers, URL and body fields redacted, ``rules``
    on URL and body.

    Replay applies this to a live request before comparing it with a recording, so both sides
    are seen through the same filter.
    """
    headers = redact_headers(request.headers)
    body, redacted = redact_fields(request.body, request.headers)
    if not rules:
        url = filter_url(request.url, rules)
        if headers is request.headers and url == request.url and not redacted:
            return request, False  # nothing to redact (the usual case): no second RequestData
        return RequestData(request.method, url, headers, body), redacted
    body, changed = filter_body(body, request.headers, rules)
    return RequestData(request.method, filter_url(request.url, rules), headers, body), changed or redacted


# --- secret fields of bodies (the defaults, whatever the filter) -------------------------------


def redact_fields(data: bytes, headers: Sequence[tuple[str, str]]) -> tuple[bytes, bool]:
    """``(bytes to record, changed)``: JSON and form fields named in the redactor's field rules
    (:data:`DEFAULT_REDACTED_FIELDS`) replaced by their placeholder; never raises.

    Only a body whose content type is JSON or a form (or, without one, that looks like JSON) is
    looked at, and parsed only when a rule's name occurs in it. Names are matched exactly, in
    lowercase as OAuth and the cloud SDKs write them (``Password`` is not ``password``). The
    cost for the usual body is a few substring searches; a JSON body over
    :data:`MAX_FIELD_SCAN_BYTES` is not searched. A compressed body is decoded when its codec is
    installed; one that cannot be decoded is kept as it is (these are defaults: a body is not
    dropped for them).
    """
    redactor = _redactor
    if not redactor.fields or not data:
        return data, False
    content_type = encoding = ""
    for key, value in headers:  # both headers in one pass: this runs for every call
        lower = key.lower()
        if lower == "content-type" and not content_type:
            content_type = value.lower()
        elif lower == "content-encoding" and not encoding:
            encoding = value.lower().strip()
    form = "x-www-form-urlencoded" in content_type
    if not form and (
        len(data) > MAX_FIELD_SCAN_BYTES
        or ("json" not in content_type and (content_type or data[:1] not in (b"{", b"[")))
    ):
        return data, False
    try:
        plain = data
        if encoding and encoding != "identity":
            decoded = _decompress(data, encoding)
            if decoded is None:
                return data, False
            plain = decoded
            if not form and len(plain) > MAX_FIELD_SCAN_BYTES:
                return data, False
        for probe in redactor.form_probes if form else redactor.json_probes:
            if probe in plain:
                break
        else:
            return data, False
        text = plain.decode("utf-8")
        redacted = _redact_form(text) if form else _redact_json(text)
        if redacted is None:
            return data, False
        out = redacted.encode("utf-8")
        if encoding and encoding != "identity":
            out = _compress(out, encoding)
        return out, True
    except Exception:  # noqa: BLE001 - not text, not JSON, a codec error: recorded as it came
        return data, False


def _redact_form(text: str) -> str | None:
    from urllib.parse import parse_qsl, urlencode

    fields = _redactor.fields
    pairs = parse_qsl(text, keep_blank_values=True)
    if not any(k in fields for k, _ in pairs):
        return None
    return urlencode([(k, placeholder(v)) if k in fields else (k, v) for k, v in pairs])


def _redact_json(text: str) -> str | None:
    data = json.loads(text)
    redacted = _redact_value(data, _redactor.fields)
    if redacted is data:
        return None
    return json.dumps(redacted, ensure_ascii=False, separators=(",", ":"))


def _redact_value(data: Any, fields: frozenset[str]) -> Any:
    """``data`` with secret fields replaced; the same object when nothing was (no copy then)."""
    if isinstance(data, dict):
        out: dict[str, Any] | None = None
        for key, value in data.items():
            if key in fields and value is not None:
                new: Any = placeholder(value if isinstance(value, str) else json.dumps(value))
            else:
                new = _redact_value(value, fields)
            if new is not value:
                if out is None:
                    out = dict(data)
                out[key] = new
        return data if out is None else out
    if isinstance(data, list):
        items = [_redact_value(v, fields) for v in data]
        return data if all(a is b for a, b in zip(items, data)) else items
    return data


def redact_chunks(
    chunks: Sequence[bytes], headers: Sequence[tuple[str, str]], rules: Filter
) -> tuple[Sequence[bytes], bool]:
    """A response body's chunks as recorded: secret fields redacted, then ``rules`` applied.

    A body whose fields were redacted is recorded as one chunk (its boundaries no longer fit it).
    """
    if chunks and _redactor.fields:
        whole = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        redacted, hit = redact_fields(whole, headers)
        if hit:
            out, _ = filter_chunks([redacted], headers, rules)
            return out, True
    if not rules:
        return chunks, False
    return filter_chunks(chunks, headers, rules)


# --- URLs inside text ------------------------------------------------------------------------

# A query parameter (after ``?`` or ``&``) and its value, up to what ends a URL in prose, a
# repr or JSON text (a quote, a space, a backslash escape, a closing bracket).
_QUERY_PAIR = re.compile(r"([?&])([^=&#?\s'\"<>\\/]+)=([^&#\s'\"<>\\)\]},]*)")
# The credentials of a URL (``scheme://user:pass@host``).
_USERINFO = re.compile(r"://([^/?#\s'\"<>\\]+)@")  # greedy: up to the authority's last "@"


def redact_text(text: str) -> str:
    """``text`` with every URL's credentials and secret query values replaced by placeholders.

    For what the SDK records from a call as text: an exception's message and stack trace (a
    client puts the URL there: ``raise_for_status()``, ``Max retries exceeded with url``), a
    result. The rules are those of ``url.full``, so a secret there is a secret here too, and
    its placeholder is the same.
    """
    if "=" in text:
        text = _QUERY_PAIR.sub(_query_pair, text)
    if "@" in text and "://" in text:
        text = _USERINFO.sub(_userinfo, text)
    return text


def _query_pair(found: re.Match[str]) -> str:
    from urllib.parse import quote_plus, unquote_plus

    name = found.group(2)
    value = unquote_plus(found.group(3))
    if value.startswith(_PLACEHOLDER_START) or not _redactor.is_secret(unquote_plus(name)):
        return found.group(0)  # not secret, or already redacted (text written from a recording)
    return f"{found.group(1)}{name}={quote_plus(placeholder(value))}"


def _userinfo(found: re.Match[str]) -> str:
    userinfo = found.group(1)
    if userinfo.startswith(_PLACEHOLDER_START):
        return found.group(0)
    return f"://{placeholder(userinfo)}@"


_PLACEHOLDER_START = "[REDACTED sha256:"


_HEADERS_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_headers_json_cache: dict[tuple[tuple[str, str], ...], str] = {}


def jsonable_headers(headers: Sequence[tuple[str, str]]) -> str:
    """Headers as the JSON list of ``[name, value]`` pairs the span events carry."""
    key = headers if type(headers) is tuple else None
    if key is not None:
        # A client sends the same (already redacted) headers call after call: encode each list once.
        try:
            text = _headers_json_cache.get(key)
        except TypeError:  # pairs that are not hashable
            key, text = None, None
        if text is not None:
            return text
    text = _HEADERS_JSON.encode([list(h) for h in headers])
    if key is not None and len(_headers_json_cache) < 1024:
        _headers_json_cache[key] = text
    return text


def headers_from_json(text: Any) -> tuple[tuple[str, str], ...]:
    """Inverse of :func:`jsonable_headers`; tolerant of a missing attribute."""
    if not text:
        return ()
    return tuple((str(k), str(v)) for k, v in json.loads(text))
