"""Raw sockets and DNS outside instrumented clients are recorded; inside them they are not."""

from __future__ import annotations

import socket

import httpx

from tests.recording import Recorder
from tests.servers import TestServer


def test_raw_connect_and_dns_recorded(recorder: Recorder, server: TestServer) -> None:
    """A raw TCP connect and a getaddrinfo made by the agent are their own CLIENT spans."""

    def agent() -> None:
        socket.getaddrinfo("localhost", server.port)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5):
            pass

    _, trace = recorder.run(agent)
    names = [s["name"] for s in trace.call_spans]
    assert "dns" in names
    assert "connect" in names
    connect = next(s for s in trace.call_spans if s["name"] == "connect")
    assert trace.attrs(connect)["server.port"] == server.port
    assert "agenttrace.connect" in trace.events(connect)


def test_client_sockets_not_doubled(recorder: Recorder, server: TestServer) -> None:
    """An instrumented client's own connect and DNS are part of its call: no extra spans."""

    def agent() -> None:
        with httpx.Client() as client:
            client.get(f"http://localhost:{server.port}/json")

    _, trace = recorder.run(agent)
    assert [s["name"] for s in trace.call_spans] == ["GET"]
