"""The configuration file: argument > environment variable > file > default."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import agenttrace
from agenttrace._capture.filter import compile_filter
from agenttrace._core import errors as _warn
from agenttrace._core.config import resolve_settings


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test runs in an empty folder of its own (the file is looked for in the current one)."""
    monkeypatch.chdir(tmp_path)
    _warn._reset_for_tests()
    return tmp_path


def test_agenttrace_toml_sits_between_variable_and_default(here: Path) -> None:
    """A key in agenttrace.toml beats the default, the variable beats the file, an argument beats both."""
    (here / "agenttrace.toml").write_text(
        'governance_level = "governance"\nquiet = true\nmax_body_bytes = 1234\nfilter = ["password", "re:sk-\\\\w+"]\n'
        'redact_headers = ["x-tenant"]\n',
        encoding="utf-8",
    )
    settings = resolve_settings({"quiet": False}, {"AGENTTRACE_MAX_BODY_BYTES": "99"})
    assert settings.governance_level == "governance"
    assert settings.sources["governance_level"] == "file"
    assert settings.quiet is False
    assert settings.sources["quiet"] == "arg"
    assert settings.max_body_bytes == 99
    assert settings.sources["max_body_bytes"] == "env"
    assert settings.filter == compile_filter(["password", re.compile(r"sk-\w+")])
    assert settings.redact_headers == ("x-tenant",)
    assert settings.mode == "record"
    assert settings.sources["mode"] == "default"


def test_pyproject_tool_table(here: Path) -> None:
    """Without agenttrace.toml, [tool.agenttrace] of pyproject.toml is read; a pyproject without it is not."""
    (here / "pyproject.toml").write_text('[project]\nname = "x"\n', encoding="utf-8")
    assert resolve_settings({}, {}).sources["mode"] == "default"
    (here / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.agenttrace]\nmode = "replay"\n', encoding="utf-8"
    )
    settings = resolve_settings({}, {})
    assert (settings.mode, settings.sources["mode"]) == ("replay", "file")
    (here / "agenttrace.toml").write_text('mode = "record"\n', encoding="utf-8")
    assert resolve_settings({}, {}).mode == "record"  # agenttrace.toml wins over pyproject.toml


def test_variable_names_the_file(here: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """AGENTTRACE_CONFIG_FILE points at a file elsewhere; a name that is not a file is an error."""
    elsewhere = tmp_path_factory.mktemp("conf") / "ci.toml"
    elsewhere.write_text('replay_pacing = "recorded"\n', encoding="utf-8")
    assert resolve_settings({}, {"AGENTTRACE_CONFIG_FILE": str(elsewhere)}).replay_pacing == "recorded"
    with pytest.raises(agenttrace.ConfigurationError, match=r"AGENTTRACE_CONFIG_FILE names '.*missing\.toml'"):
        resolve_settings({}, {"AGENTTRACE_CONFIG_FILE": str(here / "missing.toml")})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('mode = "replya"\n', r"mode 'replya' \(from agenttrace\.toml, key 'mode'\) is not valid; expected one of"),
        ("max_body_bytes = -5\n", r"\(from agenttrace\.toml, key 'max_body_bytes'\) is not valid"),
        ('mood = "x"\n', r"agenttrace\.toml has unknown key\(s\) mood; valid keys are the init\(\) settings: api_key"),
        ("mode = \n", r"configuration file agenttrace\.toml is not valid TOML: .*line 1"),
        ('filter = "password,token"\n', r"agenttrace\.toml, key 'filter': filter entry 'password,token' holds a comma"),
    ],
)
def test_bad_file_names_file_and_key(here: Path, text: str, expected: str) -> None:
    """A bad file stops init() with a ConfigurationError naming the file, the key and what is expected."""
    (here / "agenttrace.toml").write_text(text, encoding="utf-8")
    with pytest.raises(agenttrace.ConfigurationError, match=expected):
        resolve_settings({}, {})


def test_broken_pyproject_is_skipped_with_a_warning(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A project's own broken pyproject.toml does not stop its agent: one warning, defaults used.

    A pyproject.toml that never mentions agenttrace is not parsed at all (nor warned about).
    """
    (here / "pyproject.toml").write_text("[project\n", encoding="utf-8")
    assert resolve_settings({}, {}).mode == "record"
    assert capsys.readouterr().err == ""
    (here / "pyproject.toml").write_text('[project\n[tool.agenttrace]\nmode = "replay"\n', encoding="utf-8")
    assert resolve_settings({}, {}).mode == "record"
    resolve_settings({}, {})
    err = capsys.readouterr().err
    assert err.count("pyproject.toml is not valid TOML") == 1


def test_file_configures_a_fresh_agent(run_agent: Any) -> None:
    """An agent started in a folder with agenttrace.toml runs with its settings, no init() needed."""
    (run_agent.tmp_path / "agenttrace.toml").write_text(
        'governance_level = "governance"\nfilter = ["password"]\n', encoding="utf-8"
    )
    result = run_agent(
        """
        import agenttrace
        from agenttrace._core.runtime import runtime

        @agenttrace.run
        def main():
            settings = runtime.current_settings()
            return settings.governance_level, sorted(settings.filter.names), settings.sources["governance_level"]

        print(*main())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["governance", "['password']", "file"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redact_headers = 5\n", r"redact_headers 5 \(from agenttrace\.toml, key 'redact_headers'\) is not valid"),
        ("redact_headers = [1, 2]\n", r"key 'redact_headers'\) is not valid; expected names as a list of strings"),
        ('trace_dir = ["a"]\n', r"trace_dir \['a'\] \(from agenttrace\.toml, key 'trace_dir'\) is not valid"),
        ('trace_dir = ""\n', r"key 'trace_dir'\) is not valid; expected a path as text"),
        ("max_body_bytes = 1.9\n", r"max_body_bytes '1\.9' \(from agenttrace\.toml, key 'max_body_bytes'\)"),
    ],
)
def test_values_of_the_wrong_type(here: Path, text: str, expected: str) -> None:
    """A TOML value of the wrong type is refused with the file and key, never coerced."""
    (here / "agenttrace.toml").write_text(text, encoding="utf-8")
    with pytest.raises(agenttrace.ConfigurationError, match=expected):
        resolve_settings({}, {})


def test_file_that_is_not_utf8(here: Path) -> None:
    """Bytes that are not UTF-8 are 'not valid TOML', naming the file, not a UnicodeDecodeError."""
    (here / "agenttrace.toml").write_bytes(b'mode = "caf\xe9"\n')
    with pytest.raises(agenttrace.ConfigurationError, match=r"configuration file agenttrace\.toml is not valid TOML"):
        resolve_settings({}, {})
