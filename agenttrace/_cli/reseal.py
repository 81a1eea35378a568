"""``agenttrace reseal FILE``: recompute every body's size and SHA-256 in a deliberately edited recording.

A governance replay refuses a recording whose bodies no longer match their recorded digests
(an edit, a bit flip). After editing a body on purpose (a trimmed prompt, a changed answer),
run this command to make the file consistent again; the file is rewritten in place, atomically.
OTLP JSON Lines, one OTLP JSON document and a JSON array of events are all handled; spans that
are not AgentTrace call spans are written back unchanged.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from agenttrace._format import schema as S  # noqa: N812 - the schema's names read as S.BODY
from agenttrace._format.otlp_json import decode_body

__all__ = ["add_arguments", "reseal", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``reseal`` command's arguments."""
    parser.add_argument("file", help="the trace file to re-seal (rewritten in place)")


def _attribute(attributes: list[Any], key: str) -> dict[str, Any] | None:
    for item in attributes:
        if isinstance(item, dict) and item.get("key") == key and isinstance(item.get("value"), dict):
            value: dict[str, Any] = item["value"]
            return value
    return None


def _set(attributes: list[Any], key: str, value: dict[str, Any]) -> None:
    found = _attribute(attributes, key)
    if found is None:
        attributes.append({"key": key, "value": value})
    else:
        found.clear()
        found.update(value)


def _reseal_event(attributes: list[Any]) -> bool:
    """Recompute one payload event's body size and digest; True when either changed."""
    body = _attribute(attributes, S.BODY)
    truncated = _attribute(attributes, S.BODY_TRUNCATED)
    if body is None or (truncated is not None and truncated.get("boolValue")):
        return False  # no body, or one cut at max_body_bytes: its digest is of bytes not kept
    encoding = _attribute(attributes, S.BODY_ENCODING)
    data = decode_body(str(body.get("stringValue", "")), str((encoding or {}).get("stringValue", "utf-8")))
    digest = hashlib.sha256(data).hexdigest()
    old_digest = (_attribute(attributes, S.BODY_SHA256) or {}).get("stringValue")
    old_size = (_attribute(attributes, S.BODY_SIZE) or {}).get("intValue")
    _set(attributes, S.BODY_SHA256, {"stringValue": digest})
    _set(attributes, S.BODY_SIZE, {"intValue": str(len(data))})
    return old_digest != digest or str(old_size) != str(len(data))


def _reseal_document(document: Any) -> int:
    changed = 0
    if not isinstance(document, dict):
        return 0
    for resource_spans in document.get("resourceSpans", ()):
        for scope_spans in resource_spans.get("scopeSpans", ()):
            for span in scope_spans.get("spans", ()):
                kind = _attribute(span.get("attributes", []), S.KIND)
                if kind is None or kind.get("stringValue") != "call":
                    continue
                for event in span.get("events", ()):
                    if event.get("name") in (S.EVENT_REQUEST, S.EVENT_RESPONSE):
                        changed += _reseal_event(event.setdefault("attributes", []))
    return changed


def _reseal_list_event(event: Any) -> int:
    if not isinstance(event, dict) or event.get("kind") != "call" or not isinstance(event.get("response"), dict):
        return 0
    response = event["response"]
    if response.get("body_truncated"):
        return 0
    data = decode_body(str(response.get("body", "")), str(response.get("body_encoding", "utf-8")))
    digest = hashlib.sha256(data).hexdigest()
    changed = response.get("body_sha256") != digest or response.get("body_size") != len(data)
    response["body_sha256"] = digest
    response["body_size"] = len(data)
    return int(changed)


def reseal(path: Path) -> int:
    """Rewrite ``path`` with every body's size and SHA-256 recomputed; the number of bodies changed."""
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    changed = 0
    if stripped.startswith("["):
        items = json.loads(text)
        for item in items:
            changed += _reseal_document(item) if isinstance(item, dict) and "resourceSpans" in item else 0
            changed += _reseal_list_event(item)
        out = json.dumps(items, ensure_ascii=False)
    elif stripped.startswith("{") and "\n" in stripped.rstrip() and _one_document(stripped):
        document = json.loads(text)
        changed = _reseal_document(document)
        out = json.dumps(document, ensure_ascii=False)
    else:
        lines = []
        for line in text.split("\n"):
            if not line.strip():
                lines.append(line)
                continue
            document = json.loads(line)
            changed += _reseal_document(document)
            lines.append(json.dumps(document, ensure_ascii=False, separators=(",", ":")))
        out = "\n".join(lines)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".reseal")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(out)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return changed


def _one_document(text: str) -> bool:
    """True when ``text`` is one (pretty-printed) JSON document rather than JSON Lines."""
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def run(args: argparse.Namespace) -> int:
    """Re-seal the file; exit code 2 when it cannot be read or is not JSON."""
    path = Path(args.file)
    try:
        changed = reseal(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        print(f"agenttrace reseal: {path}: {exc}", file=sys.stderr)
        return 2
    print(f"agenttrace: re-sealed {path}: {changed} body digest(s) recomputed", file=sys.stderr)
    return 0
