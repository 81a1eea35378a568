"""Recording files of the pytest plugin: where a test's recording lives, and writing it.

A test's calls are recorded as ordinary trace files in a private folder (one file per trace: the
test's own run, and one per subprocess agent it started); when the test passes they are merged
into its recording, written one span per line (each line a whole OTLP ``TracesData`` document),
in start order, so a re-recorded file reviews well in a pull request. The file is replaced
atomically: a reader never sees half of it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from agenttrace._core.errors import ConfigurationError
from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.KIND
from agenttrace._format.otlp_json import decode_attributes

__all__ = ["as_recording", "default_path", "merge_into", "safe_name", "span_lines", "trace_files"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str) -> str:
    """``text`` as a file name: runs of other characters than letters, digits, ``.``, ``_`` and ``-`` become ``-``.

    ``test_chat[gpt-4o/fast]`` becomes ``test_chat-gpt-4o-fast``; a name left empty becomes ``test``.
    """
    cleaned = _UNSAFE.sub("-", text).strip("-.")
    return cleaned[:200] or "test"


def default_path(test_file: Path, module: str, test: str, root: Path | None = None) -> Path:
    """``<root or the test file's folder>/recordings/<module>/<test>.jsonl`` (root: no ``recordings`` level)."""
    folder = (root if root is not None else test_file.parent / "recordings") / safe_name(module)
    return folder / f"{safe_name(test)}.jsonl"


def trace_files(folder: Path) -> list[Path]:
    """The trace files written in ``folder`` (interrupted ones too), in name order."""
    return sorted(p for p in folder.glob("*.jsonl") if p.is_file())


def _documents(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                document = json.loads(line)
            except ValueError as exc:
                raise ConfigurationError(f"{path}, line {number}: not JSON ({exc})") from None
            if not isinstance(document, dict):
                raise ConfigurationError(f"{path}, line {number}: expected an OTLP TracesData object")
            yield document


def _spans(paths: Iterable[Path]) -> Iterator[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """``(resource, scope, span)`` of every span of the files."""
    for path in paths:
        for document in _documents(path):
            for resource_spans in document.get("resourceSpans", ()):
                resource = {k: v for k, v in resource_spans.items() if k != "scopeSpans"}
                for scope_spans in resource_spans.get("scopeSpans", ()):
                    scope = {k: v for k, v in scope_spans.items() if k != "spans"}
                    for span in scope_spans.get("spans", ()):
                        yield resource, scope, span


def _line(resource: dict[str, Any], scope: dict[str, Any], span: dict[str, Any]) -> tuple[int, str, str]:
    document = {"resourceSpans": [{**resource, "scopeSpans": [{**scope, "spans": [span]}]}]}
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    return int(span.get("startTimeUnixNano", 0) or 0), str(span.get("spanId", "")), text


def span_lines(paths: Iterable[Path]) -> list[tuple[int, str, str]]:
    """Every span of the files as ``(start ns, span id, one-span TracesData line)``."""
    return [_line(*found) for found in _spans(paths)]


# Attributes of a replay's run span that a recording made from it must not carry (it would read
# as a replay, and its report would be stale).
_REPLAY_ONLY = frozenset(
    {
        S.RUN_REPLAY_OF,
        S.REPLAY_SOURCE,
        S.REPLAY_CALLS_SERVED,
        S.REPLAY_CALLS_MISSED,
        S.REPLAY_LEAKS,
        S.REPLAY_CALLS_UNUSED,
        S.REPLAY_ENTROPY_SERVED,
        S.REPLAY_CLOCK_SERVED,
        S.REPLAY_VIOLATIONS,
        S.CALL_REPLAYED,
    }
)


def as_recording(paths: Iterable[Path], recording: Path) -> tuple[list[tuple[int, str, str]], int]:
    """The traces of a relaxed replay of ``recording`` (``new_episodes``) turned into a recording.

    Each call the replay served takes back the payload events of the recorded call it was served
    from (the replay's trace keeps only their size and digest), and keeps its own entropy events;
    the calls it made for real keep
    theirs; the run span drops the replay's report and says ``record``. Returns the lines and
    the number of calls made for real (0: nothing new to write).
    """
    recorded = {str(span.get("spanId", "")): span for _, _, span in _spans([recording])}
    out: list[tuple[int, str, str]] = []
    new_calls = 0
    for resource, scope, found in _spans(paths):
        span = found
        attributes = decode_attributes(span.get("attributes"))
        kind = attributes.get(S.KIND)
        if kind == "call":
            served = _served_from(span)
            original = recorded.get(served) if served is not None else None
            if original is not None:
                # The payloads are the recorded call's; the draws are this run's (the replay drew
                # them all, served or new, and numbered them in its own sequence).
                draws = [e for e in span.get("events", ()) if e.get("name") == S.EVENT_ENTROPY]
                payloads = [e for e in original.get("events", ()) if e.get("name") != S.EVENT_ENTROPY]
                span = {**span, "events": draws + payloads}
            elif served is None:
                new_calls += 1
        if kind in ("call", "run"):
            kept = [kv for kv in span.get("attributes", ()) if kv.get("key") not in _REPLAY_ONLY]
            if kind == "run":
                kept = [
                    {"key": S.RUN_MODE, "value": {"stringValue": "record"}} if kv.get("key") == S.RUN_MODE else kv
                    for kv in kept
                ]
            span = {**span, "attributes": kept}
        out.append(_line(resource, scope, span))
    return out, new_calls


def _served_from(span: dict[str, Any]) -> str | None:
    """The span id of the recorded call a replay served this call from, or None."""
    for event in span.get("events", ()):
        if event.get("name") == S.EVENT_RESPONSE:
            served = decode_attributes(event.get("attributes")).get(S.SERVED_SPAN_ID)
            return None if served is None else str(served)
    return None


def merge_into(target: Path, lines: list[tuple[int, str, str]]) -> int:
    """Write ``lines`` to ``target`` atomically, in start order; returns the number of spans written."""
    ordered = [text for _, _, text in sorted(lines, key=lambda item: (item[0], item[1]))]
    target.parent.mkdir(parents=True, exist_ok=True)
    from agenttrace._replay.entropy import private_file  # not tempfile: see private_file

    handle, temporary = private_file(f".{target.name}.", ".tmp", target.parent)
    try:
        # backslashreplace: a lone surrogate (only ever inside a JSON string) is written as its
        # \\uXXXX escape, which reads back as the same string (as the trace writer does).
        with os.fdopen(handle, "w", encoding="utf-8", errors="backslashreplace", newline="\n") as out:
            for text in ordered:
                out.write(text)
                out.write("\n")
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return len(ordered)
