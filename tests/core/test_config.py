"""Settings: argument > environment variable > default, and clear errors for bad values."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import agenttrace
from agenttrace._capture.filter import compile_filter
from agenttrace._core.config import DEFAULT_API_URL, SETTINGS_TABLE, resolve_settings

# A valid value for each setting, and a different valid value, as (argument, variable text).
_VALUES: dict[str, tuple[Any, str, Any, Any]] = {
    # name: (argument, env text, expected from argument, expected from env)
    "api_key": ("at_live_arg", "at_test_env", "at_live_arg", "at_test_env"),
    "api_url": ("http://127.0.0.1:1", "backend.example", "http://127.0.0.1:1", "https://backend.example"),
    "mode": ("record", "replay", "record", "replay"),
    "governance_level": ("relaxed", "governance", "relaxed", "governance"),
    "replay_events_file": ("arg.jsonl", "env.jsonl", "arg.jsonl", "env.jsonl"),
    "trace_dir": ("arg-dir", "env-dir", Path("arg-dir"), Path("env-dir")),
    "local_files": (False, "1", False, True),
    "quiet": (False, "yes", False, True),
    "max_body_bytes": (10, "20", 10, 20),
    "replay_pacing": ("instant", "recorded", "instant", "recorded"),
    "fail_on_unused": (True, "false", True, False),
    "virtual_clock": (False, "true", False, True),
    "replay_live": (["llm", "api.test"], "tool, https://x.test/", ("llm", "api.test"), ("tool", "https://x.test/")),
    "replay_live_from": ("lookup#2", " #3 ", "lookup#2", "#3"),
    "backend": (False, "on", False, True),
    "spool_dir": ("arg-spool", "env-spool", Path("arg-spool"), Path("env-spool")),
    "spool_max_bytes": (1000, "2000", 1000, 2000),
    "exit_timeout": (0.5, "1.5", 0.5, 1.5),
    "exit_upload": ("background", "wait", "background", "wait"),
    "export_timeout": (3.0, "4", 3.0, 4.0),
    "export_run_metadata": (False, "1", False, True),
    "openinference": (False, "1", False, True),
    "redact_headers": (["X-Arg"], "X-Env, X-Other", ("X-Arg",), ("X-Env", "X-Other")),
    "filter": (
        ["token"],
        "password, user.ssn,re:sk-[a-z]+",
        compile_filter("token"),
        compile_filter(["password", "user.ssn", re.compile("sk-[a-z]+")]),
    ),
}


def _env_settings() -> list[Any]:
    return [s for s in SETTINGS_TABLE if s.env is not None]


def test_every_setting_with_a_variable_has_test_values() -> None:
    """The precedence tests below cover every setting that has an environment variable."""
    assert {s.name for s in _env_settings()} <= set(_VALUES)


@pytest.mark.parametrize("setting", _env_settings(), ids=lambda s: s.name)
def test_argument_beats_variable(setting: Any) -> None:
    """An init() argument wins over the environment variable for every setting."""
    arg, env_text, expected_arg, _ = _VALUES[setting.name]
    resolved = resolve_settings({setting.name: arg}, {setting.env: env_text})
    assert getattr(resolved, setting.name) == expected_arg
    assert resolved.sources[setting.name] == "arg"


@pytest.mark.parametrize("setting", _env_settings(), ids=lambda s: s.name)
def test_variable_beats_default(setting: Any) -> None:
    """With no argument, the environment variable wins over the default for every setting."""
    _, env_text, _, expected_env = _VALUES[setting.name]
    resolved = resolve_settings({}, {setting.env: env_text})
    assert getattr(resolved, setting.name) == expected_env
    assert resolved.sources[setting.name] == "env"


def test_defaults() -> None:
    """With nothing set, the documented defaults apply."""
    resolved = resolve_settings({}, {})
    assert resolved.mode == "record"
    assert resolved.governance_level == "relaxed"
    assert resolved.api_key is None
    assert resolved.api_url == DEFAULT_API_URL == "https://api.theagenttrace.com"
    assert resolved.trace_dir == Path(".agenttrace/traces")
    assert resolved.local_files is True
    assert resolved.max_body_bytes == 10 * 1024 * 1024


def test_local_files_default_off_with_api_key() -> None:
    """Local files are the default only when no API key sends traces to the backend."""
    assert resolve_settings({"api_key": "at_test_x"}, {}).local_files is False
    assert resolve_settings({"api_key": "at_test_x", "local_files": True}, {}).local_files is True


@pytest.mark.parametrize("source", ["arg", "env"])
def test_bad_api_key_names_prefixes_never_the_key(source: str) -> None:
    """A key without at_live_/at_test_ is refused with the valid prefixes, and the key is not echoed."""
    secret = "sk-proj-SECRETVALUE123"
    arguments = {"api_key": secret} if source == "arg" else {}
    environ = {"AGENTTRACE_API_KEY": secret} if source == "env" else {}
    with pytest.raises(agenttrace.ConfigurationError) as caught:
        resolve_settings(arguments, environ)
    message = str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert "at_live_" in message
    assert "at_test_" in message
    assert "SECRETVALUE" not in message
    assert "sk-" not in message
    assert ("AGENTTRACE_API_KEY" in message) == (source == "env")


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("mode", ["record", "replay"]),
        ("governance_level", ["relaxed", "governance"]),
        ("exit_upload", ["background", "wait"]),
    ],
)
@pytest.mark.parametrize("source", ["arg", "env"])
def test_unknown_choice_lists_valid_values(name: str, valid: list[str], source: str) -> None:
    """An unknown mode, governance level or exit upload is refused, listing the valid values and the source."""
    env_name = f"AGENTTRACE_{name.upper()}"
    arguments = {name: "bogus"} if source == "arg" else {}
    environ = {env_name: "bogus"} if source == "env" else {}
    with pytest.raises(agenttrace.ConfigurationError, match="bogus") as caught:
        resolve_settings(arguments, environ)
    for value in valid:
        assert repr(value) in str(caught.value)
    assert (env_name in str(caught.value)) == (source == "env")


@pytest.mark.parametrize("url", ["ftp://host", "http://", "://nohost"])
def test_bad_api_url(url: str) -> None:
    """A URL that is not http(s) with a host is refused, naming the value."""
    with pytest.raises(agenttrace.ConfigurationError, match=re.escape(repr(url))):
        resolve_settings({"api_url": url}, {})


def test_bad_boolean_and_size() -> None:
    """Booleans and sizes from the environment are checked and the variable named."""
    with pytest.raises(agenttrace.ConfigurationError, match="AGENTTRACE_QUIET"):
        resolve_settings({}, {"AGENTTRACE_QUIET": "maybe"})
    with pytest.raises(agenttrace.ConfigurationError, match="AGENTTRACE_MAX_BODY_BYTES"):
        resolve_settings({}, {"AGENTTRACE_MAX_BODY_BYTES": "-3"})


def test_unknown_init_keyword() -> None:
    """A misspelt init() keyword is refused with the list of valid ones."""
    with pytest.raises(agenttrace.ConfigurationError, match="trace_dirr"):
        agenttrace.init(trace_dirr="x")


def test_every_setting_is_documented() -> None:
    """docs/configuration.md has exactly one row for every setting, naming its variable."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text(encoding="utf-8")
    for setting in SETTINGS_TABLE:
        assert text.count(f"| `{setting.name}` |") == 1, setting.name
        if setting.env:
            assert f"`{setting.env}`" in text, setting.env


