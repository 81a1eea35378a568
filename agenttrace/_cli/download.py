"""``agenttrace download TRACE_ID``: fetch a trace from the backend as a file ``agenttrace replay`` runs.

The backend and the key are the agent's own settings (``AGENTTRACE_API_URL``,
``AGENTTRACE_API_KEY``, the configuration file), or ``--server``; the file is
``trace-<trace_id>.jsonl`` in the working folder unless ``--output`` names another. It is written
whole or not at all (a temporary file renamed into place), and checked to be a trace before that.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

from agenttrace._core.config import resolve_settings
from agenttrace._core.errors import ConfigurationError

__all__ = ["add_arguments", "run"]

_TRACE_ID = re.compile(r"[0-9a-fA-F]{32}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``agenttrace download``."""
    parser.add_argument("trace_id", metavar="TRACE_ID", help="the trace's id: 32 hex digits, as the web UI shows it")
    parser.add_argument(
        "--server", help="the backend's URL (default: AGENTTRACE_API_URL, else https://api.theagenttrace.com)"
    )
    parser.add_argument("-o", "--output", type=Path, help="file to write (default: trace-<TRACE_ID>.jsonl)")


def _fail(message: str) -> int:
    print(f"agenttrace download: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Download the trace; exit 0 with the file written, 2 with what went wrong."""
    import httpx

    from agenttrace._format.files import spans_of_lines

    if not _TRACE_ID.fullmatch(args.trace_id):
        return _fail(f"trace id {args.trace_id!r} is not valid; expected 32 hex digits")
    trace_id = args.trace_id.lower()
    try:
        settings = resolve_settings({} if args.server is None else {"api_url": args.server})
    except ConfigurationError as exc:
        return _fail(str(exc))
    url = f"{settings.api_url}/api/traces/{trace_id}/download"
    headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
    try:
        # trust_env=False: the backend is the one named, not one a proxy variable reroutes to.
        with httpx.Client(timeout=60, trust_env=False, follow_redirects=True) as client:
            response = client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        return _fail(f"cannot reach {settings.api_url} ({type(exc).__name__}: {exc})")
    if response.status_code == 401:
        how = "AGENTTRACE_API_KEY is not set" if not settings.api_key else "it refused the key in AGENTTRACE_API_KEY"
        return _fail(f"{settings.api_url} needs an API key: {how}")
    if response.status_code == 404:
        return _fail(f"{settings.api_url} has no trace {trace_id}")
    if response.status_code != 200:
        return _fail(f"{url} answered {response.status_code}: {response.text[:200]}")
    lines = [line for line in response.text.splitlines() if line.strip()]
    try:
        spans = spans_of_lines(lines, url)
    except ConfigurationError as exc:
        return _fail(f"the answer is not a trace file: {exc}")
    if not spans:
        return _fail(f"{url} answered with no spans")
    output: Path = args.output or Path(f"trace-{trace_id}.jsonl")
    temporary = None
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write("".join(line + "\n" for line in lines))
        os.replace(temporary, output)
    except OSError as exc:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        return _fail(f"cannot write {output}: {exc}")
    print(f"{output}  ({len(spans)} spans of trace {trace_id})")
    print(f"replay it: agenttrace replay {output} -- python agent.py")
    return 0
