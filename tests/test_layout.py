"""The engine's layout as docs/ARCHITECTURE.md maps it: small modules, a core that reads in
one sitting, and imports that go one way between its packages."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "src" / "pipelines"
MAP = ROOT / "docs" / "ARCHITECTURE.md"

#: a package of the engine -> the engine packages and modules its code may import
ALLOWED_IMPORTS = {
    "runtime": {"errors"},
    "tracking": {"errors", "runtime"},
    "speed": {"errors"},
}


def lines_of(path: Path) -> int:
    return len(path.read_text().splitlines())


def engine_imports(path: Path) -> set[str]:
    """The engine modules ``path`` imports, as dotted names below ``pipelines``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "pipelines":
                found |= {alias.name for alias in node.names}
            elif node.module.startswith("pipelines."):
                found.add(node.module.removeprefix("pipelines."))
        elif isinstance(node, ast.Import):
            found |= {
                a.name.removeprefix("pipelines.")
                for a in node.names
                if a.name.startswith("pipelines.")
            }
    return found


def test_no_engine_module_is_over_450_lines() -> None:
    long = {
        str(path.relative_to(ENGINE)): lines_of(path)
        for path in ENGINE.rglob("*.py")
        if lines_of(path) > 450
    }
    assert not long, f"split these modules: {long}"


def test_run_pipeline_is_a_short_loop() -> None:
    tree = ast.parse((ENGINE / "runner.py").read_text())
    (function,) = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name == "run_pipeline"
    ]
    assert function.end_lineno - function.lineno + 1 <= 60


def test_the_engine_never_imports_a_plugin() -> None:
    for path in ENGINE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            assert not any(n.split(".")[0] == "plugins" for n in names), path


@pytest.mark.parametrize("package", sorted(ALLOWED_IMPORTS))
def test_lower_packages_import_only_below_them(package: str) -> None:
    allowed = ALLOWED_IMPORTS[package] | {package}
    folder = ENGINE / package
    paths = [*folder.rglob("*.py")] if folder.is_dir() else [ENGINE / f"{package}.py"]
    for path in paths:
        wrong = {m for m in engine_imports(path) if m.split(".")[0] not in allowed}
        assert not wrong, f"{path.relative_to(ENGINE)} imports {wrong}"


def test_only_the_registry_reads_the_plugin_api_in_the_engine() -> None:
    readers = {
        str(path.relative_to(ENGINE))
        for path in ENGINE.rglob("*.py")
        if "api" in engine_imports(path)
    }
    assert readers == {"registry.py"}


def core_table() -> dict[str, int]:
    """The core's modules and line counts as the map lists them (``| `run.py` | 84 |``)."""
    text = MAP.read_text()
    section = text.split("## The core", 1)[1].split("\n## ", 1)[0]
    return {
        name: int(count)
        for name, count in re.findall(r"^\| `([\w/.]+\.py)` \| (\d+) \|", section, re.M)
    }


def test_the_map_lists_the_core_with_its_line_counts() -> None:
    listed = core_table()
    assert {"run.py", "runner.py", "lifecycle.py", "context.py", "registry.py"} <= set(listed)
    actual = {name: lines_of(ENGINE / name) for name in listed}
    for name, count in listed.items():
        assert abs(actual[name] - count) <= max(10, count // 10), (name, count, actual[name])
    assert sum(actual.values()) <= 1200, actual
