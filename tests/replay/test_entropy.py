"""Entropy replays in order, from every source, and span creation never disturbs it."""

from __future__ import annotations

import json

from tests.servers import TestServer

from .conftest import Replayer

ENTROPY_AGENT = """
import json, os, random, secrets, sys, uuid, httpx, agenttrace

@agenttrace.run("dice")
def main(base):
    httpx.get(base + "/json")
    out = {"uuid": str(uuid.uuid4()), "token": secrets.token_hex(8), "choice": secrets.choice("abcdefgh")}
    for i in range(int(os.environ.get("EXTRA_SPANS", "0"))):
        with agenttrace.step(f"extra-{i}"):
            pass  # span ids must not come from the agent's random sequence
    out["random"] = [random.random(), random.randint(0, 10**9)]
    out["instance"] = random.Random().random()
    out["sysrandom"] = random.SystemRandom().random()
    out["urandom"] = os.urandom(5).hex()
    return out

print(json.dumps(main(sys.argv[1])))
"""


def test_every_source_replays_and_spans_do_not_disturb_random(replayer: Replayer, server: TestServer) -> None:
    """uuid4, secrets, random, Random(), SystemRandom, urandom repeat even with extra spans created."""
    rec = replayer.record(ENTROPY_AGENT, [server.base_url])
    rep = replayer.replay(ENTROPY_AGENT, rec, [server.base_url], env={"EXTRA_SPANS": "5"})
    assert rep.returncode == 0, rep.stderr
    assert json.loads(rep.stdout) == json.loads(rec.result.stdout)


def test_user_seeded_random_is_left_alone_when_recording(run_agent: object, server: TestServer) -> None:
    """An agent that seeds random itself gets the same numbers with and without a run around it."""
    code = """
import random, sys, httpx, agenttrace
random.seed(42)
expected = random.Random(42).random()

@agenttrace.run
def main():
    return random.random()

print(main() == expected)
"""
    result = run_agent(code)  # type: ignore[operator]
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


TEMPFILE_AGENT = """
import json, os, sys, tempfile, uuid, httpx, agenttrace

@agenttrace.run("scratch")
def main(base):
    httpx.get(base + "/json")
    # The process's first temporary file: tempfile seeds its name generator from os.urandom now.
    handle, path = tempfile.mkstemp()
    os.close(handle)
    os.unlink(path)
    return {"name": os.path.basename(path), "after": str(uuid.uuid4())}

print(json.dumps(main(sys.argv[1])))
"""


def test_the_agents_first_temporary_file_draws_as_recorded(replayer: Replayer, server: TestServer) -> None:
    """AgentTrace's own files in replay never seed tempfile's generator before the agent does."""
    rec = replayer.record(TEMPFILE_AGENT, [server.base_url])
    rep = replayer.replay(TEMPFILE_AGENT, rec, [server.base_url])
    assert rep.returncode == 0, rep.stderr
    assert json.loads(rep.stdout) == json.loads(rec.result.stdout)
