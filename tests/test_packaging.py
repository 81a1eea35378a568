"""The distribution is laid out as the design card says, in a built wheel and an editable install."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

import agenttrace

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_maps_instrumentors_and_exporters_under_agenttrace(tmp_path: Path) -> None:
    """The wheel holds agenttrace.instrumentors/exporters and py.typed, and no top-level instrumentors/exporters."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("agenttrace", "instrumentors", "exporters"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("agenttrace-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "agenttrace/__init__.py" in names
    assert "agenttrace/py.typed" in names
    assert "agenttrace/instrumentors/__init__.py" in names
    assert "agenttrace/exporters/__init__.py" in names
    assert "agenttrace/exporters/local.py" in names
    for folder, prefix in (
        ("agenttrace", "agenttrace"),
        ("instrumentors", "agenttrace/instrumentors"),
        ("exporters", "agenttrace/exporters"),
    ):
        for module in (ROOT / folder).rglob("*"):
            # Every module and every file read at run time (the server's templates and style sheet, the prices).
            if module.suffix in (".py", ".html", ".css", ".toml") and "__pycache__" not in module.parts:
                assert f"{prefix}/{module.relative_to(ROOT / folder).as_posix()}" in names, module
    top_levels = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_levels == {"agenttrace"}
    assert wheel.name.startswith(f"agenttrace-{agenttrace.__version__}-")


def test_installed_package_imports_subpackages_not_top_level(tmp_path: Path) -> None:
    """From outside the repository, agenttrace.instrumentors imports and a bare `instrumentors` does not."""
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import importlib.util, agenttrace.instrumentors, agenttrace.exporters.local;"
            "print(importlib.util.find_spec('instrumentors'), importlib.util.find_spec('exporters'))",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["None", "None"]


def test_version_is_single_sourced() -> None:
    """pyproject takes its version from agenttrace._version and the CHANGELOG names it."""
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'version = \{ attr = "agenttrace._version.__version__" \}', pyproject)
    assert f"## {agenttrace.__version__}" in (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")


def _requirements() -> tuple[list[Requirement], dict[str, list[Requirement]]]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = {name: [Requirement(r) for r in reqs] for name, reqs in project["optional-dependencies"].items()}
    return [Requirement(r) for r in project["dependencies"]], extras


def test_opentelemetry_is_a_range_over_proto_http_and_grpc_is_an_extra() -> None:
    """No exact OpenTelemetry pin, no grpcio-pulling meta-package; gRPC export only with the grpc extra."""
    required, extras = _requirements()
    names = {r.name for r in required}
    otel = [r for r in required if r.name.startswith("opentelemetry")]
    assert {r.name for r in otel} == {
        "opentelemetry-api",
        "opentelemetry-sdk",
        "opentelemetry-exporter-otlp-proto-http",
        "opentelemetry-instrumentation",
    }
    assert "opentelemetry-exporter-otlp" not in names
    assert not any("grpc" in name for name in names)
    for requirement in otel:
        operators = {spec.operator for spec in requirement.specifier}
        assert operators == {">=", "<"}, requirement  # a range, never ==
    assert [r.name for r in extras["grpc"]] == ["opentelemetry-exporter-otlp-proto-grpc"]


def test_oldest_constraints_are_pyprojects_lower_bounds() -> None:
    """.ci/otel-oldest.txt (the CI stage on the oldest release) pins exactly the declared lower bounds."""
    required, extras = _requirements()
    lower = {
        r.name: spec.version
        for r in [*required, *extras["grpc"], *extras["test"]]
        if r.name.startswith("opentelemetry")
        for spec in r.specifier
        if spec.operator == ">="
    }
    pins = {}
    for line in (ROOT / ".ci" / "otel-oldest.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip()] = version.strip()
    assert {name: pins.get(name) for name in lower} == lower
