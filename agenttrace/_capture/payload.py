"""Payload hygiene: body encoding and limits, header redaction, and ``step(filter=...)`` on bodies.

Everything an instrumentor records passes through here before it reaches a span, so what an
exporter can ever see is decided in this one module:

* **Bodies** are kept as text when they are valid UTF-8, else base64; with their full size and
  SHA-256 even when cut at ``max_body_bytes`` (then marked truncated).
* **Headers** whose name is in :data:`DEFAULT_REDACTED_HEADERS`, or contains one of
  :data:`DEFAULT_REDACTED_WORDS`, or matches a glob of the ``redact_headers`` setting
  (``AGENTTRACE_REDACT_HEADERS="x-tenant-id,x-internal-*"``), are replaced by
  ``[REDACTED sha256:<8 hex>]``: the digest lets two calls with the same secret compare equal,
  the value itself never leaves the process.
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
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

from agenttrace._capture.filter import FILTERED, Filter
from agenttrace._capture.model import Body, RequestData
from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.BODY_FILTERED

__all__ = [
    "BODY_FILTERED",
    "DEFAULT_REDACTED_HEADERS",
    "DEFAULT_REDACTED_WORDS",
    "Redactor",
    "filter_body",
    "filter_chunks",
    "filter_url",
    "make_body",
    "redact_headers",
    "redact_request",
    "redactor",
    "set_extra_redacted_headers",
]

BODY_FILTERED = S.BODY_FILTERED

DEFAULT_REDACTED_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key"}
)
DEFAULT_REDACTED_WORDS = ("key", "token", "secret", "password", "auth")


def placeholder(value: str) -> str:
    """The stand-in recorded for a secret: equal secrets give equal placeholders."""
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"[REDACTED sha256:{digest}]"


class Redactor:
    """Decides which header names are secret; results are cached per name (headers repeat)."""

    __slots__ = ("_cache", "globs", "names", "urls", "words")

    def __init__(
        self,
        names: Iterable[str] = DEFAULT_REDACTED_HEADERS,
        words: Iterable[str] = DEFAULT_REDACTED_WORDS,
        globs: Iterable[str] = (),
    ) -> None:
        self.names = frozenset(n.lower() for n in names)
        self.words = tuple(w.lower() for w in words)
        self.globs = tuple(g.lower() for g in globs)
        self._cache: dict[str, bool] = {}
        # URL -> as recorded without step rules (filter_url's cache: it depends on these rules).
        self.urls: dict[str, str] = {}

    def is_secret(self, name: str) -> bool:
        """True when the header ``name`` must never be recorded in clear."""
        hit = self._cache.get(name)
        if hit is None:
            lower = name.lower()
            hit = (
                lower in self.names
                or any(w in lower for w in self.words)
                or any(fnmatch.fnmatchcase(lower, g) for g in self.globs)
            )
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


_redactor = Redactor()


def redactor() -> Redactor:
    """The redactor in force (defaults plus the ``redact_headers`` setting)."""
    return _redactor


def set_extra_redacted_headers(entries: Iterable[str]) -> None:
    """Add header names (exact, case-insensitive) or globs (``x-internal-*``) to the defaults."""
    global _redactor  # noqa: PLW0603 - one process-wide rule set, swapped atomically
    names: set[str] = set(DEFAULT_REDACTED_HEADERS)
    globs: list[str] = []
    for entry in entries:
        text = entry.strip().lower()
        if not text:
            continue
        if any(c in text for c in "*?["):
            globs.append(text)
        else:
            names.add(text)
    _redactor = Redactor(names, DEFAULT_REDACTED_WORDS, globs)


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
    if slashes and "@" in rest.split("/", 1)[0]:
        # Credentials in the URL are secrets like an Authorization header (semconv asks the same).
        userinfo, _, hostpart = rest.partition("@")
        base = f"{scheme}://{placeholder(userinfo)}@{hostpart}"
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
    """The request as it is recorded: secrets in headers redacted, ``rules`` on URL and body.

    Replay applies this to a live request before comparing it with a recording, so both sides
    are seen through the same filter.
    """
    headers = redact_headers(request.headers)
    if not rules:
        url = filter_url(request.url, rules)
        if headers is request.headers and url == request.url:
            return request, False  # nothing to redact (the usual case): no second RequestData
        return RequestData(request.method, url, headers, request.body), False
    body, changed = filter_body(request.body, request.headers, rules)
    return RequestData(request.method, filter_url(request.url, rules), headers, body), changed


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
