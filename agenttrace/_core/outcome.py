"""How a run's or a step's outcome is written on its span.

Values become JSON (results, step keyword arguments) without ever raising; a failure becomes the
span's exception event and ERROR status.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import enum
import json
import math
import sys
import traceback
import uuid
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from opentelemetry.trace import Span, Status, StatusCode

from agenttrace._capture.filter import FILTERED, Filter

__all__ = ["dumps", "record_failure", "redact_text", "rendered_result", "to_jsonable"]

_MAX_DEPTH = 32


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception as exc:  # noqa: BLE001 - a user __repr__ may raise anything
        return f"<{type(value).__name__} object (repr failed: {type(exc).__name__})>"


def to_jsonable(value: Any, _depth: int = 0, _seen: frozenset[int] = frozenset()) -> Any:
    """Return JSON-ready data for ``value``: containers walked, unknown objects as ``repr``."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if _depth >= _MAX_DEPTH:
        return "<max depth>"
    if id(value) in _seen:
        return "<cycle>"
    seen = _seen | {id(value)}
    try:
        if isinstance(value, Mapping):
            return {str(k): to_jsonable(v, _depth + 1, seen) for k, v in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            items = sorted(value, key=_safe_repr) if isinstance(value, (set, frozenset)) else value
            return [to_jsonable(v, _depth + 1, seen) for v in items]
        if isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                return {"base64": base64.b64encode(raw).decode("ascii")}
        if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
            return value.isoformat()
        # A Decimal exists only once its module is imported: not imported here (1.4 ms of import).
        decimal = sys.modules.get("decimal")
        if isinstance(value, (uuid.UUID, PurePath)) or (decimal is not None and isinstance(value, decimal.Decimal)):
            return str(value)
        if isinstance(value, enum.Enum):
            return to_jsonable(value.value, _depth + 1, seen)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            return to_jsonable(fields, _depth + 1, seen)
        dump = getattr(value, "model_dump", None)  # pydantic v2 (the openai/anthropic models)
        if callable(dump) and not isinstance(value, type):
            return to_jsonable(dump(mode="json"), _depth + 1, seen)
    except Exception:  # noqa: BLE001 - rendering must never raise into the agent
        return _safe_repr(value)
    return _safe_repr(value)


def dumps(value: Any) -> str:
    """Compact JSON text for ``value``; never raises."""
    try:
        return json.dumps(to_jsonable(value), ensure_ascii=False, separators=(",", ":"))
    except Exception:  # noqa: BLE001
        return json.dumps(_safe_repr(value))


def record_failure(span: Span, exc: BaseException, rules: Filter) -> None:
    """Record ``exc`` on a run's or step's span and mark it failed, its text redacted.

    A client puts the URL it called in its exceptions (``raise_for_status()``, ``Max retries
    exceeded with url``): the URL's credentials and secret query values are redacted as in
    ``url.full``. Name and path rules need fields, which an exception's text has not, but
    ``rules``' patterns (an API key's shape) apply, to the message and to the stack trace that
    repeats it.
    """
    span.record_exception(
        exc,
        attributes={
            "exception.message": _redacted(str(exc), rules),
            "exception.stacktrace": _redacted("".join(traceback.format_exception(exc)), rules),
        },
        escaped=True,
    )
    span.set_status(Status(StatusCode.ERROR, _redacted(f"{type(exc).__name__}: {exc}", rules)))


def redact_text(text: str) -> str:
    """:func:`agenttrace._capture.payload.redact_text`, imported on first use."""
    # Imported at the first result or failure, not with `import agenttrace`: the payload module
    # (hashing, codecs) is a third of what importing agenttrace would cost otherwise.
    from agenttrace._capture import payload

    return payload.redact_text(text)


def _redacted(text: str, rules: Filter) -> str:
    return redact_text(rules.text(text) if rules.patterns else text)


def rendered_result(value: Any, rules: Filter) -> str:
    """The JSON text a step's or a run's result is recorded as, ``rules`` and URL redaction applied.

    Never raises.
    """
    try:
        return redact_text(dumps(rules.apply(to_jsonable(value)) if rules else value))
    except Exception:  # noqa: BLE001 - a user filter callable gone wrong must not break the agent
        return dumps(FILTERED)
