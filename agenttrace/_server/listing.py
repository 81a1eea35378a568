"""The listing's search: the query parameters ``GET /api/traces`` and ``GET /`` share, read into a
:class:`~agenttrace._server.store.TraceFilter`, and back into the query of the next page's link.

=============  =================================================================================
``name``       a part of the trace's name (its first run's), any case
``status``     ``ok`` or ``error`` (a span of the trace failed)
``mode``       ``record`` or ``replay`` (the first run's mode)
``model``      the beginning of the model name of one of its LLM calls (``gpt-4o`` finds
               ``gpt-4o-mini-2024-07-18``), case as the provider writes it
``trace_id``   the beginning of the trace id (hex; all 32 digits: that trace)
``since``      started at or after: an ISO 8601 date or time (UTC unless it says its offset)
``until``      started before, the same way; or either as Unix nanoseconds
``before``     where a page starts: the ``next`` cursor of the page before it
=============  =================================================================================

An empty parameter is no condition (what an empty field of the page's form sends).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from urllib.parse import urlencode

from agenttrace._server.store.records import TraceFilter

__all__ = ["FILTERS", "BadParameterError", "listing_filter", "query_of"]

FILTERS = ("name", "status", "mode", "model", "trace_id", "since", "until")
MAX_TEXT = 200  # characters of a name or model searched for
_CURSOR = re.compile(r"(-?[0-9]{1,20})\.([0-9a-f]{32})")
_HEX = re.compile(r"[0-9a-f]{1,32}")
_NANOS = re.compile(r"-?[0-9]{1,20}")


class BadParameterError(ValueError):
    """A listing parameter the server cannot use; the message names it, its value and what was expected."""


def listing_filter(params: Mapping[str, str]) -> TraceFilter:
    """The filter ``params`` ask for; BadParameterError names the first bad one."""

    def text(name: str) -> str:
        value = params.get(name, "").strip()
        if len(value) > MAX_TEXT:
            raise BadParameterError(f"{name}: {len(value)} characters; expected at most {MAX_TEXT}")
        return value

    status = text("status").lower()
    if status not in ("", "ok", "error"):
        raise BadParameterError(f"status {status!r}: expected ok or error")
    mode = text("mode").lower()
    if mode not in ("", "record", "replay"):
        raise BadParameterError(f"mode {mode!r}: expected record or replay")
    trace_id = text("trace_id").lower()
    if trace_id and not _HEX.fullmatch(trace_id):
        raise BadParameterError(f"trace_id {trace_id!r}: expected 1 to 32 hex digits (the beginning of a trace id)")
    before = text("before").lower()
    cursor = _CURSOR.fullmatch(before)
    if before and cursor is None:
        raise BadParameterError(f"before {before!r}: expected the 'next' cursor of a listing page")
    return TraceFilter(
        name=text("name").lower(),
        failed=None if not status else status == "error",
        mode=mode,
        model=text("model"),
        trace_id=trace_id,
        since_ns=_moment("since", text("since")),
        until_ns=_moment("until", text("until")),
        before=None if cursor is None else (int(cursor.group(1)), cursor.group(2)),
    )


def _moment(name: str, value: str) -> int | None:
    """``value`` (ISO 8601, UTC unless it says otherwise, or Unix nanoseconds) in Unix nanoseconds."""
    if not value:
        return None
    if _NANOS.fullmatch(value):
        return int(value)
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadParameterError(
            f"{name} {value!r}: expected an ISO 8601 date or time (2026-01-31, 2026-01-31T14:00, "
            "2026-01-31T14:00:00+01:00; UTC unless an offset is given) or Unix nanoseconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    delta = moment - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def query_of(params: Mapping[str, str], **changes: str) -> str:
    """The query string of ``params``' filters that are set, with ``changes`` (an empty value drops one)."""
    kept = {name: params.get(name, "").strip() for name in FILTERS}
    kept.update(changes)
    return urlencode({name: value for name, value in kept.items() if value})
