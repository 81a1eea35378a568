"""The run page in a real browser: Playwright drives Debian's Chromium (no browser download) over a
server on 127.0.0.1. A recorded openai SDK agent (a tool call, then a streamed answer, against the
loopback fake LLM) and its governance replay are walked as a user walks them: the timeline, the
conversations, the tokens, the replay's link to its recording, the diff view, a search from the
listing's form and a delete from the run page. A trace of a
thousand spans loads in parts; a hostile payload stays text; long bodies load on demand."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agenttrace._demo.llm_server import FakeLLMServer

from .conftest import KEY, chromium_path
from .test_server import BIN, _agent_env, _run

BROWSER_HINT = "needs Playwright and Chromium: pip install 'agenttrace[test]' and apt-get install chromium"
HOSTILE = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium page opener: ``browser(url)`` gives a page logged in with the server's key."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(BROWSER_HINT)
    executable = chromium_path()
    if executable is None:
        pytest.skip(BROWSER_HINT)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
        context = chromium.new_context(http_credentials={"username": "agenttrace", "password": KEY})
        errors: list[str] = []

        def open_page(url: str) -> Any:
            page = context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.goto(url)
            return page

        yield open_page
        context.close()
        chromium.close()
        assert errors == [], errors  # no script error, no request the CSP refused


def _trace_ids(server: Any) -> dict[str, str]:
    listing = server.get("/api/traces", headers={"Authorization": f"Bearer {KEY}"}).json()["traces"]
    newest: dict[str, str] = {}
    for trace in listing:  # most recent first
        newest.setdefault(trace["mode"], trace["trace_id"])
    return newest


def test_a_recorded_openai_agent_and_its_replay_as_a_user_sees_them(
    start_server: Any, browser: Any, tmp_path: Path
) -> None:
    server = start_server("--database", f"sqlite:///{tmp_path / 'runs.db'}", "--api-key", KEY)
    agent = [sys.executable, "-m", "agenttrace._demo.agent", "--base-url"]
    with FakeLLMServer() as llm:
        recorded = _run([*agent, llm.openai_base_url], _agent_env(tmp_path, server.url), tmp_path)
        assert recorded.returncode == 0, recorded.stderr
        answer = json.loads(recorded.stdout)["answer"]
        [recorded_id] = _trace_ids(server).values()
        download = server.get(f"/api/traces/{recorded_id}/download", headers={"Authorization": f"Bearer {KEY}"})
        recording = tmp_path / "recording.jsonl"
        recording.write_bytes(download.content)
        calls = llm.calls
        # A replay sends nothing to AgentTrace's backend (docs/export.md); OTLP targets get it.
        replay_env = _agent_env(
            tmp_path,
            server.url,
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_EXPORTER_OTLP_ENDPOINT=server.url,
            OTEL_EXPORTER_OTLP_HEADERS=f"Authorization=Bearer%20{KEY}",
        )
        replayed = _run(
            [
                str(BIN / "agenttrace"),
                "replay",
                "--governance-level",
                "governance",
                str(recording),
                "--",
                *agent,
                llm.openai_base_url,
            ],
            replay_env,
            tmp_path,
        )
        assert replayed.returncode == 0, replayed.stderr
        assert llm.calls == calls  # the replay reached no model
        ids = _trace_ids(server)
        assert set(ids) == {"record", "replay"}, (ids, replayed.stderr)
        replay_id = ids["replay"]
        # A relaxed replay asked another question: its first call is not in the recording.
        question = ["--question", "Where is my order 99?"]
        changed = _run(
            [str(BIN / "agenttrace"), "replay", str(recording), "--", *agent, llm.openai_base_url, *question],
            replay_env,
            tmp_path,
        )
        assert changed.returncode == 0, changed.stderr
    changed_id = _trace_ids(server)["replay"]  # the newest replay
    assert changed_id != replay_id

    page = browser(f"{server.url}/traces/{recorded_id}")
    # The timeline: the run, its three steps, the two LLM calls, each a row with a bar.
    names = page.locator("#timeline .span-name").all_inner_texts()
    assert names[0] == "demo-support-agent"
    steps = [n for n in names if n in ("plan", "lookup_order", "answer")]
    assert steps == ["plan", "lookup_order", "answer"]
    assert page.locator("#timeline li.row").count() == len(names) == 6
    assert page.locator("#timeline li.row .bar").count() == 6
    assert page.locator("#timeline .badge.llm").count() == 2
    assert page.locator("#more").count() == 0  # one part holds it all
    # The conversations: what was sent, the tool offered, the tool call and its arguments ...
    first, second = page.locator(".conversation").all()
    assert first.locator(".message.sent.role-user .content").inner_text() == "Where is my order 1234?"
    first.locator("details.tools > summary").click()
    assert first.locator(".tool-definition .tool-name").inner_text() == "lookup_order"
    assert "Look up an order's status" in first.locator(".tool-definition").inner_text()
    assert first.locator(".message.answer .tool-name").inner_text() == "lookup_order"
    assert '"query"' in first.locator(".message.answer .arguments").inner_text()
    # ... then the tool's result sent back and the streamed answer, assembled, with its chunks.
    sent_roles = second.locator(".message.sent .role").all_inner_texts()
    assert sent_roles == ["user", "assistant", "tool"]
    assert '"status": "shipped"' in second.locator(".message.sent.role-tool .content").inner_text().replace(
        '":"', '": "'
    )
    assert second.locator(".message.answer .content").inner_text() == answer
    stream = second.locator(".stream").inner_text()
    assert "streamed in" in stream
    assert "chunks" in stream
    assert "first chunk" in stream
    # Model and tokens on each call, totals on the page.
    # (the streamed answer reports no usage: the agent asked for none)
    usage = first.locator(".usage").inner_text()
    assert usage.startswith("demo · ")
    assert usage.endswith(" tokens")
    assert "2 LLM calls" in page.locator("#llm-totals").inner_text()
    # The payloads: JSON drawn as a tree that folds.
    request = page.locator("#timeline details.payload.request").first
    request.locator("summary").first.click()
    tree = request.locator(".json-tree > details.json")
    assert tree.count() == 1
    assert tree.get_attribute("open") is not None
    tree.locator("summary").first.click()
    assert tree.get_attribute("open") is None

    # The replay: its calls served, a link to its recording, and the diff view.
    page = browser(f"{server.url}/traces/{replay_id}")
    assert page.locator("#timeline .note", has_text="replayed").count() == 2
    page.locator("#recording-link").click()
    page.wait_for_url(f"**/traces/{recorded_id}")
    page.go_back()
    page.locator("#diff-link").click()
    page.wait_for_url(f"**/traces/{replay_id}/diff")
    assert page.locator("#diff-count").inner_text() == "equal: every call matched"
    calls_compared = page.locator(".diff-node.change-equal:has(> .badge.call)")
    assert calls_compared.count() == 2
    assert page.locator(".badge.replay-note", has_text="served").count() == 2

    # The replay that asked another question: the diff says which call differs, and where.
    page = browser(f"{server.url}/traces/{changed_id}/diff")
    assert page.locator("#diff-count").inner_text() != "equal: every call matched"
    differing = page.locator(".diff-node.change-changed:has(> .badge.call)").first
    assert "differs" in differing.locator(":scope > .change").inner_text()
    details = differing.locator(":scope > .details").inner_text()
    assert "$.messages[0].content" in details
    assert "Where is my order 99?" in details

    # The listing: tokens per run, and a search by mode through the form.
    page = browser(f"{server.url}/")
    assert page.locator("tr.trace-row").count() == 3
    page.select_option("form#filters select[name=mode]", "record")
    page.locator("form#filters button[type=submit]").click()
    page.wait_for_url("**/?*mode=record*")
    rows = page.locator("tr.trace-row")
    assert rows.count() == 1
    assert recorded_id in rows.first.inner_text()
    assert rows.first.locator(".tokens").inner_text().strip() not in ("", "—")
    # Delete the changed replay from its own page: back to the listing, gone from it and the store.
    page = browser(f"{server.url}/traces/{changed_id}")
    page.locator("details#delete > summary").click()
    page.locator("details#delete button[type=submit]").click()
    page.wait_for_url(f"{server.url}/")
    assert page.locator("tr.trace-row").count() == 2
    assert changed_id not in page.locator("#traces").inner_text()
    gone = server.get(f"/api/traces/{changed_id}", headers={"Authorization": f"Bearer {KEY}"})
    assert gone.status_code == 404


def _otlp_span(number: int, parent: str, **attributes: Any) -> dict[str, Any]:
    def value(v: Any) -> dict[str, Any]:
        if isinstance(v, bool):
            return {"boolValue": v}
        if isinstance(v, int):
            return {"intValue": str(v)}
        return {"stringValue": str(v)}

    events = attributes.pop("events", [])
    return {
        "traceId": "ab" * 16,
        "spanId": f"{number + 1:016x}",
        "parentSpanId": parent,
        "name": attributes.pop("name", f"span {number}"),
        "kind": 1,
        "startTimeUnixNano": str(1_700_000_000_000_000_000 + number * 1_000_000),
        "endTimeUnixNano": str(1_700_000_000_000_000_000 + number * 1_000_000 + 500_000),
        "attributes": [{"key": k, "value": value(v)} for k, v in attributes.items()],
        "events": [
            {
                "name": name,
                "timeUnixNano": str(1_700_000_000_000_000_000 + number * 1_000_000),
                "attributes": [{"key": k, "value": value(v)} for k, v in attrs.items()],
            }
            for name, attrs in events
        ],
        "status": {"code": 2 if attributes.get("agenttrace.step.type") == "broken" else 0},
    }


def test_a_large_trace_loads_in_parts_and_payloads_stay_text(start_server: Any, browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    server = start_server("--database", f"sqlite:///{tmp_path / 'big.db'}", "--api-key", KEY)
    run = "0000000000000001"
    big = json.dumps({"items": [{"n": n, "text": "x" * 40} for n in range(2000)]})
    spans = [_otlp_span(0, "", name="big-run", **{"agenttrace.kind": "run", "agenttrace.run.name": "big-run"})]
    spans.append(
        _otlp_span(
            1,
            run,
            name="POST",
            **{
                "agenttrace.kind": "call",
                "events": [
                    (
                        "agenttrace.request",
                        {
                            "agenttrace.http.method": "POST",
                            "agenttrace.http.url": "http://127.0.0.1:9/upload",
                            "agenttrace.body": big,
                            "agenttrace.body.size": len(big),
                        },
                    ),
                    (
                        "agenttrace.response",
                        {
                            "agenttrace.http.status_code": 200,
                            "agenttrace.body": "AAECAwQF" * 100,
                            "agenttrace.body.encoding": "base64",
                            "agenttrace.body.size": 600,
                            "agenttrace.http.headers": '[["content-type", "image/png"]]',
                        },
                    ),
                ],
            },
        )
    )
    spans.append(_otlp_span(2, run, name=HOSTILE, **{"agenttrace.kind": "step", "agenttrace.step.type": "broken"}))
    spans += [_otlp_span(n, run, **{"agenttrace.kind": "step"}) for n in range(3, 1000)]
    body = {"resourceSpans": [{"resource": {}, "scopeSpans": [{"scope": {"name": "agenttrace"}, "spans": spans}]}]}
    sent = server.post(
        "/v1/traces",
        content=json.dumps(body),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"},
    )
    assert sent.status_code == 200, sent.text
    trace_id = "ab" * 16

    html = server.get(f"/traces/{trace_id}", auth=("agenttrace", KEY))
    assert html.text.count('class="span row') == 200  # the first part only
    assert '<script src="/static/trace.js"' in html.text
    assert "<script>" not in html.text.replace("&lt;script&gt;", "")  # no inline script: the CSP allows none

    page = browser(f"{server.url}/traces/{trace_id}")
    assert page.title() == "AgentTrace: big-run"  # the hostile name ran no script
    assert page.locator("#timeline img").count() == 0
    assert page.locator("#timeline .span-name", has_text="<script>").count() == 1
    assert page.locator("#timeline li.row.failed").count() == 1
    rows = page.locator("#timeline li.row")
    expect(rows).to_have_count(200)
    page.locator("#load-more").click()  # the button loads the next part ...
    expect(rows).to_have_count(400)
    for _ in range(50):  # ... and scrolling to the end of the list loads the rest
        if page.locator("#more").count() == 0:
            break
        page.keyboard.press("End")
        page.wait_for_timeout(100)
    expect(rows).to_have_count(1000)
    expect(page.locator("#more")).to_have_count(0)
    assert page.locator("#timeline li.row").nth(999).locator(".span-name").inner_text() == "span 999"
    ids = page.eval_on_selector_all("#timeline li.row", "rows => rows.map(r => r.dataset.spanId)")
    assert len(set(ids)) == 1000  # each span once, in start order
    assert ids == [f"{n + 1:016x}" for n in range(1000)]

    # The long request body: its first part on the page, the whole loaded on demand.
    call = page.locator("#timeline li.row.call")
    call.locator("details.payload.request > summary").click()
    shown = call.locator("details.payload.request pre.body").inner_text()
    assert len(shown) < len(big)
    call.locator("button.load-body").click()
    whole = call.locator("details.payload.request pre.body.whole")
    whole.wait_for()
    assert json.loads(whole.inner_text()) == json.loads(big)
    # The binary response is described, not dumped, with a link to its bytes.
    call.locator("details.payload.response > summary").click()
    response = call.locator("details.payload.response")
    assert "binary (image/png" in response.inner_text()
    assert "AAECAwQF" not in response.inner_text()
    link = response.locator("a.body-download").get_attribute("href")
    assert link is not None
    got = server.get(link, auth=("agenttrace", KEY))
    assert got.content == bytes(range(6)) * 100
    assert got.headers["content-type"] == "application/octet-stream"


def test_the_part_and_span_routes_refuse_bad_keys_and_ids(start_server: Any, tmp_path: Path) -> None:
    server = start_server("--database", f"sqlite:///{tmp_path / 'r.db'}", "--api-key", KEY)
    auth = {"Authorization": f"Bearer {KEY}"}
    trace = "cd" * 16
    assert server.get(f"/traces/{trace}/part?after=1:0000000000000001").status_code == 401
    assert server.get(f"/traces/{trace}/part?after=nope", headers=auth).status_code == 400
    assert server.get(f"/traces/{trace}/part?after=1:0000000000000001", headers=auth).status_code == 404
    assert server.get(f"/api/traces/{trace}/spans/xyz", headers=auth).status_code == 400
    assert server.get(f"/api/traces/{trace}/spans/0000000000000001", headers=auth).status_code == 404
    assert server.get(f"/traces/{trace}/diff", headers=auth).status_code == 404
    script = server.get("/static/trace.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "script-src 'self'" in script.headers["content-security-policy"]
    assert "'unsafe-inline'" not in script.headers["content-security-policy"].split("script-src", 1)[1].split(";")[0]


def test_parts_download_and_span_routes_read_the_trace_in_pieces_on_each_store(
    database: str, start_server: Any, tmp_path: Path
) -> None:
    """Parts cover the trace once, in start order; the download and the trace API (streamed) hold
    every span; one span and one body come alone."""
    import re

    server = start_server("--database", database)
    body = json.dumps({"question": "where?"})
    spans = [_otlp_span(0, "", name="parts-run", **{"agenttrace.kind": "run", "agenttrace.run.name": "parts-run"})]
    spans += [_otlp_span(n, "0000000000000001", **{"agenttrace.kind": "step"}) for n in range(1, 449)]
    request = ("agenttrace.request", {"agenttrace.body": body, "agenttrace.body.size": len(body)})
    spans.append(_otlp_span(449, "0000000000000001", **{"agenttrace.kind": "call", "events": [request]}))
    document = {"resourceSpans": [{"resource": {}, "scopeSpans": [{"scope": {"name": "t"}, "spans": spans}]}]}
    assert server.post("/v1/traces", json=document).status_code == 200
    trace_id = "ab" * 16

    page = server.get(f"/traces/{trace_id}").text
    ids = re.findall(r'class="span row [^"]*" data-span-id="([0-9a-f]{16})"', page)
    after = re.search(r'data-after="([^"]+)"', page)
    parts = 1
    while after is not None:
        part = server.get(f"/traces/{trace_id}/part", params={"after": after.group(1)}).json()
        ids += re.findall(r'class="span row [^"]*" data-span-id="([0-9a-f]{16})"', part["html"])
        after = None if part["next"] is None else re.match(r"(.+)", part["next"])
        parts += 1
    assert ids == [f"{n + 1:016x}" for n in range(450)]
    assert parts >= 3  # 200 spans a part

    download = server.get(f"/api/traces/{trace_id}/download")
    assert download.headers["content-type"].startswith("application/x-ndjson")
    lines = download.text.splitlines()
    assert len(lines) == 450
    assert [json.loads(line)["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] for line in lines] == ids
    whole = server.get(f"/api/traces/{trace_id}").json()
    assert whole["trace_id"] == trace_id
    assert whole["spans"] == 450
    assert [s["spanId"] for s in whole["otlp_spans"]] == ids

    one = server.get(f"/api/traces/{trace_id}/spans/{450:016x}").json()
    assert one["spanId"] == f"{450:016x}"
    got = server.get(f"/api/traces/{trace_id}/spans/{450:016x}/events/0/body")
    assert got.headers["content-type"] == "text/plain; charset=utf-8"
    assert got.text == body
    assert server.get(f"/api/traces/{trace_id}/spans/{450:016x}/events/1/body").status_code == 404
    assert server.get(f"/api/traces/{trace_id}/download", params={}).status_code == 200
    assert server.get(f"/api/traces/{'0' * 32}/download").status_code == 404
