"""Secrets never leave in clear: URL secrets in every recorded text, and the default rules.

Each test runs a real client against a loopback server inside a run and then reads the whole
trace file as text: the secret must occur nowhere in it, and its placeholder must be where the
secret was.
"""

from __future__ import annotations

import gzip
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

import agenttrace
from agenttrace._capture import payload
from agenttrace._capture import record as _record
from agenttrace._capture.model import RequestData
from agenttrace._core import errors as _warn
from tests.recording import Recorder, read_trace, replaying

# Made at run time: a run records its source file (agenttrace.run.source), which must not be
# what holds a secret the checks look for.
QUERY, ACCESS, REFRESH, CLIENT, PASSWORD, SIG = (f"s{uuid.uuid4().hex[:12]}" for _ in range(6))


class _Handler(BaseHTTPRequestHandler):
    """``/token`` answers like an OAuth token endpoint; ``/missing`` is a 404; else a fixed JSON."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        extra: dict[str, str] = {"X-Ratelimit-Remaining-Tokens": "99"}
        if self.path.startswith("/missing"):
            status, body = 404, b'{"error": "not found"}'
        elif self.path.startswith("/token"):
            status = 200
            body = json.dumps({"access_token": ACCESS, "refresh_token": REFRESH, "token_type": "bearer"}).encode()
            if "gzip" in self.path:
                body = gzip.compress(body)
                extra["Content-Encoding"] = "gzip"
        else:
            status, body = 200, b'{"ok": true}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        """Answer."""
        self._answer()

    def do_POST(self) -> None:
        """Answer."""
        self._answer()


@pytest.fixture
def token_server() -> Iterator[str]:
    """Base URL of a loopback server of this test only."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _file_text(folder: Path) -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in folder.glob("*.jsonl"))


def _run(folder: Path, fn: Any) -> tuple[Any, str]:
    """Run ``fn`` as a run (its exception kept), return what it returned or raised, and the file."""
    outcome: Any = None
    try:
        outcome = agenttrace.run("test-agent")(fn)()
    except Exception as exc:  # the run's failure is part of what is checked
        outcome = exc
    return outcome, _file_text(folder)


def test_url_secret_redacted_in_run_exception_and_result(recorder: Recorder, tmp_path: Path, token_server: str) -> None:
    """raise_for_status() puts the URL in the message: the run's exception and stack trace redact it."""
    url = f"{token_server}/missing?api_key={QUERY}&page=2"

    def agent() -> None:
        agenttrace.set_result({"fetched": url})
        with agenttrace.step("fetch", source=url):
            requests.get(url, timeout=5).raise_for_status()

    outcome, text = _run(tmp_path, agent)
    assert isinstance(outcome, requests.HTTPError)
    assert QUERY in str(outcome)  # the agent itself sees the real URL
    assert QUERY not in text
    placeholder = payload.placeholder(QUERY)
    spans = read_trace(next(tmp_path.glob("*.jsonl"))).spans
    messages = [
        attr["value"]["stringValue"]
        for span in spans
        for event in span.get("events", [])
        if event["name"] == "exception"
        for attr in event["attributes"]
        if attr["key"] in ("exception.message", "exception.stacktrace")
    ]
    assert len(messages) == 4  # the step's and the run's: message and stack trace each
    assert all("api_key=%5BREDACTED+sha256%3A" in m and placeholder[17:25] in m for m in messages)
    assert "page=2" in messages[0]  # other parameters are kept


def test_call_error_event_redacts_url_in_message(recorder: Recorder, tmp_path: Path) -> None:
    """A client error whose text holds a URL is recorded on the call's error event redacted."""

    def agent() -> None:
        call = _record.begin("httpx", RequestData("GET", f"http://127.0.0.1:9/x?token={QUERY}", (), b""))
        assert call is not None
        call.fail(ConnectionError(f"Max retries exceeded with url: /x?token={QUERY} (Caused by X)"))

    _, text = _run(tmp_path, agent)
    assert QUERY not in text
    assert "/x?token=%5BREDACTED+sha256%3A" in text


def test_cloud_signatures_redacted_in_urls_and_headers(recorder: Recorder, tmp_path: Path, token_server: str) -> None:
    """AWS presigned, Azure SAS and X-Signature-style secrets are redacted by default."""

    def agent() -> None:
        requests.get(
            f"{token_server}/blob?sv=2024&sig={SIG}&X-Amz-Signature={SIG}&X-Amz-Credential={SIG}%2F20260101",
            headers={"X-Signature": SIG, "X-Hub-Signature-256": f"sha256={SIG}"},
            timeout=5,
        )

    _, text = _run(tmp_path, agent)
    assert SIG not in text
    assert "sv=2024" in text


def test_oauth_form_and_json_request_fields_redacted(recorder: Recorder, tmp_path: Path, token_server: str) -> None:
    """client_secret, refresh_token and password fields of form and JSON request bodies are redacted."""

    def agent() -> None:
        requests.post(
            f"{token_server}/ok",
            data={"grant_type": "refresh_token", "refresh_token": REFRESH, "client_secret": CLIENT},
            timeout=5,
        )
        httpx.post(f"{token_server}/ok", json={"user": "ann", "password": PASSWORD}, timeout=5)

    _, text = _run(tmp_path, agent)
    for secret in (REFRESH, CLIENT, PASSWORD):
        assert secret not in text
    assert "grant_type=refresh_token" in text
    assert '\\"user\\":\\"ann\\"' in text or '"user":"ann"' in text


