"""Settings: resolved once per ``init()`` as argument > environment variable > file > default.

The file is ``AGENTTRACE_CONFIG_FILE`` if set, else ``./agenttrace.toml``, else the
``[tool.agenttrace]`` table of ``./pyproject.toml``; its keys are ``init()``'s keyword names.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agenttrace._capture.filter import EMPTY, Filter, compile_filter
from agenttrace._core.errors import ConfigurationError

__all__ = [
    "DEFAULT_API_URL",
    "GOVERNANCE_LEVELS",
    "MODES",
    "SETTINGS_TABLE",
    "Settings",
    "resolve_settings",
    "source_of_setting",
]

MODES = ("record", "replay")
GOVERNANCE_LEVELS = ("relaxed", "governance")
PACINGS = ("instant", "recorded")
EXIT_UPLOADS = ("background", "wait")
API_KEY_PREFIXES = ("at_live_", "at_test_")
DEFAULT_API_URL = "https://api.theagenttrace.com"
DEFAULT_TRACE_DIR = "./.agenttrace/traces"
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_SPOOL_DIR = "./.agenttrace/spool"
DEFAULT_SPOOL_MAX_BYTES = 256 * 1024 * 1024

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True)
class _Setting:
    name: str  # the init() keyword
    env: str | None
    default: Any
    doc: str


# The one table of settings: init() keyword, variable, default. docs/configuration.md mirrors it
# and tests/test_config.py checks that every row is documented.
SETTINGS_TABLE: tuple[_Setting, ...] = (
    _Setting("api_key", "AGENTTRACE_API_KEY", None, "Project API key (`at_live_...` or `at_test_...`)."),
    _Setting("api_url", "AGENTTRACE_API_URL", DEFAULT_API_URL, "Backend URL, a host or a full URL."),
    _Setting("mode", "AGENTTRACE_MODE", "record", "`record` or `replay`."),
    _Setting("governance_level", "AGENTTRACE_GOVERNANCE_LEVEL", "relaxed", "`relaxed` or `governance`."),
    _Setting("replay_events", None, None, "Events to replay (list), see `load_events()`."),
    _Setting("replay_events_file", "AGENTTRACE_REPLAY_EVENTS_FILE", None, "Trace file to replay."),
    _Setting("trace_dir", "AGENTTRACE_TRACE_DIR", DEFAULT_TRACE_DIR, "Folder of local trace files."),
    _Setting("local_files", "AGENTTRACE_LOCAL_FILES", None, "Write local trace files (default: when no API key)."),
    _Setting("quiet", "AGENTTRACE_QUIET", False, "Silence the `trace written to` line on stderr."),
    _Setting("max_body_bytes", "AGENTTRACE_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, "Bytes of one body kept whole."),
    _Setting("replay_pacing", "AGENTTRACE_REPLAY_PACING", "instant", "`instant` or `recorded` stream pacing."),
    _Setting("redact_headers", "AGENTTRACE_REDACT_HEADERS", None, "Extra header names/globs to redact (comma list)."),
    _Setting("filter", "AGENTTRACE_FILTER", None, "What no run records: field names, paths, `re:` patterns."),
    _Setting(
        "fail_on_unused", "AGENTTRACE_FAIL_ON_UNUSED", False, "Governance replay fails if recorded calls go unused."
    ),
    _Setting(
        "virtual_clock",
        "AGENTTRACE_VIRTUAL_CLOCK",
        True,
        "Record the wall clock a run reads and serve it back in replay (`time.time`, `datetime.now`, ...).",
    ),
    _Setting(
        "replay_live",
        "AGENTTRACE_REPLAY_LIVE",
        None,
        "Calls a replay lets go live: `llm`, `tool`, `all`, hosts, URL prefixes, `*` patterns (comma list).",
    ),
    _Setting(
        "replay_live_from",
        "AGENTTRACE_REPLAY_LIVE_FROM",
        None,
        "Where a replay goes live: `STEP`, `STEP#N` or `#N` (the run's N-th call).",
    ),
    # Export settings (docs/export.md): backend on/off, the spool, and the time bounds.
    _Setting("backend", "AGENTTRACE_BACKEND", None, "Send traces to the backend (default: when an API key is set)."),
    _Setting("spool_dir", "AGENTTRACE_SPOOL_DIR", DEFAULT_SPOOL_DIR, "Folder of undelivered traces."),
    _Setting("spool_max_bytes", "AGENTTRACE_SPOOL_MAX_BYTES", DEFAULT_SPOOL_MAX_BYTES, "Size bound of the spool."),
    _Setting("exit_timeout", "AGENTTRACE_EXIT_TIMEOUT", 0.5, "Bound of what export adds to process exit (seconds)."),
    _Setting(
        "exit_upload", "AGENTTRACE_EXIT_UPLOAD", "background", "`background` or `wait`: uploads left at process exit."
    ),
    _Setting("export_timeout", "AGENTTRACE_EXPORT_TIMEOUT", 10.0, "Seconds one upload may take, retries included."),
    _Setting(
        "openinference",
        "AGENTTRACE_OPENINFERENCE",
        False,
        "Also write OpenInference's attributes (Arize Phoenix's LLM view) on LLM call spans.",
    ),
    _Setting(
        "export_run_metadata",
        "AGENTTRACE_EXPORT_RUN_METADATA",
        False,
        "Also send the run's source and distributions to OTLP destinations.",
    ),
)
_BY_NAME = {s.name: s for s in SETTINGS_TABLE}


@dataclass(frozen=True)
class Settings:
    """The resolved configuration; ``sources`` says where each value came from."""

    api_key: str | None = None
    api_url: str = DEFAULT_API_URL
    mode: str = "record"
    governance_level: str = "relaxed"
    replay_events: tuple[Mapping[str, Any], ...] | None = None
    replay_events_file: str | None = None
    trace_dir: Path = Path(DEFAULT_TRACE_DIR)
    local_files: bool = True
    quiet: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    redact_headers: tuple[str, ...] = ()
    filter: Filter = EMPTY
    replay_pacing: str = "instant"
    fail_on_unused: bool = False
    virtual_clock: bool = True
    replay_live: tuple[str, ...] = ()
    replay_live_from: str | None = None
    backend: bool = False
    spool_dir: Path = Path(DEFAULT_SPOOL_DIR)
    spool_max_bytes: int = DEFAULT_SPOOL_MAX_BYTES
    exit_timeout: float = 0.5
    exit_upload: str = "background"
    export_timeout: float = 10.0
    export_run_metadata: bool = False
    openinference: bool = False
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def governance(self) -> bool:
        """True when replay divergences are errors rather than warnings."""
        return self.governance_level == "governance"

    @property
    def replaying(self) -> bool:
        """True in replay mode."""
        return self.mode == "replay"


def _source(name: str, how: str) -> str:
    setting = _BY_NAME[name]
    if how.startswith("file:"):
        return f"{how[5:]}, key {name!r}"
    return f"init({name}=...)" if how == "arg" else f"{setting.env}" if how == "env" else "the default"


def source_of_setting(settings: Settings, name: str) -> str:
    """Where ``settings`` took the value of setting ``name`` from, for messages (``AGENTTRACE_X``, ``init(x=...)``)."""
    how = settings.sources.get(name, "default")
    return "the configuration file" if how == "file" else _source(name, how)


CONFIG_FILE_ENV = "AGENTTRACE_CONFIG_FILE"
CONFIG_FILE = "agenttrace.toml"


def _toml(path: Path, label: str, raw: bytes | None = None) -> dict[str, Any]:
    """The TOML document at ``path`` (its bytes ``raw`` when already read)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10: the same parser, as a distribution
        import tomli as tomllib
    try:
        data: dict[str, Any] = tomllib.loads((path.read_bytes() if raw is None else raw).decode("utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"configuration file {label} cannot be read: {exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"configuration file {label} is not valid TOML: {exc}") from None
    return data


def _file_settings(env: Mapping[str, str]) -> tuple[str, dict[str, Any]] | None:
    """``(label, settings)`` of the configuration file in force, or None when there is none.

    A file named by AGENTTRACE_CONFIG_FILE must exist; ``agenttrace.toml`` and ``pyproject.toml``
    are looked for in the current directory, and a pyproject.toml without ``[tool.agenttrace]``
    is not one.
    """
    named = env.get(CONFIG_FILE_ENV, "").strip()
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise ConfigurationError(
                f"{CONFIG_FILE_ENV} names {named!r}, which is not a file; expected the path of an agenttrace.toml"
            )
        label = str(path)
        data = _toml(path, label)
        if path.name == "pyproject.toml":
            data, label = _tool_table(data, label)
    elif Path(CONFIG_FILE).is_file():
        label = CONFIG_FILE
        data = _toml(Path(CONFIG_FILE), label)
    elif Path("pyproject.toml").is_file():
        try:
            raw = Path("pyproject.toml").read_bytes()
        except OSError:
            return None
        if b"agenttrace" not in raw:
            return None  # no [tool.agenttrace] in any spelling: do not import the TOML parser (a slow import)
        try:
            data, label = _tool_table(_toml(Path("pyproject.toml"), "pyproject.toml", raw), "pyproject.toml")
        except ConfigurationError as exc:
            # Looked at only in case it has [tool.agenttrace]: a project's own broken file is not
            # a reason to stop its agent. Said once; the settings come from elsewhere.
            from agenttrace._core.errors import warn_once

            warn_once("config-pyproject", f"{exc}; its [tool.agenttrace] settings, if any, are not used")
            return None
        if not data:
            return None
    else:
        return None
    unknown = sorted(set(data) - {s.name for s in SETTINGS_TABLE if s.name != "replay_events"})
    if unknown:
        raise ConfigurationError(
            f"configuration file {label} has unknown key(s) {', '.join(unknown)}; valid keys are "
            f"the init() settings: {', '.join(s.name for s in SETTINGS_TABLE if s.name != 'replay_events')}"
        )
    return label, data


def _tool_table(data: dict[str, Any], label: str) -> tuple[dict[str, Any], str]:
    table = data.get("tool", {}).get("agenttrace", {}) if isinstance(data.get("tool"), dict) else {}
    if not isinstance(table, dict):
        raise ConfigurationError(f"configuration file {label}: [tool.agenttrace] must be a table")
    return table, f"{label} [tool.agenttrace]"


def _choice(name: str, value: Any, how: str, valid: Sequence[str]) -> str:
    text = str(value).strip().lower()
    if text not in valid:
        allowed = ", ".join(repr(v) for v in valid)
        raise ConfigurationError(
            f"{name} {str(value)!r} (from {_source(name, how)}) is not valid; expected one of: {allowed}"
        )
    return text


def _bool(name: str, value: Any, how: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigurationError(
        f"{name} {str(value)!r} (from {_source(name, how)}) is not a boolean; "
        "expected 1/0, true/false, yes/no or on/off"
    )


def _seconds(name: str, value: Any, how: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if not 0 <= number < float("inf") or isinstance(value, bool):
        raise ConfigurationError(
            f"{name} {str(value)!r} (from {_source(name, how)}) is not valid; expected a number of seconds >= 0"
        )
    return number


def _positive_int(name: str, value: Any, how: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if isinstance(value, float) and not value.is_integer():
        number = -1  # 1.9 bytes is a mistake, not 1
    if number <= 0 or isinstance(value, bool):
        raise ConfigurationError(
            f"{name} {str(value)!r} (from {_source(name, how)}) is not valid; expected a positive whole number of bytes"
        )
    return number


def _path(name: str, value: Any, how: str) -> Path:
    """A file or folder path: text (or a path object), not empty."""
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise ConfigurationError(
            f"{name} {value!r} (from {_source(name, how)}) is not valid; expected a path as text, such as './traces'"
        )
    return Path(value)


def _names(name: str, value: Any, how: str) -> tuple[str, ...]:
    """Names as a comma-separated text or a list of texts."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if isinstance(items, (list, tuple)) and all(isinstance(item, str) for item in items):
        return tuple(item.strip() for item in items if item.strip())
    raise ConfigurationError(
        f"{name} {value!r} (from {_source(name, how)}) is not valid; expected names as a list of strings "
        "or as comma-separated text"
    )


def _api_key(value: Any, how: str) -> str:
    # The message never contains the key, not even a prefix of it: it may be a real secret
    # pasted into the wrong variable.
    if not isinstance(value, str) or not value.startswith(API_KEY_PREFIXES):
        kind = "a string" if isinstance(value, str) else f"a value of type {type(value).__name__}"
        raise ConfigurationError(
            f"api_key (from {_source('api_key', how)}) is not valid: it must begin with "
            f"'at_live_' or 'at_test_' (got {kind} of {len(str(value))} characters that does not)"
        )
    return value


def _api_url(value: Any, how: str) -> str:
    text = str(value).strip()
    candidate = text if "://" in text else f"https://{text}"
    parts = urlsplit(candidate)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"api_url {str(value)!r} (from {_source('api_url', how)}) is not valid; "
            "expected a host such as 'api.example.com' or a URL such as 'https://api.example.com'"
        )
    return candidate.rstrip("/")


def _top_level_split(text: str) -> list[str]:
    """``text`` cut at its commas outside brackets: ``re:sk-\\w{20,}`` stays one pattern.

    A comma inside ``{}``, ``[]`` or ``()`` (or escaped) belongs to a regular expression; cut
    there, ``{20,}`` would become the literal text ``{20`` and a field named ``}``, silently.
    """
    parts: list[str] = []
    depth = 0
    start = 0
    escaped = False
    in_class = False  # inside a character class [...] every bracket and comma is literal
    literal_close = -1  # where a "]" is the class's first member, not its end: "[]a]", "[^]a]"
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]" or index == literal_close
        elif char == "[":
            in_class = True
            literal_close = index + 2 if text[index + 1 : index + 2] == "^" else index + 1
        elif char in "({":
            depth += 1
        elif char in ")}":
            depth = max(depth - 1, 0)
        elif char == "," and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    if depth or in_class:
        # An unclosed bracket would swallow every later rule into one pattern, silently.
        raise ConfigurationError(
            f"filter {text!r} (from AGENTTRACE_FILTER) has an unclosed bracket, so where one rule ends is "
            'unclear; give the rules as a JSON array, e.g. ["password", "re:sk-\\w+"]'
        )
    parts.append(text[start:])
    return parts


def _global_filter(value: Any, how: str) -> Filter:
    """The ``filter`` setting: ``step(filter=...)``'s rules, or text from AGENTTRACE_FILTER."""
    if value is None:
        return EMPTY
    spec = value
    if how == "env":
        text = str(value).strip()
        if text.startswith("["):
            try:
                spec = json.loads(text)
            except ValueError as exc:
                spec = exc
            if not isinstance(spec, list) or not all(isinstance(item, str) for item in spec):
                raise ConfigurationError(
                    f"filter {text!r} (from AGENTTRACE_FILTER) is not a JSON array of strings; expected field "
                    "names, paths and re:patterns, comma-separated or as a JSON array such as "
                    '["password", "re:sk-\\w+"]'
                )
        else:
            spec = [part.strip() for part in _top_level_split(text) if part.strip()]
    try:
        return compile_filter(spec)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{_source('filter', how)}: {exc}") from None


def resolve_settings(arguments: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``init()`` arguments (``None`` = not given) and the environment."""
    env = os.environ if environ is None else environ
    unknown = set(arguments) - set(_BY_NAME)
    if unknown:
        raise ConfigurationError(
            f"init() got unknown setting(s) {', '.join(sorted(unknown))}; valid settings are: {', '.join(_BY_NAME)}"
        )
    found = _file_settings(env)
    label, from_file = found if found is not None else ("", {})
    raw: dict[str, tuple[Any, str]] = {}
    for setting in SETTINGS_TABLE:
        given = arguments.get(setting.name)
        if given is not None:
            raw[setting.name] = (given, "arg")
        elif setting.env is not None and env.get(setting.env, "").strip() != "":
            raw[setting.name] = (env[setting.env], "env")
        elif from_file.get(setting.name) is not None:
            raw[setting.name] = (from_file[setting.name], f"file:{label}")
        else:
            raw[setting.name] = (setting.default, "default")

    values: dict[str, Any] = {}
    key, how = raw["api_key"]
    values["api_key"] = None if key is None else _api_key(key, how)
    values["api_url"] = _api_url(*raw["api_url"])
    values["mode"] = _choice("mode", raw["mode"][0], raw["mode"][1], MODES)
    values["governance_level"] = _choice(
        "governance_level", raw["governance_level"][0], raw["governance_level"][1], GOVERNANCE_LEVELS
    )
    values["replay_pacing"] = _choice("replay_pacing", raw["replay_pacing"][0], raw["replay_pacing"][1], PACINGS)
    events, how = raw["replay_events"]
    if events is not None:
        if isinstance(events, (str, bytes)) or not isinstance(events, Sequence):
            raise ConfigurationError(
                "replay_events (from init(replay_events=...)) must be a list of event dicts "
                f"as agenttrace.load_events() returns; got {type(events).__name__}"
            )
        values["replay_events"] = tuple(events)
    file_value, how = raw["replay_events_file"]
    values["replay_events_file"] = None if file_value is None else str(_path("replay_events_file", file_value, how))
    values["trace_dir"] = _path("trace_dir", *raw["trace_dir"]).expanduser()
    local, how = raw["local_files"]
    values["local_files"] = values["api_key"] is None if local is None else _bool("local_files", local, how)
    values["quiet"] = _bool("quiet", *raw["quiet"])
    values["fail_on_unused"] = _bool("fail_on_unused", *raw["fail_on_unused"])
    values["virtual_clock"] = _bool("virtual_clock", *raw["virtual_clock"])
    values["replay_live"] = _names("replay_live", *raw["replay_live"])
    live_from, how = raw["replay_live_from"]
    if live_from is not None and not isinstance(live_from, str):
        raise ConfigurationError(
            f"replay_live_from {live_from!r} (from {_source('replay_live_from', how)}) is not valid; "
            "expected STEP, STEP#N or #N as text"
        )
    values["replay_live_from"] = live_from.strip() or None if live_from is not None else None
    values["max_body_bytes"] = _positive_int("max_body_bytes", *raw["max_body_bytes"])
    values["redact_headers"] = _names("redact_headers", *raw["redact_headers"])
    values["filter"] = _global_filter(*raw["filter"])
    backend, how = raw["backend"]
    values["backend"] = values["api_key"] is not None if backend is None else _bool("backend", backend, how)
    values["spool_dir"] = _path("spool_dir", *raw["spool_dir"]).expanduser()
    values["spool_max_bytes"] = _positive_int("spool_max_bytes", *raw["spool_max_bytes"])
    values["exit_timeout"] = _seconds("exit_timeout", *raw["exit_timeout"])
    values["exit_upload"] = _choice("exit_upload", raw["exit_upload"][0], raw["exit_upload"][1], EXIT_UPLOADS)
    values["export_timeout"] = _seconds("export_timeout", *raw["export_timeout"])
    values["export_run_metadata"] = _bool("export_run_metadata", *raw["export_run_metadata"])
    values["openinference"] = _bool("openinference", *raw["openinference"])
    values["sources"] = {name: "file" if how.startswith("file:") else how for name, (_, how) in raw.items()}
    return Settings(**values)
