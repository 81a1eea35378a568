"""Divergences in replay: governance stops the run with the right error, relaxed warns and goes on."""

from __future__ import annotations

import json

from agenttrace._demo.llm_server import FakeLLMServer
from tests.servers import TestServer

from .agents import HTTPX_AGENT, OPENAI_AGENT
from .conftest import Replayer

LEAKY_AGENT = """
import json, os, socket, sys, httpx, agenttrace

@agenttrace.run("leaky")
def main(base):
    with agenttrace.step("ask"):
        out = httpx.get(base + "/json").json()["id"]
    if os.environ.get("LEAK") == "dns":
        try:
            socket.getaddrinfo("example.invalid", 443)
        except socket.gaierror:
            pass  # no internet here: relaxed lets the lookup happen and it fails for real
    if os.environ.get("LEAK") == "connect":
        s = socket.socket()
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", int(base.rsplit(":", 1)[1])))
        finally:
            s.close()
    return out

try:
    print(json.dumps(main(sys.argv[1])))
except agenttrace.DeterminismLeakError as exc:
    # The SDK reference counts a socket call the recording lacks as a ReplayMismatchError too.
    print("leak; also a ReplayMismatchError:", isinstance(exc, agenttrace.ReplayMismatchError), file=sys.stderr)
    raise
"""

SWALLOWING_AGENT = """
import json, sys, httpx, agenttrace

@agenttrace.run("swallower")
def main(base, question):
    with agenttrace.step("ask"):
        try:
            return httpx.post(base + "/json", json={"q": question}).json()["id"]
        except Exception as exc:
            print("caught", type(exc).__name__)
            return "fallback"

print(json.dumps(main(sys.argv[1], sys.argv[2])))
"""


def test_changed_prompt_fails_with_a_json_path_diff(replayer: Replayer, server: TestServer) -> None:
    """A changed request body raises ReplayMismatchError naming the call, the closest call and $.q."""
    rec = replayer.record(HTTPX_AGENT, [server.base_url, "hello"])
    before = server.connections
    rep = replayer.replay(HTTPX_AGENT, rec, [server.base_url, "goodbye"])
    assert rep.returncode == 1
    assert "ReplayMismatchError: governance replay: httpx call POST" in rep.stderr
    assert "closest: POST" in rep.stderr
    assert 'body $.q: recorded "hello", called "goodbye"' in rep.stderr
    assert server.connections == before


def test_swallowed_mismatch_still_fails_the_run(replayer: Replayer, server: TestServer) -> None:
    """User code catching the governance error does not hide it: the run ends with the violation."""
    rec = replayer.record(SWALLOWING_AGENT, [server.base_url, "hello"])
    rep = replayer.replay(SWALLOWING_AGENT, rec, [server.base_url, "changed"])
    assert "caught ReplayMismatchError" in rep.stdout
    assert rep.returncode == 1
    assert "were caught by the agent's code" in rep.stderr
    assert "1 governance violation(s)" in rep.stderr


def test_openai_mismatch_keeps_the_cause_and_reaches_no_server(replayer: Replayer, llm: FakeLLMServer) -> None:
    """A changed prompt through the openai SDK surfaces ReplayMismatchError in the exception chain."""
    rec = replayer.record(OPENAI_AGENT, [llm.openai_base_url, "weather in Paris?"])
    before = llm.calls
    rep = replayer.replay(OPENAI_AGENT, rec, [llm.openai_base_url, "weather in Rome?"])
    assert rep.returncode == 3, rep.stderr
    assert "cause: ReplayMismatchError" in rep.stdout
    assert 'body $.messages[0].content: recorded "weather in Paris?", called "weather in Rome?"' in rep.stdout
    assert llm.calls == before


def test_direct_dns_lookup_is_a_leak_in_governance(replayer: Replayer, server: TestServer) -> None:
    """socket.getaddrinfo outside any recorded call raises DeterminismLeakError in governance."""
    rec = replayer.record(LEAKY_AGENT, [server.base_url])
    rep = replayer.replay(LEAKY_AGENT, rec, [server.base_url], env={"LEAK": "dns"})
    assert rep.returncode == 1
    assert "DeterminismLeakError: governance replay: the agent attempted getaddrinfo(example.invalid:443)" in rep.stderr
    assert "leak; also a ReplayMismatchError: False" in rep.stderr  # DNS is a leak only


def test_raw_connect_is_a_leak_and_never_reaches_the_server(replayer: Replayer, server: TestServer) -> None:
    """A raw socket connect in governance replay is stopped before the server sees a connection."""
    rec = replayer.record(LEAKY_AGENT, [server.base_url])
    before = server.connections
    rep = replayer.replay(LEAKY_AGENT, rec, [server.base_url], env={"LEAK": "connect"})
    assert rep.returncode == 1
    assert "SocketLeakError: governance replay: the agent attempted connect to 127.0.0.1:" in rep.stderr
    assert "leak; also a ReplayMismatchError: True" in rep.stderr  # caught by either class
    assert server.connections == before