@pytest.mark.parametrize("path", ["/token", "/token?gzip=1"])
def test_oauth_token_response_fields_redacted(recorder: Recorder, tmp_path: Path, token_server: str, path: str) -> None:
    """access_token and refresh_token of a token endpoint's JSON answer (gzip too) are redacted."""

    def agent() -> None:
        assert httpx.post(token_server + path, timeout=5).json()["access_token"] == ACCESS

    _, text = _run(tmp_path, agent)
    (exchange,) = read_trace(next(tmp_path.glob("*.jsonl"))).exchanges
    assert exchange.response is not None
    recorded = exchange.response.body.data
    if "gzip" in path:
        recorded = gzip.decompress(recorded)  # a compressed secret is a secret in clear too
    for secret in (ACCESS, REFRESH):
        assert secret not in text
        assert secret.encode() not in recorded
    assert json.loads(recorded)["token_type"] == "bearer"


def test_redacted_request_replays_in_governance(recorder: Recorder, tmp_path: Path, token_server: str) -> None:
    """A request whose body fields were redacted still matches its recording in governance."""

    def agent() -> int:
        response = requests.post(f"{token_server}/ok", data={"grant_type": "password", "password": PASSWORD}, timeout=5)
        return response.status_code

    assert agenttrace.run("test-agent")(agent)() == 200
    with replaying(tmp_path):
        assert agenttrace.run("test-agent")(agent)() == 200
    assert PASSWORD not in _file_text(tmp_path / "replay")


def test_relaxed_rules_record_in_clear(tmp_path: Path, token_server: str) -> None:
    """A '!' entry of redact_headers records that header or field in clear; the others stay redacted."""
    agenttrace.init(trace_dir=str(tmp_path), quiet=True, redact_headers="!x-ratelimit-*,!password,!sig")
    _warn._reset_for_tests()
    try:

        def agent() -> None:
            requests.post(
                f"{token_server}/ok?sig={SIG}&X-Amz-Signature={QUERY}",
                json={"password": PASSWORD, "client_secret": CLIENT},
                headers={"Authorization": f"Bearer {ACCESS}"},
                timeout=5,
            )

        _, text = _run(tmp_path, agent)
    finally:
        agenttrace.init(trace_dir=str(tmp_path), quiet=True)
    assert PASSWORD in text
    assert f"sig={SIG}" in text
    assert QUERY not in text
    assert '["X-Ratelimit-Remaining-Tokens","99"]' in text.replace("\\", "")
    assert CLIENT not in text
    assert ACCESS not in text


def test_bodies_without_secret_fields_are_recorded_byte_for_byte() -> None:
    """A body with no default field is not re-serialised; a JSON body over the scan bound is not parsed."""
    json_type = (("Content-Type", "application/json"),)
    llm = b'{"model": "m",  "max_tokens": 5, "messages": [{"role": "user", "content": "reset my password"}]}'
    assert payload.redact_fields(llm, json_type) == (llm, False)
    big = json.dumps({"password": PASSWORD, "pad": "x" * payload.MAX_FIELD_SCAN_BYTES}).encode()
    assert payload.redact_fields(big, json_type) == (big, False)
    small = json.dumps({"password": PASSWORD, "Password": "kept", "n": 1}).encode()
    redacted, changed = payload.redact_fields(small, json_type)
    assert changed
    assert json.loads(redacted) == {"password": payload.placeholder(PASSWORD), "Password": "kept", "n": 1}


def test_redact_text_is_idempotent_and_keeps_json_valid() -> None:
    """Text redaction leaves placeholders alone and never breaks the JSON text it runs on."""
    text = json.dumps({"url": f'https://u:pw@h/p?access_token={ACCESS}&x="q"', "n": 1}, ensure_ascii=False)
    once = payload.redact_text(text)
    assert ACCESS not in once
    assert "u:pw" not in once
    assert payload.redact_text(once) == once
    assert json.loads(once)["n"] == 1


@pytest.mark.parametrize(
    "url",
    [
        "https://bob:p@ss-word@host.example/v1?q=1",  # an unencoded "@" in the password
        "https://bob:p%40ss-word@host.example/v1?q=1",
    ],
)
def test_credentials_holding_at_signs_are_redacted_whole(url: str) -> None:
    """The host follows a URL's last "@": no part of a password holding one is left, in url.full or in text."""
    from agenttrace._capture.filter import EMPTY

    recorded = payload.filter_url(url, EMPTY)
    assert recorded.startswith("https://[REDACTED sha256:")
    assert recorded.endswith("@host.example/v1?q=1")
    assert "ss-word" not in recorded
    text = payload.redact_text(f"GET {url} failed: 401")
    assert "ss-word" not in text
    assert "@host.example/v1" in text
