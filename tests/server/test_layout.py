"""The server is a part of its own: it reads traces through the trace-format package, and reaches
the rest of AgentTrace only for its configuration error and its one-time warnings."""

from __future__ import annotations

import ast
from pathlib import Path

import agenttrace._server

SERVER = Path(agenttrace._server.__file__).parent
ALLOWED = ("agenttrace._server", "agenttrace._format", "agenttrace._core.errors")


def test_the_server_imports_agenttrace_only_through_the_trace_format() -> None:
    outside = []
    for module in sorted(SERVER.glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                if name.split(".")[0] == "agenttrace" and not name.startswith(ALLOWED):
                    outside.append(f"{module.name}: {name}")
    assert outside == []
