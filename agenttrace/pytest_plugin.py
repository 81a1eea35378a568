"""AgentTrace's pytest plugin: record a test's calls once, replay them offline in CI (docs/testing.md).

Registered through the ``pytest11`` entry point ``agenttrace``; inert until a test asks for it
with ``@pytest.mark.agenttrace`` (on the test, its class or its module) or the
``agenttrace_recording`` fixture. Importing this module loads nothing of AgentTrace's recording
or replay machinery; a marked test does, when it runs.

For each marked test:

* its recording is ``<test file's folder>/recordings/<module>/<test>.jsonl`` (the ini option
  ``agenttrace_recordings_dir`` moves the root, the marker's ``path=`` names the file);
* the record mode (``--agenttrace-record-mode``, the ini option ``agenttrace_record_mode``, the
  marker's ``record_mode=``) decides: ``once`` records when the file is missing and replays it
  when present, ``none`` only replays (a missing file fails the test), ``new_episodes`` replays
  what is recorded and records the rest into the same file, ``all`` records again;
* the test function is the run; its calls (and those of the runs, threads and Python
  subprocesses it starts) are recorded into the file, written only if the test passed;
* replay is ``governance`` by default: a call not in the recording, or a reach outside the
  sandbox, fails the test even when the code under test caught the error.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from agenttrace._core.config import Settings
    from agenttrace._core.run import RunContext
    from agenttrace._replay.session import ReplaySession

__all__ = ["RECORD_MODES", "AgentTraceRecording", "ReplayReport", "agenttrace_recording"]

RECORD_MODES = ("once", "none", "new_episodes", "all")
MARKER = "agenttrace"
_MARKER_KEYS = (
    "record_mode",
    "governance_level",
    "path",
    "ignore",
    "fail_on_unused",
    "keep_failed",
    "live",
    "live_from",
)
_GOVERNANCE_LEVELS = ("relaxed", "governance")
_LISTED = 10  # unused calls listed in the report section


@dataclass
class ReplayReport:
    """What replay did for a test so far: calls served from the recording, missed, and never made.

    ``missed``: ``"METHOD URL"`` of each call the recording lacks; ``unused``: recorded calls
    of the test's run not served (yet); ``leaks``: reaches outside the sandbox; ``violations``:
    the governance errors (also when the code under test caught them).
    """

    served: int = 0
    missed: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)


@dataclass
class AgentTraceRecording:
    """The ``agenttrace_recording`` fixture: the test's recording, the mode in effect, the replay report.

    ``path``: the recording file; ``record_mode``: ``once``, ``none``, ``new_episodes`` or
    ``all``; ``mode``: ``"record"`` or ``"replay"`` (what this run of the test does);
    ``governance_level``: of the replay; ``written``: True once the recording was written
    (after a passing recording test).
    """

    path: Path
    record_mode: str
    mode: str
    governance_level: str
    ignore: tuple[str, ...] = ()
    fail_on_unused: bool = False
    keep_failed: bool = False
    live: tuple[str, ...] = ()  # calls the replay lets go live (replay_live)
    live_from: str | None = None  # where the replay goes live (replay_live_from)
    written: bool = False
    _session: ReplaySession | None = field(default=None, repr=False)
    _run: Any = field(default=None, repr=False)
    _final: ReplayReport | None = field(default=None, repr=False)

    @property
    def replaying(self) -> bool:
        """True when this run of the test replays its recording."""
        return self.mode == "replay"

    @property
    def report(self) -> ReplayReport:
        """The replay report so far (empty when recording); final once the test's run ended."""
        if self._final is not None:
            return self._final
        return _live_report(self._session, self._run)


