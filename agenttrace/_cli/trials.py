"""``agenttrace replay --repeat N``: run the agent N times under one replay's settings and compare the ends.

Each trial runs the command with its own trace folder (the replay's own trace is written there,
whatever ``AGENTTRACE_LOCAL_FILES`` says) and its output kept in files beside it. A trial *ended
like the original* when its command exited 0 and each of its top-level runs ended with the
status and the result (compared as JSON data) of the recorded run at the same place. The summary
lists each trial with its first divergence from the recording (what the replay report says),
its result, and how many trials ended like the original; exit 0 when all did, 1 otherwise.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.RUN_RESULT
from agenttrace._format.files import SpanRecord, read_spans

__all__ = ["run_trials"]


def _top_runs(spans: Sequence[SpanRecord]) -> list[SpanRecord]:
    """The runs of a trace that no other span of it holds, in start order."""
    ids = {span.span_id for span in spans}
    runs = [s for s in spans if s.attributes.get(S.KIND) == "run" and s.parent_span_id not in ids]
    return sorted(runs, key=lambda span: span.start_ns)


def _result(span: SpanRecord) -> Any:
    text = span.attributes.get(S.RUN_RESULT)
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _ending(span: SpanRecord) -> tuple[str, Any]:
    return str(span.attributes.get(S.RUN_STATUS, "")), _result(span)


def run_trials(recording: Path, command: list[str], env: dict[str, str], count: int, *, as_json: bool) -> int:
    """Run ``command`` ``count`` times in replay (``env``) and print the summary.

    Returns 0 when every trial ended like the original, else 1.
    """
    from agenttrace._core.errors import ConfigurationError

    try:
        original = [_ending(run) for run in _top_runs(read_spans(recording))]
    except ConfigurationError as exc:
        print(
            f"agenttrace replay: --repeat compares each run's end with the recording's, which needs a trace "
            f"file (OTLP JSON Lines or JSON); {exc}",
            file=sys.stderr,
        )
        return 2
    folder = Path(tempfile.mkdtemp(prefix="agenttrace-trials-"))
    trials: list[dict[str, Any]] = []
    for number in range(1, count + 1):
        where = folder / f"trial-{number}"
        traces = where / "traces"
        traces.mkdir(parents=True)
        trial_env = {
            **env,
            "AGENTTRACE_TRACE_DIR": str(traces),
            "AGENTTRACE_LOCAL_FILES": "1",
            "AGENTTRACE_QUIET": "1",
        }
        with open(where / "stdout.txt", "wb") as out, open(where / "stderr.txt", "wb") as err:
            try:
                done = subprocess.run(command, env=trial_env, stdout=out, stderr=err, check=False)  # noqa: S603 - the user's own command
            except FileNotFoundError:
                print(f"agenttrace replay: command not found: {command[0]}", file=sys.stderr)
                return 127
        runs = [run for path in sorted(traces.glob("*.jsonl")) for run in _top_runs(read_spans(path))]
        runs.sort(key=lambda span: span.start_ns)
        endings = [_ending(run) for run in runs]
        noted = [r.attributes.get(S.REPLAY_FIRST_DIVERGENCE) for r in runs]
        divergence = next((str(text) for text in noted if text), "")
        trials.append(
            {
                "trial": number,
                "exit_code": done.returncode,
                "like_original": done.returncode == 0 and endings == original,
                "first_divergence": divergence,
                "status": [status for status, _ in endings],
                "result": [result for _, result in endings],
                "live_calls": sum(int(r.attributes.get(S.REPLAY_CALLS_LIVE, 0) or 0) for r in runs),
                "served_calls": sum(int(r.attributes.get(S.REPLAY_CALLS_SERVED, 0) or 0) for r in runs),
                "folder": str(where),
            }
        )
        print(f"agenttrace: trial {number}/{count} exited {done.returncode}", file=sys.stderr)
    alike = sum(trial["like_original"] for trial in trials)
    if as_json:
        summary = {
            "recording": str(recording),
            "original": {"status": [s for s, _ in original], "result": [r for _, r in original]},
            "trials": trials,
            "like_original": alike,
            "count": count,
        }
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        _print_table(recording, original, trials, alike, folder)
    return 0 if alike == count else 1


def _print_table(
    recording: Path, original: list[tuple[str, Any]], trials: list[dict[str, Any]], alike: int, folder: Path
) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)

    def shown(values: list[Any]) -> str:
        text = "; ".join(json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v for v in values)
        return text if len(text) <= 80 else text[:77] + "..."

    table = Table(title=escape(f"{len(trials)} replay(s) of {recording}"))
    table.add_column("trial", justify="right")
    table.add_column("exit", justify="right")
    table.add_column("like the original")
    table.add_column("first divergence")
    table.add_column("result")
    table.add_row("orig.", "", "", "", escape(shown([r for _, r in original])))
    for trial in trials:
        table.add_row(
            str(trial["trial"]),
            str(trial["exit_code"]),
            "[green]yes[/]" if trial["like_original"] else "[red]no[/]",
            escape(shown([trial["first_divergence"]]) if trial["first_divergence"] else "—"),
            escape(shown(trial["result"])),
        )
    console.print(table)
    console.print(
        f"{alike} of {len(trials)} run(s) ended like the original; outputs and traces in {folder}", markup=False
    )
