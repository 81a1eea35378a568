"""The last recording kept loaded (the pytest plugin's): reused only while its file is unchanged."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agenttrace._core.errors import ConfigurationError
from agenttrace._replay import loader
from agenttrace._replay.loader import keep_last_recording, load_recording
from tests.servers import TestServer

from .conftest import Recorded, Replayer

GET_AGENT = """
import json, sys, httpx, agenttrace

@agenttrace.run("getter")
def main(base):
    return httpx.get(base + "/json").json()["id"]

print(json.dumps(main(sys.argv[1])))
"""


@pytest.fixture
def recording(replayer: Replayer, server: TestServer) -> Recorded:
    """A one-call recording of GET_AGENT."""
    return replayer.record(GET_AGENT, [server.base_url])


@pytest.fixture
def keeping(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The last recording kept, as in a pytest session that replays; dropped afterwards.

    The recordings here were just written: the two seconds a file must be left alone before it
    is kept (see test_a_file_changed_just_before_its_load_is_not_kept) are waived.
    """
    monkeypatch.setattr(loader, "_RACY_NS", 0)
    keep_last_recording(True)
    try:
        yield
    finally:
        keep_last_recording(False)


def _recorded_id(recording: Recorded) -> str:
    return str(json.loads(recording.result.stdout))


def _edit_in_place(path: Path, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` (same length) and give the file back its modification time, as
    an editor or a ``touch -d`` could: only the change time, which no program sets, tells."""
    assert len(old) == len(new)
    before = path.stat()
    data = path.read_bytes()
    assert old.encode() in data  # the response body (and the run's result)
    path.write_bytes(data.replace(old.encode(), new.encode()))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def _served_body(path: Path, *, sealed: bool) -> bytes:
    _, exchanges = load_recording(path, "x", sealed=sealed)
    assert exchanges[0].response is not None
    return exchanges[0].response.body.data


@pytest.mark.usefixtures("keeping")
def test_an_unchanged_file_is_read_once(recording: Recorded) -> None:
    """A second load of the same unchanged file gives what the first built, as new lists."""
    events, exchanges = load_recording(recording.path, "x", sealed=True)
    again_events, again = load_recording(recording.path, "x", sealed=True)
    assert again[0] is exchanges[0]
    assert again == exchanges
    assert again_events == events
    assert again is not exchanges  # a caller's lists are its own
    assert again_events is not events
    other = load_recording(recording.path, "x", sealed=False)[1]
    assert other[0] is not exchanges[0]  # a relaxed load was never checked as a governance one


def test_a_file_changed_just_before_its_load_is_not_kept(recording: Recorded) -> None:
    """A file written in the last two seconds is read again: an edit in the same timestamp granule may not show."""
    os.utime(recording.path)  # changed now
    keep_last_recording(True)
    try:
        first = load_recording(recording.path, "x", sealed=True)[1]
        assert load_recording(recording.path, "x", sealed=True)[1][0] is not first[0]
    finally:
        keep_last_recording(False)


def test_without_keeping_every_load_reads_the_file(recording: Recorded) -> None:
    """Off (outside the pytest plugin), each load builds its own exchanges."""
    first = load_recording(recording.path, "x", sealed=True)[1]
    assert load_recording(recording.path, "x", sealed=True)[1][0] is not first[0]


@pytest.mark.usefixtures("keeping")
def test_a_body_edited_after_a_good_load_is_still_refused(recording: Recorded) -> None:
    """Tamper detection holds for a kept recording: an edit keeping size and mtime fails the digest check."""
    recorded_id = _recorded_id(recording)
    assert recorded_id.encode() in _served_body(recording.path, sealed=True)
    _edit_in_place(recording.path, recorded_id, "f" * len(recorded_id))
    with pytest.raises(ConfigurationError, match="does not match its"):
        load_recording(recording.path, "x", sealed=True)


@pytest.mark.usefixtures("keeping")
def test_a_recording_changed_between_two_loads_is_read_again(recording: Recorded) -> None:
    """A relaxed load (no digest check) of an edited file serves the edited body, not the kept one."""
    recorded_id = _recorded_id(recording)
    assert recorded_id.encode() in _served_body(recording.path, sealed=False)
    _edit_in_place(recording.path, recorded_id, "e" * len(recorded_id))
    assert b"e" * len(recorded_id) in _served_body(recording.path, sealed=False)


@pytest.mark.usefixtures("keeping")
def test_a_failed_load_is_not_kept(recording: Recorded, tmp_path: Path) -> None:
    """A file that failed to load fails again, with the same error, on the next load."""
    recorded_id = _recorded_id(recording)
    _edit_in_place(recording.path, recorded_id, "d" * len(recorded_id))
    errors = []
    for _ in range(2):
        with pytest.raises(ConfigurationError) as caught:
            load_recording(recording.path, "x", sealed=True)
        errors.append(str(caught.value))
    assert errors[0] == errors[1]