def test_init_from_environment_in_a_fresh_process(run_agent: Any) -> None:
    """init() with no arguments lets AGENTTRACE_* win; an explicit argument beats it."""
    result = run_agent(
        """
        import agenttrace
        from agenttrace._core.runtime import runtime
        agenttrace.init()
        print(runtime.current_settings().governance_level)
        agenttrace.init(governance_level="relaxed")
        print(runtime.current_settings().governance_level)
        """,
        env={"AGENTTRACE_GOVERNANCE_LEVEL": "governance"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["governance", "relaxed"]


def test_bad_mode_from_environment_fails_at_first_use(run_agent: Any) -> None:
    """A bad AGENTTRACE_MODE stops the agent with a ConfigurationError naming the variable."""
    result = run_agent(
        """
        import agenttrace
        @agenttrace.run
        def main():
            return 1
        main()
        """,
        env={"AGENTTRACE_MODE": "recrod"},
    )
    assert result.returncode == 1
    assert "ConfigurationError" in result.stderr
    assert "AGENTTRACE_MODE" in result.stderr
    assert "'record'" in result.stderr


def test_failed_init_stops_every_later_run(run_agent: Any, tmp_path: Path) -> None:
    """If init() fails (a replay file that cannot load) and the caller carries on, runs fail the same way."""
    result = run_agent(
        f"""
        import agenttrace
        try:
            agenttrace.init(mode="replay", replay_events_file={str(tmp_path / "missing.jsonl")!r})
        except agenttrace.ConfigurationError as exc:
            print("init failed:", type(exc).__name__)

        @agenttrace.run
        def main():
            print("agent body ran")

        try:
            main()
        except agenttrace.ConfigurationError:
            print("run refused")
        agenttrace.init(mode="record")
        main()
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["init failed: ConfigurationError", "run refused", "agent body ran"]
