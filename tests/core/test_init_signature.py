"""init()'s signature, SETTINGS_TABLE and the docs stay in step: one typed keyword per setting."""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path
from typing import Any, Literal

import pytest

import agenttrace
from agenttrace._core import lifecycle as runtime_module
from agenttrace._core.config import EXIT_UPLOADS, GOVERNANCE_LEVELS, MODES, PACINGS, SETTINGS_TABLE

DOCS = Path(__file__).parent.parent.parent / "docs"

# The SDK reference shows these five, in this order; they stay positional-or-keyword.
SPEC_POSITIONAL = ("api_key", "api_url", "mode", "replay_events", "governance_level")

# Settings with a fixed set of values, and the values config.py accepts.
CHOICES = {"mode": MODES, "governance_level": GOVERNANCE_LEVELS, "replay_pacing": PACINGS, "exit_upload": EXIT_UPLOADS}

_PARAMETERS = inspect.signature(agenttrace.init).parameters
_NAMED = {name: p for name, p in _PARAMETERS.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}


def _documented_settings(text: str, heading: str) -> list[str]:
    """The first-column names (`name`) of the Markdown table under ``heading``."""
    section = text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE)


def test_parameters_are_the_settings_in_spec_order() -> None:
    """init() takes exactly SETTINGS_TABLE's names: the spec's five first, positionally, the rest keyword-only."""
    names = list(_NAMED)
    assert names[: len(SPEC_POSITIONAL)] == list(SPEC_POSITIONAL)
    assert all(_NAMED[name].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for name in SPEC_POSITIONAL)
    rest = [s.name for s in SETTINGS_TABLE if s.name not in SPEC_POSITIONAL]
    assert names[len(SPEC_POSITIONAL) :] == rest
    assert all(_NAMED[name].kind is inspect.Parameter.KEYWORD_ONLY for name in rest)
    assert sorted(names) == sorted(s.name for s in SETTINGS_TABLE)


def test_catch_all_is_typed_noreturn() -> None:
    """The one ** parameter is typed NoReturn, so type checkers refuse any unknown keyword."""
    catch_all = [p for p in _PARAMETERS.values() if p.kind is inspect.Parameter.VAR_KEYWORD]
    assert [p.annotation for p in catch_all] == ["NoReturn"]


def test_unknown_keyword_is_a_configuration_error_naming_the_valid_ones() -> None:
    """A misspelt keyword raises ConfigurationError listing every valid setting, before anything is configured."""
    with pytest.raises(agenttrace.ConfigurationError, match="quite") as caught:
        agenttrace.init(quite=True)  # type: ignore[arg-type]
    for setting in SETTINGS_TABLE:
        assert setting.name in str(caught.value)


@pytest.mark.parametrize("name", list(_NAMED))
def test_every_parameter_defaults_to_none(name: str) -> None:
    """Each default is the None sentinel, so init() with no argument lets the variable or the file win."""
    assert _NAMED[name].default is None


@pytest.mark.parametrize(("name", "valid"), CHOICES.items(), ids=list(CHOICES))
def test_choice_parameters_are_literals_of_the_valid_values(name: str, valid: tuple[str, ...]) -> None:
    """mode, governance_level, replay_pacing and exit_upload are typed Literal[...] of what config accepts."""
    hint = eval(_NAMED[name].annotation, {**vars(runtime_module), "Literal": Literal})
    literal, none = typing.get_args(hint)
    assert none is type(None)
    assert typing.get_origin(literal) is Literal
    assert typing.get_args(literal) == valid


def test_every_parameter_reaches_resolve_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """init() hands each argument to resolve_settings under its own name."""
    seen: dict[str, Any] = {}

    class StopError(Exception):
        pass

    def fake(arguments: dict[str, Any]) -> Any:
        seen.update(arguments)
        raise StopError

    monkeypatch.setattr(runtime_module, "resolve_settings", fake)
    markers = {name: object() for name in _NAMED}
    with pytest.raises(StopError):
        agenttrace.init(**markers)
    assert seen == markers


def test_configuration_md_lists_every_parameter() -> None:
    """docs/configuration.md's settings table has one row per init() parameter, and no other."""
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    rows = _documented_settings(text, "## Settings")
    assert sorted(rows) == sorted(_NAMED)


def test_api_md_shows_every_parameter() -> None:
    """docs/api.md shows init() with the same parameters, in the same order."""
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    block = text.split("## `agenttrace.init()`", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert re.findall(r"^    ([a-z_]+):", block, flags=re.MULTILINE) == list(_NAMED)