def test_relaxed_leaks_warn_and_pass_through(replayer: Replayer, server: TestServer) -> None:
    """Relaxed replay warns about a raw connect, lets it through, and the run succeeds."""
    rec = replayer.record(LEAKY_AGENT, [server.base_url])
    before = server.connections
    rep = replayer.replay(LEAKY_AGENT, rec, [server.base_url], level="relaxed", env={"LEAK": "connect"})
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout == rec.result.stdout
    assert "WARNING: replay: the agent attempted connect to 127.0.0.1:" in rep.stderr
    assert server.connections == before + 1


def test_relaxed_unrecorded_call_warns_and_goes_to_the_network(replayer: Replayer, server: TestServer) -> None:
    """Relaxed replay of a changed prompt prints one WARNING naming the call and makes it for real."""
    rec = replayer.record(HTTPX_AGENT, [server.base_url, "hello"])
    before = server.connections
    rep = replayer.replay(HTTPX_AGENT, rec, [server.base_url, "goodbye"], level="relaxed")
    assert rep.returncode == 0, rep.stderr
    assert rep.stderr.count("WARNING: replay: httpx call POST") == 1
    assert server.connections == before + 1
    assert json.loads(rep.stdout)["id"] != json.loads(rec.result.stdout)["id"]
    assert json.loads(rep.stdout)["chunks"] == json.loads(rec.result.stdout)["chunks"]


def test_unserved_entropy_is_a_leak_in_governance(replayer: Replayer, server: TestServer) -> None:
    """An os.urandom draw the recording does not hold raises DeterminismLeakError."""
    rec = replayer.record(HTTPX_AGENT, [server.base_url])
    rep = replayer.replay(HTTPX_AGENT, rec, [server.base_url], env={"EXTRA_ENTROPY": "1"})
    assert rep.returncode == 1
    assert "DeterminismLeakError: governance replay: the agent drew entropy urandom(4 bytes)" in rep.stderr


def test_unserved_entropy_warns_in_relaxed(replayer: Replayer, server: TestServer) -> None:
    """Relaxed replay of an extra draw warns and uses a fresh value; earlier draws still match."""
    rec = replayer.record(HTTPX_AGENT, [server.base_url])
    rep = replayer.replay(HTTPX_AGENT, rec, [server.base_url], level="relaxed", env={"EXTRA_ENTROPY": "1"})
    assert rep.returncode == 0, rep.stderr
    assert "WARNING: replay: the agent drew entropy urandom(4 bytes)" in rep.stderr
    recorded, replayed = json.loads(rec.result.stdout), json.loads(rep.stdout)
    assert replayed.pop("extra")
    assert replayed == recorded


def test_truncated_recording_is_never_served_as_whole(replayer: Replayer, server: TestServer) -> None:
    """A response cut at max_body_bytes makes governance replay fail, naming the cut."""
    code = """
import sys, httpx, agenttrace

@agenttrace.run("big")
def main(base):
    return len(httpx.get(base + "/big?size=5000").content)

print(main(sys.argv[1]))
"""
    rec = replayer.record(code, [server.base_url], env={"AGENTTRACE_MAX_BODY_BYTES": "1000"})
    rep = replayer.replay(code, rec, [server.base_url])
    assert rep.returncode == 1
    assert "was cut at 1000 of 5000 bytes" in rep.stderr


def test_unused_recorded_calls_are_reported_and_can_fail_the_run(replayer: Replayer, server: TestServer) -> None:
    """A call recorded but not made is listed as unused; fail_on_unused turns it into a failure."""
    code = """
import os, sys, httpx, agenttrace

@agenttrace.run("skipper")
def main(base):
    httpx.get(base + "/json?first=1")
    if not os.environ.get("SKIP"):
        httpx.get(base + "/json?second=1")
    return "done"

print(main(sys.argv[1]))
"""
    rec = replayer.record(code, [server.base_url])
    rep = replayer.replay(code, rec, [server.base_url], env={"SKIP": "1"})
    assert rep.returncode == 0, rep.stderr
    assert "1 recorded call(s) unused" in rep.stderr
    assert "unused: GET http://127.0.0.1" in rep.stderr
    rep = replayer.replay(code, rec, [server.base_url], env={"SKIP": "1", "AGENTTRACE_FAIL_ON_UNUSED": "1"})
    assert rep.returncode == 1
    assert "ReplayMismatchError: governance replay: 1 recorded call(s) were never made" in rep.stderr
