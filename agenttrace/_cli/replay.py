"""``agenttrace replay FILE -- COMMAND...``: run any command with AgentTrace in replay mode.

The recording is checked first (a bad file fails here, before the command starts); the
command then runs unchanged with ``AGENTTRACE_MODE=replay`` and
``AGENTTRACE_REPLAY_EVENTS_FILE`` set, so ``@agenttrace.run`` in it replays the recording.
The exit code is the command's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["add_arguments", "run"]


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--governance-level",
        choices=("relaxed", "governance"),
        default=None,
        help="relaxed: unrecorded calls warn and go through; governance: they fail (default: "
        "AGENTTRACE_GOVERNANCE_LEVEL, else relaxed)",
    )
    parser.add_argument("--pacing", choices=("instant", "recorded"), default=None, help="stream chunk pacing")
    parser.add_argument(
        "--fail-on-unused", action="store_true", help="in governance, fail when recorded calls go unused"
    )
    parser.add_argument(
        "--live",
        action="append",
        default=None,
        metavar="CALLS",
        help="let these calls go live, all else served: llm, tool, all, a host, a URL prefix or a * pattern "
        "(repeatable, or comma-separated)",
    )
    parser.add_argument(
        "--live-from",
        default=None,
        metavar="POINT",
        help="serve everything before POINT, let everything from it go live: STEP, STEP#N or #N (the run's N-th call)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        metavar="N",
        help="run the command N times and summarise how each run ended against the recording",
    )
    parser.add_argument("--json", action="store_true", help="with --repeat: the summary as JSON")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``replay`` command's arguments."""
    _options(parser)
    # FILE, options and "-- COMMAND" in one list: argparse cannot split "--" after a positional
    # inside a subcommand, so run() does.
    parser.add_argument(
        "args",
        nargs=argparse.REMAINDER,
        metavar="FILE [options] -- COMMAND",
        help="trace file to replay (OTLP JSON Lines, OTLP JSON or a JSON event list), then -- and the command",
    )


def _split(args: argparse.Namespace) -> tuple[argparse.Namespace, list[str]]:
    tokens = list(args.args)
    head, command = (tokens[: tokens.index("--")], tokens[tokens.index("--") + 1 :]) if "--" in tokens else (tokens, [])
    parser = argparse.ArgumentParser(prog="agenttrace replay")
    parser.add_argument("file")
    _options(parser)
    parsed = parser.parse_args(head)
    for name in ("governance_level", "pacing"):
        if getattr(parsed, name) is None:
            setattr(parsed, name, getattr(args, name))
    parsed.fail_on_unused = parsed.fail_on_unused or args.fail_on_unused
    parsed.live = [*(args.live or ()), *(parsed.live or ())]
    for name in ("live_from", "repeat"):
        if getattr(parsed, name) is None:
            setattr(parsed, name, getattr(args, name))
    parsed.json = parsed.json or args.json
    return parsed, command


def _script(command: list[str]) -> tuple[str | None, Path | None]:
    """The run name a process run would get for ``command`` (``python x.py`` or ``-m mod``), and the file."""
    if not command or not Path(command[0]).name.startswith("python"):
        return None, None
    rest = command[1:]
    while rest and rest[0].startswith("-") and rest[0] not in ("-m", "-c"):
        rest = rest[1:]
    if not rest or rest[0] == "-c":
        return None, None
    if rest[0] == "-m":
        return (rest[1], None) if len(rest) > 1 else (None, None)
    return Path(rest[0]).name, Path(rest[0])


def _needs_process_run(command: list[str], events: list[dict[str, object]]) -> bool:
    name, path = _script(command)
    if name is None:
        return False
    if any(e.get("kind") == "run" and e.get("name") == name for e in events):
        return True  # recorded by agenttrace-instrument: its process run bears the script's name
    try:
        return path is not None and "agenttrace" not in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def run(args: argparse.Namespace) -> int:
    """Check the recording, then run the command in replay mode; return its exit code."""
    from agenttrace._core.errors import ConfigurationError
    from agenttrace._replay.loader import load_recording

    args, command = _split(args)
    if not command:
        print("agenttrace replay: give the command to run after --, e.g. -- python agent.py", file=sys.stderr)
        return 2
    from agenttrace._replay.live import parse_fork_point, parse_live

    live = [part.strip() for entry in args.live for part in entry.split(",") if part.strip()]
    try:
        parse_live(live, "--live")
        if args.live_from is not None:
            parse_fork_point(args.live_from, "--live-from")
    except ValueError as exc:
        print(f"agenttrace replay: {exc}", file=sys.stderr)
        return 2
    if args.repeat is not None and args.repeat < 1:
        print(f"agenttrace replay: --repeat {args.repeat}: expected a whole number from 1", file=sys.stderr)
        return 2
    path = Path(args.file).resolve()
    level = args.governance_level or os.environ.get("AGENTTRACE_GOVERNANCE_LEVEL", "relaxed")
    try:
        # Checked as the replay will read it: in governance, bodies against their digests.
        events, exchanges = load_recording(path, str(path), sealed=level == "governance")
    except ConfigurationError as exc:
        print(f"agenttrace replay: {exc}", file=sys.stderr)
        return 2
    calls = len(exchanges)
    env = dict(os.environ)
    env["AGENTTRACE_MODE"] = "replay"
    env["AGENTTRACE_REPLAY_EVENTS_FILE"] = str(path)
    if args.governance_level:
        env["AGENTTRACE_GOVERNANCE_LEVEL"] = args.governance_level
    if args.pacing:
        env["AGENTTRACE_REPLAY_PACING"] = args.pacing
    if args.fail_on_unused:
        env["AGENTTRACE_FAIL_ON_UNUSED"] = "1"
    if live:
        env["AGENTTRACE_REPLAY_LIVE"] = ",".join(live)
    if args.live_from is not None:
        env["AGENTTRACE_REPLAY_LIVE_FROM"] = args.live_from
    if _needs_process_run(command, events):
        # An unmodified script (recorded with agenttrace-instrument) has no @run of its own:
        # replay it the same way, with one run per process, or its calls would go out for real.
        from agenttrace._replay.children import boot_pythonpath

        env["PYTHONPATH"] = boot_pythonpath(env.get("PYTHONPATH", ""))
    level = env.get("AGENTTRACE_GOVERNANCE_LEVEL", "relaxed")
    print(f"agenttrace: replaying {calls} recorded call(s) from {args.file} ({level})", file=sys.stderr)
    if args.repeat is not None:
        from agenttrace._cli.trials import run_trials

        return run_trials(path, command, env, args.repeat, as_json=args.json)
    try:
        done = subprocess.run(command, env=env, check=False)  # noqa: S603 - the user's own command
    except FileNotFoundError:
        print(f"agenttrace replay: command not found: {command[0]}", file=sys.stderr)
        return 127
    except KeyboardInterrupt:
        return 130
    return done.returncode
