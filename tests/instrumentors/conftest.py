"""Fixtures for the instrumentor tests: loopback servers and a recorder that reads trace files."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import agenttrace  # noqa: E402
from agenttrace._core import warn as _warn  # noqa: E402
from agenttrace._demo.llm_server import FakeLLMServer  # noqa: E402
from tests.instrumentors.recording import Recorder  # noqa: E402
from tests.servers import TestServer  # noqa: E402


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[Recorder]:
    """A recorder writing trace files under tmp_path."""
    agenttrace.init(trace_dir=str(tmp_path), quiet=True, local_files=True)
    _warn._reset_for_tests()
    return Recorder(tmp_path)


@pytest.fixture(scope="session")
def server() -> Iterator[TestServer]:
    """The shared loopback HTTP server (tests/servers.py)."""
    with TestServer() as s:
        yield s


@pytest.fixture
def fresh_server() -> Iterator[TestServer]:
    """A loopback server of this test only (its request and connection counts start at 0)."""
    with TestServer() as s:
        yield s


@pytest.fixture(scope="session")
def llm() -> Iterator[FakeLLMServer]:
    """The bundled fake LLM server."""
    with FakeLLMServer() as s:
        yield s
