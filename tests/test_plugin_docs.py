"""docs/plugins.md shows the example package that the tests install and run, file by file.

A code block of the guide that shows a file of the package is headed by the line
``<!-- file: tests/fixtures/tiny_plugin/PATH -->`` (invisible once rendered) right before
its opening fence. Such a block must equal the file exactly, and every file of the package
(build and test run leftovers aside) must be shown by one.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = Path("docs") / "plugins.md"
PACKAGE = Path("tests") / "fixtures" / "tiny_plugin"
#: what a build, an install or a test run leaves in the package's folder, never shown
LEFTOVERS = ("__pycache__", ".pytest_cache", "build", "dist", "mlruns", "outputs")
MARK = re.compile(r"<!-- file: (?P<path>\S+) -->")
FENCE = re.compile(r"(?P<fence>`{3,}|~{3,})[\w+-]*")


def shown_files(guide: str) -> tuple[dict[str, list[str]], list[str]]:
    """The blocks headed by a file mark, as ``{path: [content, ...]}``, and what is wrong
    with the marks themselves (one not followed by a fenced block, a block left open)."""
    lines = guide.splitlines()
    shown: dict[str, list[str]] = {}
    problems = []
    for number, line in enumerate(lines):
        mark = MARK.fullmatch(line.strip())
        if not mark:
            continue
        path = mark["path"]
        opening = FENCE.fullmatch(lines[number + 1]) if number + 1 < len(lines) else None
        if not opening:
            problems.append(f"line {number + 1}: the mark of {path} is not followed by a fence")
            continue
        fence = opening["fence"]
        end = next((i for i in range(number + 2, len(lines)) if lines[i] == fence), None)
        if end is None:
            problems.append(f"line {number + 1}: the block of {path} is never closed")
            continue
        shown.setdefault(path, []).append("".join(f"{row}\n" for row in lines[number + 2 : end]))
    return shown, problems


def package_files(root: Path) -> list[str]:
    """The package's files, as paths from the repository root (leftovers aside)."""
    return sorted(
        path.relative_to(root).as_posix()
        for path in (root / PACKAGE).rglob("*")
        if path.is_file()
        and not any(
            part in LEFTOVERS or part.endswith(".egg-info")
            for part in path.relative_to(root / PACKAGE).parts
        )
        and path.suffix != ".pyc"
    )


def problems_of(root: Path) -> list[str]:
    """Everything that keeps the guide at ``root`` from showing the package at ``root``."""
    shown, problems = shown_files((root / GUIDE).read_text())
    for path, blocks in sorted(shown.items()):
        file = root / path
        if not path.startswith(f"{PACKAGE.as_posix()}/") or not file.is_file():
            problems.append(f"{path} is shown but is no file of the example package")
            continue
        text = file.read_text()
        problems += [
            f"{path} is shown differently from the file (block {index} of {len(blocks)})"
            for index, block in enumerate(blocks, 1)
            if block != text
        ]
    problems += [f"{path} is not shown" for path in package_files(root) if path not in shown]
    return problems


def test_the_guide_shows_every_file_of_the_example_package_as_it_is() -> None:
    assert len(package_files(ROOT)) >= 8, "the example package was not found"
    assert problems_of(ROOT) == []


def test_the_package_shown_is_the_one_the_tests_install_and_run() -> None:
    from test_third_party_plugin import FIXTURE

    assert FIXTURE.resolve() == ROOT / PACKAGE
    assert "tests/test_third_party_plugin.py" in (ROOT / GUIDE).read_text()


@pytest.fixture
def copied(tmp_path: Path) -> Path:
    """The guide and the package, copied: what the checks below alter."""
    (tmp_path / GUIDE).parent.mkdir(parents=True)
    shutil.copy(ROOT / GUIDE, tmp_path / GUIDE)
    shutil.copytree(
        ROOT / PACKAGE,
        tmp_path / PACKAGE,
        ignore=shutil.ignore_patterns(*LEFTOVERS, "*.egg-info", "*.pyc"),
    )
    assert problems_of(tmp_path) == []
    return tmp_path


def test_a_changed_file_is_found(copied: Path) -> None:
    model = copied / PACKAGE / "src" / "pipelines_tiny_plugin" / "model.py"
    model.write_text(model.read_text().replace("width: LayerSize = 16", "width: LayerSize = 8"))
    assert problems_of(copied) == [
        f"{PACKAGE.as_posix()}/src/pipelines_tiny_plugin/model.py is shown differently from "
        "the file (block 1 of 1)"
    ]


def test_a_changed_block_is_found(copied: Path) -> None:
    guide = copied / GUIDE
    guide.write_text(guide.read_text().replace("tiny = ", "tiny  = ", 1))
    assert problems_of(copied) == [
        f"{PACKAGE.as_posix()}/pyproject.toml is shown differently from the file (block 1 of 1)"
    ]


def test_a_file_the_guide_does_not_show_is_found(copied: Path) -> None:
    (copied / PACKAGE / "README.md").write_text("A new file.\n")
    (copied / PACKAGE / "src" / "pipelines_tiny_plugin" / "__pycache__").mkdir()
    (copied / PACKAGE / "src" / "pipelines_tiny_plugin" / "__pycache__" / "x.pyc").write_text("")
    assert problems_of(copied) == [f"{PACKAGE.as_posix()}/README.md is not shown"]


def test_a_block_without_its_mark_is_found(copied: Path) -> None:
    guide = copied / GUIDE
    mark = f"<!-- file: {PACKAGE.as_posix()}/src/pipelines_tiny_plugin/stage.py -->\n"
    assert mark in guide.read_text()
    guide.write_text(guide.read_text().replace(mark, ""))
    assert problems_of(copied) == [
        f"{PACKAGE.as_posix()}/src/pipelines_tiny_plugin/stage.py is not shown"
    ]


def test_a_mark_of_no_file_or_without_a_block_is_found(copied: Path) -> None:
    guide = copied / GUIDE
    guide.write_text(
        guide.read_text()
        + f"\n<!-- file: {PACKAGE.as_posix()}/gone.py -->\n```python\npass\n```\n"
        + "\n<!-- file: docs/plugins.md -->\nno block\n"
    )
    assert problems_of(copied) == [
        f"line {len(guide.read_text().splitlines()) - 1}: the mark of docs/plugins.md is not "
        "followed by a fence",
        f"{PACKAGE.as_posix()}/gone.py is shown but is no file of the example package",
    ]
