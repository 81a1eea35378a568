"""The layout's two rules: no import cycles among the product's modules, and none wired at import."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The repository's top-level instrumentors/ and exporters/ install as subpackages of agenttrace.
PACKAGES = {
    "agenttrace": "agenttrace",
    "instrumentors": "agenttrace.instrumentors",
    "exporters": "agenttrace.exporters",
}


def _modules() -> dict[str, Path]:
    found = {}
    for folder, dotted in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            found[".".join([dotted, *parts])] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every product module ``name`` imports, at module level or inside functions."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for imported in targets:
            target = imported
            while target and target not in known:
                target = target.rpartition(".")[0]
            # A package re-exporting (or lazily loading) its own submodules is not a cycle.
            if target and target != name and not (path.name == "__init__.py" and target.startswith(name + ".")):
                out.add(target)
    return out


def test_no_import_cycles() -> None:
    """The modules of agenttrace/, instrumentors/ and exporters/ import one another without a cycle."""
    modules = _modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None


def test_no_module_registers_hooks_at_import() -> None:
    """No module calls a registration (atexit, import hooks, hook lists) at its top level.

    ``os.register_at_fork`` is left out: a module renewing its own lock in a forked child keeps
    that lock usable, it wires nothing to anything else.
    """
    offenders = []
    for name, path in _modules().items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            call = node.value if isinstance(node, ast.Expr) else None
            if isinstance(call, ast.Call):
                text = ast.unparse(call.func)
                if text.endswith(("register", "register_post_import_hook", "append", "on_configure", "on_runs")):
                    offenders.append(f"{name}: {ast.unparse(call)}")
    assert offenders == []
