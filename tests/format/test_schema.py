"""Every attribute and event name is defined once, in agenttrace/_format/schema.py, and documented."""

from __future__ import annotations

import re
from pathlib import Path

from agenttrace._format import schema as _schema

ROOT = Path(__file__).resolve().parents[2]
NAMES = {
    value
    for key, value in vars(_schema).items()
    if key.isupper() and isinstance(value, str) and value.startswith("agenttrace.")
}


def test_every_name_is_documented() -> None:
    """Each attribute and event name of the schema appears in docs/ (a table users read)."""
    docs = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "docs").glob("*.md"))
    missing = sorted(name for name in NAMES if f"`{name}`" not in docs and f"`{name}<key>`" not in docs)
    assert missing == []


def test_names_are_not_spelt_outside_the_schema() -> None:
    """No module writes an `agenttrace.x` attribute name as a literal: it imports it from _schema."""
    literal = re.compile(r"[\"'](agenttrace\.[a-z_]+(?:\.[a-z_]+)*)[\"']")
    offenders = []
    for folder in ("agenttrace", "instrumentors", "exporters"):
        for module in (ROOT / folder).rglob("*.py"):
            if module == ROOT / "agenttrace" / "_format" / "schema.py":
                continue
            for found in literal.findall(module.read_text(encoding="utf-8")):
                if found in NAMES:
                    offenders.append(f"{module.relative_to(ROOT)}: {found}")
    assert offenders == []
