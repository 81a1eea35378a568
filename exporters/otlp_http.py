"""Sending serialized OTLP/HTTP protobuf requests, with the OTLP retry policy, on OpenTelemetry's public parts alone.

:class:`OTLPHTTPSender` reads the standard variables (``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``,
``_HEADERS``, ``_TIMEOUT``, ``_COMPRESSION``, ``_CERTIFICATE``, ``_CLIENT_KEY``,
``_CLIENT_CERTIFICATE``) as OpenTelemetry Python's OTLP/HTTP span exporter does, and posts with
``requests`` (which that exporter package depends on). It exists so that AgentTrace's exporters
need no private attribute of OpenTelemetry's exporter, whose insides change between releases
(its HTTP session in 1.40, an internal client object in 1.45): every supported release sends,
retries and reports the same way.

The retry policy is OTLP's: 429, 502, 503 and 504 and connection errors are retried with
exponential backoff (1, 2, 4, ... s, jitter +-20 %, at most 6 attempts), a ``Retry-After``
header is honoured, and nothing is tried again once the next attempt would start after the
timeout; every other answer is final.
"""

from __future__ import annotations

import gzip
import logging
import os
import random
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from opentelemetry.util.re import parse_env_headers

if TYPE_CHECKING:
    import requests

__all__ = ["DEFAULT_ENDPOINT", "OTLPHTTPSender", "SendResult", "reason_text", "retrying"]

DEFAULT_ENDPOINT = "http://localhost:4318/v1/traces"
_DEFAULT_TIMEOUT = 10.0
_MAX_ATTEMPTS = 6
_JITTER = 0.2
_RETRYABLE = frozenset({429, 502, 503, 504})
_COMPRESSIONS = ("none", "gzip", "deflate")

_log = logging.getLogger("agenttrace.exporters")
# Backoff jitter from a generator of our own: a draw from the global one would move the agent's
# random sequence, which replay restores and serves (docs/replay.md, "Entropy").
_jitter = random.Random(time.monotonic_ns() ^ os.getpid())  # noqa: S311 - jitter, not secrecy

# thread -> (what failed, monotonic time of the next try): the export lane gives up at exit at
# once when the receiver is known to be failing past the exit bound, and says what failed.
_waiting: dict[int, tuple[str, float]] = {}


def retrying(thread_ident: int) -> tuple[str, float] | None:
    """``(error, when the next try is due)`` for a send on ``thread_ident`` waiting to retry."""
    return _waiting.get(thread_ident)


@dataclass(frozen=True)
class SendResult:
    """The outcome of :meth:`OTLPHTTPSender.send`: success, or the last answer or error."""

    success: bool
    status_code: int | None = None
    reason: str | None = None
    error: BaseException | None = None
    gave_up: str | None = None  # the transient failure retried until the deadline, if that is why it stopped


def _env(name: str) -> str | None:
    """``OTEL_EXPORTER_OTLP_TRACES_<name>``, else ``OTEL_EXPORTER_OTLP_<name>``; None when neither is set."""
    for key in (f"OTEL_EXPORTER_OTLP_TRACES_{name}", f"OTEL_EXPORTER_OTLP_{name}"):
        value = os.environ.get(key, "").strip()
        if value:
            return value
    return None


def _endpoint_from_env() -> str:
    traces = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if traces:
        return traces  # the signal's own endpoint is used as given
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if not base:
        return DEFAULT_ENDPOINT
    return base + ("v1/traces" if base.endswith("/") else "/v1/traces")


def _timeout_from_env() -> float:
    text = _env("TIMEOUT")
    if text is None:
        return _DEFAULT_TIMEOUT
    try:
        return float(text)
    except ValueError:
        _log.warning("OTEL_EXPORTER_OTLP_TIMEOUT %r is not a number of seconds; using %g", text, _DEFAULT_TIMEOUT)
        return _DEFAULT_TIMEOUT


def _compression_name(compression: Any) -> str:
    """``none``, ``gzip`` or ``deflate``, from the argument (a ``Compression``, a string) or the variables."""
    if compression is None:
        text = (_env("COMPRESSION") or "none").lower()
    else:
        text = str(getattr(compression, "value", compression)).lower()
    if text not in _COMPRESSIONS:
        _log.warning("OTLP compression %r is not one of %s; sending uncompressed", text, ", ".join(_COMPRESSIONS))
        return "none"
    return text


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


