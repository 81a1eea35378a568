"""A library first imported during a run is instrumented at its import, and not imported before.

Each case runs in a fresh interpreter, so what is in ``sys.modules`` is the agent's doing alone.
"""

from __future__ import annotations

from typing import Any

from tests.servers import TestServer

# The agent imports httpx only; urllib3 (through requests) comes in mid-run.
IMPORTED_MID_RUN = """
import sys
import agenttrace
import httpx

url = sys.argv[1]

@agenttrace.run("lazy")
def agent():
    print("urllib3 at run start:", "urllib3" in sys.modules)
    httpx.get(url)
    import requests
    requests.get(url)

agent()

@agenttrace.run("again")
def again():
    import requests
    requests.get(url)

again()
"""


def test_library_imported_mid_run_is_recorded_and_not_imported_before(run_agent: Any, server: TestServer) -> None:
    done = run_agent(IMPORTED_MID_RUN, args=[server.url("/json?lazy=1")])
    assert done.returncode == 0, done.stderr
    assert "urllib3 at run start: False" in done.stdout
    calls = [s for s in done.spans() if s.attributes.get("agenttrace.kind") == "call"]
    libraries = sorted(str(s.attributes.get("agenttrace.call.library")) for s in calls)
    # The first run: httpx, then urllib3 instrumented when requests imported it; the second run
    # finds urllib3 already imported and instruments it at its start.
    assert libraries == ["httpx", "urllib3", "urllib3"], libraries
    assert "could not" not in done.stderr


# Imported after the last run ended: the hook fires with no run active and must not instrument.
IMPORTED_BETWEEN_RUNS = """
import sys
import agenttrace
import httpx

@agenttrace.run("first")
def first():
    pass

first()
import urllib3
from agenttrace.instrumentors.urllib3 import Urllib3Instrumentor
print("instrumented after the runs:", Urllib3Instrumentor().is_instrumented_by_opentelemetry)
print("wrapped:", hasattr(urllib3.connectionpool.HTTPConnectionPool._make_request, "__wrapped__"))
"""


def test_library_imported_after_the_runs_is_left_alone(run_agent: Any) -> None:
    done = run_agent(IMPORTED_BETWEEN_RUNS)
    assert done.returncode == 0, done.stderr
    assert "instrumented after the runs: False" in done.stdout
    assert "wrapped: False" in done.stdout
