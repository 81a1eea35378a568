"""Trace files cut short by a killed writer: the whole lines are read, the torn last one is named."""

from __future__ import annotations

import fcntl
import json
from pathlib import Path

import pytest

from agenttrace import ConfigurationError
from agenttrace._core import errors
from agenttrace._format import exactjson
from agenttrace._format.files import cut_short, read_spans


def _line(name: str) -> str:
    span = {"traceId": "ab" * 16, "spanId": "cd" * 8, "name": name, "startTimeUnixNano": "1", "endTimeUnixNano": "2"}
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}, separators=(",", ":"))


@pytest.fixture(params=["orjson", "json"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Read with orjson, and as if orjson were not installed."""
    if request.param == "json":
        monkeypatch.setattr(exactjson, "_orjson", None)
    errors._reset_for_tests()
    return str(request.param)


def test_torn_last_line_is_skipped_with_a_warning(
    parser: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The lines before a torn last line are read; one warning names the file and the line."""
    path = tmp_path / "t.jsonl"
    path.write_text(_line("a") + "\n" + _line("b") + "\n" + _line("c")[:40], encoding="utf-8")
    assert [s.name for s in read_spans(path)] == ["a", "b"]
    err = capsys.readouterr().err
    assert f"trace file {path} was cut short: line 3, its last, is incomplete" in err
    assert err.count("WARNING") == 1


def test_a_bad_line_that_is_not_the_last_is_still_an_error(parser: str, tmp_path: Path) -> None:
    """Only a torn *last* line (no line break after it) is forgiven: a bad line followed by others is refused."""
    path = tmp_path / "t.jsonl"
    path.write_text(_line("a") + "\n" + _line("b")[:40] + "\n" + _line("c") + "\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"t\.jsonl, line 2: not valid JSON"):
        read_spans(path)


def test_a_bad_last_line_with_its_line_break_is_still_an_error(parser: str, tmp_path: Path) -> None:
    """A last line that was written whole (it ends with its line break) but is not JSON is refused."""
    path = tmp_path / "t.jsonl"
    path.write_text(_line("a") + "\n" + "not json\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"t\.jsonl, line 2: not valid JSON"):
        read_spans(path)


def test_cut_short_tells_live_from_dead_partial_files(tmp_path: Path) -> None:
    """A partial file is 'still being written' while a lock is held on it, 'cut short' once it is not."""
    partial = tmp_path / f".{'ab' * 16}.jsonl.partial-1-00ff00ff"
    partial.write_text(_line("a") + "\n", encoding="utf-8")
    with open(partial, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert cut_short(partial) == "still being written: its run has not ended"
    assert cut_short(partial) == "cut short: the process writing it died before its run ended"
    assert cut_short(tmp_path / f"{'ab' * 16}.incomplete.jsonl") is not None
    assert cut_short(tmp_path / f"{'ab' * 16}.jsonl") is None