class OTLPHTTPSender:
    """Posts serialized ``ExportTraceServiceRequest`` bytes to one OTLP/HTTP endpoint, retrying as OTLP says.

    Arguments left as None come from the ``OTEL_EXPORTER_OTLP_*`` variables, as for
    OpenTelemetry's ``OTLPSpanExporter`` (whose arguments these are).
    """

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        certificate_file: str | None = None,
        client_key_file: str | None = None,
        client_certificate_file: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        compression: Any = None,
        session: requests.Session | None = None,
    ) -> None:
        import requests

        from agenttrace._version import __version__

        self.endpoint = endpoint or _endpoint_from_env()
        self.timeout = float(timeout) if timeout is not None else _timeout_from_env()
        self.compression = _compression_name(compression)
        env_headers = _env("HEADERS")
        extra = dict(headers) if headers is not None else parse_env_headers(env_headers or "", liberal=True)
        self.headers = {
            "Content-Type": "application/x-protobuf",
            "User-Agent": f"agenttrace/{__version__}",
            **extra,
        }
        if self.compression != "none":
            self.headers["Content-Encoding"] = self.compression
        verify = certificate_file or _env("CERTIFICATE")
        self._verify: str | bool = verify if verify else True
        client_cert = client_certificate_file or _env("CLIENT_CERTIFICATE")
        client_key = client_key_file or _env("CLIENT_KEY")
        self._cert: str | tuple[str, str] | None = client_cert
        if client_cert and client_key:
            self._cert = (client_cert, client_key)
        self._session = session if session is not None else requests.Session()
        self._stopped = threading.Event()

    def _encode(self, data: bytes) -> bytes:
        if self.compression == "gzip":
            return gzip.compress(data)
        if self.compression == "deflate":
            return zlib.compress(data)
        return data

    def send(self, data: bytes) -> SendResult:
        """Post ``data``; retried while the failure may pass and the timeout allows. Never raises."""
        import requests

        body = self._encode(data)
        deadline = time.monotonic() + self.timeout
        ident = threading.get_ident()
        last: SendResult = SendResult(False)
        try:
            for attempt in range(_MAX_ATTEMPTS):
                backoff = 2**attempt * _jitter.uniform(1 - _JITTER, 1 + _JITTER)
                remaining = deadline - time.monotonic()
                try:
                    answer = self._session.post(
                        self.endpoint,
                        data=body,
                        headers=self.headers,
                        verify=self._verify,
                        cert=self._cert,
                        timeout=max(remaining, 0.001),
                    )
                except requests.exceptions.ConnectionError as error:
                    # Refused, reset, DNS, a connect timeout: may pass. A read timeout is not one of
                    # these (requests' ReadTimeout): it used up the deadline, so it is final.
                    last = SendResult(False, error=error)
                    what = _error_text(error)
                except Exception as error:  # noqa: BLE001 - a bad URL or TLS file: final, said by the caller
                    return SendResult(False, error=error)
                else:
                    if 200 <= answer.status_code < 400:
                        return SendResult(True, answer.status_code, answer.reason)
                    last = SendResult(False, answer.status_code, answer.reason)
                    if answer.status_code not in _RETRYABLE:
                        return last
                    what = f"HTTP {answer.status_code}{' ' + answer.reason if answer.reason else ''}"
                    wait = _retry_after(answer.headers.get("Retry-After"))
                    if wait is not None:
                        backoff = wait
                _waiting[ident] = (what, time.monotonic() + backoff)
                if attempt + 1 == _MAX_ATTEMPTS or time.monotonic() + backoff > deadline or self._stopped.is_set():
                    return SendResult(False, last.status_code, last.reason, last.error, gave_up=what)
                _log.debug("transient error %s sending to %s; retrying in %.2f s", what, self.endpoint, backoff)
                if self._stopped.wait(backoff):
                    return SendResult(False, last.status_code, last.reason, last.error, gave_up=what)
            return last
        finally:
            _waiting.pop(ident, None)

    def close(self) -> None:
        """Stop retrying (a send waiting for its next try returns) and close the connections."""
        self._stopped.set()
        self._session.close()


def _error_text(error: BaseException) -> str:
    text = str(error)
    name = type(error).__name__
    if "timed out" in text.lower() or "timeout" in name.lower():
        return f"timed out ({name})"
    if "refused" in text.lower():
        return f"connection refused ({name})"
    return f"{name}: {text[:200]}"


def reason_text(status_code: int | None, reason: str | None, error: BaseException | None) -> str:
    """What failed, for messages: ``HTTP 503 Service Unavailable``, ``connection refused (...)``, ..."""
    if status_code is not None:
        return f"HTTP {status_code}{' ' + reason if reason else ''}"
    if error is not None:
        return _error_text(error)
    return "gave up: export deadline, retries or shutdown reached"
