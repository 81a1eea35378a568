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


# @run patches through the adapters, without importing opentelemetry.instrumentation; an
# instrumentor the user turned on (before or during the runs) stays on after them.
ADAPTERS_AND_INSTRUMENTORS = """
import sys
import httpx
import agenttrace
from agenttrace.instrumentors.httpx.adapter import httpx_adapter
from agenttrace.instrumentors.socket.adapter import socket_adapter

url = sys.argv[1]

@agenttrace.run("first")
def first():
    print("instrumentation imported in a run:", "opentelemetry.instrumentation.instrumentor" in sys.modules)
    print("patched in a run:", httpx_adapter().installed, socket_adapter().installed)
    httpx.get(url)
    import requests  # urllib3 is patched at its import, through its adapter too
    requests.get(url)
    print("instrumentation imported after requests:", "opentelemetry.instrumentation.instrumentor" in sys.modules)

first()
print("patched after the run:", httpx_adapter().installed, socket_adapter().installed)

from agenttrace.instrumentors.httpx import HttpxInstrumentor

@agenttrace.run("second")
def second():
    HttpxInstrumentor().instrument()  # the user's, while @run's patch is on

second()
print("user's patch after the runs:", httpx_adapter().installed, HttpxInstrumentor().is_instrumented_by_opentelemetry)
HttpxInstrumentor().uninstrument()
print("after the user's uninstrument:", httpx_adapter().installed)
"""


def test_runs_patch_without_the_instrumentation_package_and_leave_the_users_on(
    run_agent: Any, server: TestServer
) -> None:
    done = run_agent(ADAPTERS_AND_INSTRUMENTORS, args=[server.url("/json?adapters=1")])
    assert done.returncode == 0, done.stderr
    assert "instrumentation imported in a run: False" in done.stdout
    assert "patched in a run: True True" in done.stdout
    assert "patched after the run: False False" in done.stdout
    assert "user's patch after the runs: True True" in done.stdout
    assert "after the user's uninstrument: False" in done.stdout
    calls = [s for s in done.spans() if s.attributes.get("agenttrace.kind") == "call"]
    assert "instrumentation imported after requests: False" in done.stdout
    assert [s.attributes.get("agenttrace.call.library") for s in calls] == ["httpx", "urllib3"]
    assert "could not" not in done.stderr
