"""The virtual wall clock: the readings a run makes are recorded and served back in replay.

The agents build uuid7 ids the way Python 3.14's ``uuid.uuid7()`` and pydantic-ai's polyfill do
(a new millisecond draws 10 random bytes, the same millisecond 4), so a replay that read the real
clock would draw other sizes than the recording holds.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import AgentRunner
from tests.servers import TestServer

from .conftest import Replayer

CLOCK_AGENT = """
import json, os, sys, time, datetime as dt_module
from datetime import datetime, timezone, date  # bound before the run starts, as most code does
import httpx, agenttrace

_last = [None]

def uuid7():
    ms = time.time_ns() // 1_000_000
    if _last[0] is None or ms > _last[0]:
        tail = os.urandom(10).hex()
    else:
        ms = _last[0]
        tail = os.urandom(4).hex()
    _last[0] = ms
    return f"{ms:x}-{tail}"

@agenttrace.run("clocked")
def main(base):
    out = []
    for i in range(int(os.environ.get("EXTRA_READS", "0"))):
        time.time()
    for i in range(3):
        ids = []
        for _ in range(40):  # a tight loop: several ids per millisecond
            ids.append(uuid7())
            if os.environ.get("SLOW_IDS"):
                time.sleep(0.002)
        httpx.get(base + f"/json?i={i}")
        out.append({
            "ids": ids,
            "now": datetime.now(timezone.utc).isoformat(),
            "local": datetime.now().isoformat(),
            "module_now": dt_module.datetime.now().isoformat(),
            "today": date.today().isoformat(),
            "time": time.time(),
            "strftime": time.strftime("%Y-%m-%d %H:%M:%S"),
        })
    return out

print(json.dumps(main(sys.argv[1])))
"""


def _ids(output: str) -> list[str]:
    return [i for part in json.loads(output) for i in part["ids"]]


def test_clock_based_ids_and_timestamps_replay_identically(replayer: Replayer, server: TestServer) -> None:
    """uuid7 ids, datetime.now() (bound before the run), date.today(), time.time(): the recorded values, every time."""
    rec = replayer.record(CLOCK_AGENT, [server.base_url])
    sizes = {len(i.partition("-")[2]) for i in _ids(rec.result.stdout)}
    assert sizes == {8, 20}, "the recording should hold both 10- and 4-byte draws"
    before = server.connections
    for _ in range(3):
        rep = replayer.replay(CLOCK_AGENT, rec, [server.base_url])
        assert rep.returncode == 0, rep.stderr
        assert rep.stdout == rec.result.stdout
        assert "at another size" not in rep.stderr
    assert server.connections == before


def test_a_replay_reading_the_clock_more_often_still_passes_governance(replayer: Replayer, server: TestServer) -> None:
    """Extra readings in replay shift the recorded ones; past the end the clock advances; governance holds."""
    rec = replayer.record(CLOCK_AGENT, [server.base_url])
    before = server.connections
    rep = replayer.replay(CLOCK_AGENT, rec, [server.base_url], env={"EXTRA_READS": "500"})
    assert rep.returncode == 0, rep.stderr
    assert server.connections == before
    replayed = json.loads(rep.stdout)
    times = [part["time"] for part in replayed]
    assert times == sorted(times)
    # All 500 extra readings came before the first recorded one was due: the recorded readings
    # ran out and the clock advanced from the last of them, never going back.
    assert times[0] >= json.loads(rec.result.stdout)[-1]["time"]


def test_ids_split_otherwise_by_the_real_clock_still_pass_governance(replayer: Replayer, server: TestServer) -> None:
    """virtual_clock off: replay reads the real clock, so ids draw other sizes; served from the recorded draws."""
    env = {"AGENTTRACE_VIRTUAL_CLOCK": "0"}
    rec = replayer.record(CLOCK_AGENT, [server.base_url], env=env)
    assert {len(i.partition("-")[2]) for i in _ids(rec.result.stdout)} == {8, 20}
    before = server.connections
    # Every id in a new millisecond now: 10-byte draws where the recording holds 4-byte ones.
    rep = replayer.replay(CLOCK_AGENT, rec, [server.base_url], env={**env, "SLOW_IDS": "1"})
    assert rep.returncode == 0, rep.stderr
    assert "at another size" in rep.stderr
    assert server.connections == before
    recorded, replayed = json.loads(rec.result.stdout), json.loads(rep.stdout)
    assert replayed[0]["time"] > recorded[-1]["time"]  # the real clock: later than anything recorded
    # The same replay twice gives the same random parts: they come from the recording alone.
    again = replayer.replay(CLOCK_AGENT, rec, [server.base_url], env={**env, "SLOW_IDS": "1"})
    assert again.returncode == 0, again.stderr
    tails = [i.partition("-")[2] for i in _ids(rep.stdout)]
    assert tails == [i.partition("-")[2] for i in _ids(again.stdout)]


def test_the_clock_is_real_outside_runs_and_restored_after(run_agent: AgentRunner) -> None:
    """Between runs time.time and datetime.now are the originals; inside one they read through the run."""
    code = """
import datetime, time, agenttrace
real_time, real_now = time.time, datetime.datetime.now

@agenttrace.run
def main():
    return time.time is not real_time, datetime.datetime.now != real_now

inside = main()
print(inside, time.time is real_time, datetime.datetime.now == real_now)
"""
    result = run_agent(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(True, True) True True"


UUID_UTILS_AGENT = """
import json, os, sys
import httpx, agenttrace
if not os.environ.get("IMPORT_IN_RUN"):
    import uuid_utils.compat as uc

@agenttrace.run("rust-ids")
def main(base):
    global uc
    if os.environ.get("IMPORT_IN_RUN"):
        import uuid_utils.compat as uc  # a framework imported inside the run
    ids = [str(uc.uuid7()) for _ in range(20)] + [str(uc.uuid4())]
    httpx.get(base + "/json")
    return ids + [str(uc.uuid7()) for _ in range(5)]

print(json.dumps(main(sys.argv[1])))
"""


@pytest.mark.parametrize("import_in_run", ["", "1"])
def test_uuid_utils_ids_replay_identically(replayer: Replayer, server: TestServer, import_in_run: str) -> None:
    """uuid_utils (Rust; LangChain's ids) reads the OS clock and random source: its compat ids replay as recorded."""
    env = {"IMPORT_IN_RUN": import_in_run}
    rec = replayer.record(UUID_UTILS_AGENT, [server.base_url], env=env)
    ids = json.loads(rec.result.stdout)
    assert len(set(ids)) == len(ids)
    assert all(i[14] == "7" for i in ids[:20])  # the version digit
    assert ids[20][14] == "4"
    assert sorted(ids[:20]) == ids[:20]  # uuid7 ids are ordered, within a millisecond too
    before = server.connections
    rep = replayer.replay(UUID_UTILS_AGENT, rec, [server.base_url], env=env)
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout == rec.result.stdout
    assert server.connections == before