# --- options and the marker ----------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--agenttrace-record-mode`` and friends, and the ini options."""
    group = parser.getgroup("agenttrace", "AgentTrace recordings (@pytest.mark.agenttrace)")
    group.addoption(
        "--agenttrace-record-mode",
        choices=RECORD_MODES,
        default=None,
        help="once (default: record when the recording is missing), none (replay only: CI), "
        "new_episodes (replay, record what is new), all (record again)",
    )
    group.addoption(
        "--agenttrace-keep-failed",
        action="store_true",
        default=None,
        help="write a test's recording even when the test failed",
    )
    group.addoption(
        "--agenttrace-write-replay-traces",
        action="store_true",
        default=None,
        help="also write the trace of each replay (to the trace_dir setting's folder) for agenttrace diff",
    )
    parser.addini("agenttrace_record_mode", "default record mode of marked tests", default="once")
    parser.addini(
        "agenttrace_recordings_dir",
        "folder of the recordings (relative to the rootdir); default: recordings/ beside each test file",
        default="",
    )
    parser.addini("agenttrace_governance_level", "governance level of replays: governance or relaxed", default="")
    parser.addini("agenttrace_fail_on_unused", "fail a replaying test whose recorded calls were not all made", "bool")
    parser.addini("agenttrace_keep_failed", "write recordings of failed tests too", "bool", default=False)
    parser.addini("agenttrace_write_replay_traces", "write the trace of each replay", "bool", default=False)
    parser.addini("agenttrace_ignore", "match rules for every marked test, one a line", "linelist", default=[])


def pytest_configure(config: pytest.Config) -> None:
    """Declare the marker (``--strict-markers`` accepts it)."""
    config.addinivalue_line(
        "markers",
        "agenttrace(record_mode=None, governance_level=None, path=None, ignore=(), fail_on_unused=None, "
        "keep_failed=None, live=(), live_from=None): record the test's calls once, replay them afterwards "
        "(docs/testing.md)",
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    """Let go of the recording kept for the tests that replay the same file (if a test loaded one)."""
    loader = sys.modules.get("agenttrace._replay.loader")
    if loader is not None:
        loader.keep_last_recording(False)


_PLAN = pytest.StashKey["AgentTraceRecording | None"]()


def _marker_kwargs(item: pytest.Item) -> dict[str, Any]:
    """The marker's keyword arguments, the closest marker winning (test over class over module)."""
    merged: dict[str, Any] = {}
    for mark in item.iter_markers(MARKER):
        if mark.args:
            raise pytest.UsageError(
                f"{item.nodeid}: @pytest.mark.agenttrace takes keyword arguments only "
                f"({', '.join(_MARKER_KEYS)}), got {mark.args!r}"
            )
        for key, value in mark.kwargs.items():
            if key not in _MARKER_KEYS:
                raise pytest.UsageError(
                    f"{item.nodeid}: @pytest.mark.agenttrace got an unknown argument {key!r}; "
                    f"valid ones are {', '.join(_MARKER_KEYS)}"
                )
            merged.setdefault(key, value)
    return merged


def _asked(item: pytest.Item) -> bool:
    return item.get_closest_marker(MARKER) is not None or "agenttrace_recording" in getattr(item, "fixturenames", ())


def _plan(item: pytest.Item) -> AgentTraceRecording:
    from agenttrace._replay.matcher import parse_ignore
    from agenttrace._testing.recordings import default_path

    config = item.config
    kwargs = _marker_kwargs(item)
    record_mode = str(
        kwargs.get("record_mode")
        or config.getoption("agenttrace_record_mode")
        or config.getini("agenttrace_record_mode")
    )
    if record_mode not in RECORD_MODES:
        raise pytest.UsageError(
            f"{item.nodeid}: agenttrace record mode {record_mode!r} is not valid; "
            f"expected one of {', '.join(RECORD_MODES)}"
        )
    governance = str(kwargs.get("governance_level") or config.getini("agenttrace_governance_level") or "governance")
    if governance not in _GOVERNANCE_LEVELS:
        raise pytest.UsageError(
            f"{item.nodeid}: agenttrace governance_level {governance!r} is not valid; "
            "expected 'governance' or 'relaxed'"
        )
    ignore_value = kwargs.get("ignore", ())
    ignore = [ignore_value] if isinstance(ignore_value, str) else list(ignore_value or ())
    ignore = [*config.getini("agenttrace_ignore"), *ignore]
    try:
        parse_ignore(ignore)
    except ValueError as exc:
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.agenttrace(ignore=...): {exc}") from None
    test_file = Path(str(item.path))
    explicit = kwargs.get("path")
    if explicit is not None:
        path = Path(explicit)
        if not path.is_absolute():
            path = test_file.parent / path
    else:
        root_option = str(config.getini("agenttrace_recordings_dir") or "")
        root = (Path(str(config.rootpath)) / root_option) if root_option else None
        test_name = ".".join(item.nodeid.split("::")[1:]) or item.name
        path = default_path(test_file, test_file.stem, test_name, root)
    keep_failed = kwargs.get("keep_failed")
    if keep_failed is None:
        keep_failed = bool(config.getoption("agenttrace_keep_failed") or config.getini("agenttrace_keep_failed"))
    fail_on_unused = kwargs.get("fail_on_unused")
    if fail_on_unused is None:
        fail_on_unused = bool(config.getini("agenttrace_fail_on_unused"))
    live_value = kwargs.get("live", ())
    live = (live_value,) if isinstance(live_value, str) else tuple(live_value or ())
    live_from = kwargs.get("live_from")
    try:
        from agenttrace._replay.live import parse_fork_point, parse_live

        parse_live(live, "live")
        if live_from is not None:
            parse_fork_point(str(live_from), "live_from")
    except ValueError as exc:
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.agenttrace: {exc}") from None
    replaying = path.is_file() and record_mode != "all"
    return AgentTraceRecording(
        path=path,
        record_mode=record_mode,
        mode="replay" if replaying else "record",
        governance_level="relaxed" if record_mode == "new_episodes" else governance,
        ignore=tuple(ignore),
        fail_on_unused=bool(fail_on_unused),
        keep_failed=bool(keep_failed),
        live=live,
        live_from=None if live_from is None else str(live_from),
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Work out the recording of a test that asked for one (before its fixtures run)."""
    item.stash[_PLAN] = _plan(item) if _asked(item) else None


@pytest.fixture
def agenttrace_recording(request: pytest.FixtureRequest) -> AgentTraceRecording:
    """The test's recording (path, record mode, mode in effect) and its replay report."""
    plan: AgentTraceRecording | None = request.node.stash.get(_PLAN, None)
    if plan is None:  # pragma: no cover - setup always plans a test that uses this fixture
        raise RuntimeError("agenttrace_recording is only available in a test (not in a fixture of wider scope)")
    return plan


# --- running a marked test -----------------------------------------------------------------------


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Configure record or replay around the test, make its function the run, write the recording."""
    plan = item.stash.get(_PLAN, None)
    if plan is None or not isinstance(item, pytest.Function):
        return (yield)
    if plan.record_mode == "none" and not plan.path.is_file():
        pytest.fail(
            f"agenttrace: no recording for this test at {plan.path} (record mode 'none' only replays); "
            f"record it with: pytest {_rerun_target(item)} --agenttrace-record-mode=once",
            pytrace=False,
        )
    with _Configured(item, plan) as folder:
        original = item.obj
        item.obj = _as_run(original, plan, item.name)
        try:
            result = yield
        except BaseException:
            try:
                _finish(item, plan, folder, passed=False)
            except Exception as exc:  # noqa: BLE001 - the test's own failure is the one to report
                item.add_report_section("call", "agenttrace", f"could not finish the recording: {exc!r}")
            raise
        finally:
            item.obj = original
        _finish(item, plan, folder, passed=True)
    return result


def _rerun_target(item: pytest.Item) -> str:
    nodeid = item.nodeid
    return f"'{nodeid}'" if any(c in nodeid for c in " []") else nodeid


class _Configured:
    """``init()`` for the test (and the environment its Python subprocesses inherit); undone after."""

    def __init__(self, item: pytest.Item, plan: AgentTraceRecording) -> None:
        self.item = item
        self.plan = plan
        # Not tempfile.mkdtemp: its name generator's first seeding must be left to the test's code.
        from agenttrace._replay.entropy import private_folder

        self.folder = Path(private_folder("agenttrace-test-"))
        self.previous: Settings | None = None
        self.environ: dict[str, str | None] = {}
        self.ignore_before: Any = None

    def __enter__(self) -> Path:
        import agenttrace
        from agenttrace._core.runtime import runtime
        from agenttrace._replay import matcher

        plan = self.plan
        self.previous = runtime.settings
        write = plan.mode == "record" or plan.record_mode == "new_episodes"
        write_replay = bool(
            self.item.config.getoption("agenttrace_write_replay_traces")
            or self.item.config.getini("agenttrace_write_replay_traces")
        )
        replay_dir: str | None = None
        if plan.replaying and not write and write_replay:
            from agenttrace._core.config import resolve_settings

            replay_dir = str(resolve_settings({}).trace_dir)
        trace_dir = replay_dir or str(self.folder)
        env = {
            "AGENTTRACE_MODE": plan.mode,
            "AGENTTRACE_REPLAY_EVENTS_FILE": str(plan.path.resolve()) if plan.replaying else None,
            "AGENTTRACE_GOVERNANCE_LEVEL": plan.governance_level,
            "AGENTTRACE_TRACE_DIR": trace_dir,
            "AGENTTRACE_LOCAL_FILES": "1" if write or replay_dir else "0",
            "AGENTTRACE_QUIET": "1",
            "AGENTTRACE_BACKEND": "0",
            "AGENTTRACE_FAIL_ON_UNUSED": "1" if plan.fail_on_unused else "0",
            "AGENTTRACE_REPLAY_LIVE": ",".join(plan.live) if plan.replaying and plan.live else None,
            "AGENTTRACE_REPLAY_LIVE_FROM": plan.live_from if plan.replaying else None,
        }
        from agenttrace._replay.children import boot_pythonpath

        env["PYTHONPATH"] = boot_pythonpath(os.environ.get("PYTHONPATH", ""))
        env[matcher.IGNORE_ENV] = json.dumps(list(plan.ignore)) if plan.ignore else None
        for key, value in env.items():
            self.environ[key] = os.environ.get(key)
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self.ignore_before = matcher.ignoring(matcher.parse_ignore(plan.ignore))
        if plan.replaying:
            from agenttrace._replay.loader import keep_last_recording

            keep_last_recording(True)  # the next test replaying the same, unchanged file loads nothing
        try:
            agenttrace.init(
                mode="replay" if plan.replaying else "record",
                replay_events_file=str(plan.path.resolve()) if plan.replaying else None,
                governance_level=plan.governance_level,  # type: ignore[arg-type]  # checked by _plan
                trace_dir=trace_dir,
                local_files=write or replay_dir is not None,
                quiet=True,
                backend=False,
                fail_on_unused=plan.fail_on_unused,
                replay_live=list(plan.live) if plan.replaying else [],
                replay_live_from=plan.live_from if plan.replaying else None,
            )
        except BaseException:
            self.restore()
            raise
        if plan.replaying:
            from agenttrace._replay import state

            plan._session = state.session
        return self.folder

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def restore(self) -> None:
        """Put back the environment, the match rules and the settings in force before the test."""
        from agenttrace._core import lifecycle
        from agenttrace._core.config import resolve_settings
        from agenttrace._replay import matcher

        for key, value in self.environ.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if self.ignore_before is not None:
            matcher.ignoring(self.ignore_before)
        try:
            lifecycle.configure(self.previous if self.previous is not None else resolve_settings({}))
        except Exception as exc:  # noqa: BLE001 - the environment's settings are the user's to fix, later
            from agenttrace._core.errors import warn_once

            warn_once("pytest-restore", f"could not restore the settings after a marked test: {exc}")
        shutil.rmtree(self.folder, ignore_errors=True)


def _as_run(function: Callable[..., Any], plan: AgentTraceRecording, name: str) -> Callable[..., Any]:
    """``function`` wrapped so that each call is one AgentTrace run named after the test.

    An ``async def`` test gets an ``async def`` wrapper: the run opens inside the task the test
    runs in (pytest-asyncio, anyio), where its context (which run, which step) is seen.
    """
    from agenttrace._core.run import RunContext

    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            ctx = RunContext(function, name)
            plan._run = ctx.__enter__()
            try:
                result = await function(*args, **kwargs)
            except BaseException as exc:
                _end(ctx, plan, exc)
                raise
            _end(ctx, plan, None)
            return result

        return run_async

    @functools.wraps(function)
    def run_sync(*args: Any, **kwargs: Any) -> Any:
        ctx = RunContext(function, name)
        plan._run = ctx.__enter__()
        try:
            result = function(*args, **kwargs)
        except BaseException as exc:
            _end(ctx, plan, exc)
            raise
        _end(ctx, plan, None)
        return result

    return run_sync


def _end(ctx: RunContext, plan: AgentTraceRecording, error: BaseException | None) -> None:
    """End the test's run; a governance violation the test's code caught is raised here."""
    plan._final = _live_report(plan._session, plan._run) if plan.replaying else ReplayReport()
    try:
        ctx.finish(error=error)
    finally:
        if plan.replaying and plan._final is not None and plan._run is not None:
            # Violations found at the run's end (fail_on_unused) are known only now.
            plan._final.violations = [str(v) for v in plan._run.violations]


def _live_report(session: ReplaySession | None, run: Any) -> ReplayReport:
    if session is None or run is None:
        return ReplayReport()
    stats = session._stats.get(id(run))  # the session keeps each active run's counts
    if stats is None:
        return ReplayReport(violations=[str(v) for v in run.violations])
    unused = session.matcher.unused(stats.replay_of or None) if not stats.nested else []
    return ReplayReport(
        served=stats.served,
        missed=list(stats.missed),
        unused=[_call_label(e) for e in unused],
        leaks=list(stats.leaks),
        violations=[str(v) for v in run.violations],
    )


def _call_label(exchange: Any) -> str:
    step = "/".join(exchange.step_path) or "(run)"
    return f"{exchange.request.method} {exchange.request.url} (step {step}, call #{exchange.ordinal})"


def _finish(item: pytest.Item, plan: AgentTraceRecording, folder: Path, *, passed: bool) -> None:
    """Write the recording (a passing test, or ``keep_failed``) and add the report section."""
    from agenttrace._testing.recordings import as_recording, merge_into, span_lines, trace_files

    lines: list[str] = []
    write = passed or plan.keep_failed
    if plan.mode == "record" and write:
        files = trace_files(folder)
        if files:
            count = merge_into(plan.path, span_lines(files))
            plan.written = True
            lines.append(f"recorded {count} span(s) into {plan.path}")
        else:
            lines.append(f"nothing was recorded (no run in the test); {plan.path} not written")
    elif plan.mode == "record":
        lines.append(f"the test failed: its recording {plan.path} was not written (--agenttrace-keep-failed keeps it)")
    elif plan.record_mode == "new_episodes" and write:
        new, made = as_recording(trace_files(folder), plan.path)
        if made:
            count = merge_into(plan.path, new)
            plan.written = True
            lines.append(f"new_episodes: recorded {made} new call(s) into {plan.path} ({count} span(s) in all)")
    report = plan.report if plan.replaying else None
    if report is not None:
        lines.insert(
            0,
            f"replayed {plan.path} ({plan.governance_level}): {report.served} call(s) served, "
            f"{len(report.missed)} missed, {len(report.unused)} recorded call(s) unused, {len(report.leaks)} leak(s)",
        )
        for label, entries in (("missed", report.missed), ("unused", report.unused), ("leak", report.leaks)):
            lines.extend(f"  {label}: {entry}" for entry in entries[:_LISTED])
            if len(entries) > _LISTED:
                lines.append(f"  ... and {len(entries) - _LISTED} more {label}")
        lines.extend(f"  violation: {text}" for text in report.violations[:_LISTED])
    if lines:
        item.add_report_section("call", "agenttrace", "\n".join(lines))
