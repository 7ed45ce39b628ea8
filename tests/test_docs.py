"""The documentation keeps its promises: a README a newcomer reads, a book page with every
preset and pipeline, and no path into the developers' shared data folder."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipelines.config import config_dir

ROOT = Path(__file__).resolve().parents[1]
README_LIMIT = 12_000


def test_the_readme_is_short() -> None:
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes; move detail into docs/"


def test_every_page_the_readme_links_exists() -> None:
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = set(re.findall(r"\]\(((?:docs/)[^)#\s]+)", readme))
    assert {"docs/book.md", "docs/plugins.md", "docs/benchmarks.md", "docs/usage.md"} <= links
    for link in links:
        assert (ROOT / link).is_file(), link


@pytest.mark.parametrize("group", ["experiment", "pipeline"])
def test_the_book_page_has_a_row_for_every_preset_and_pipeline(group: str) -> None:
    book = (ROOT / "docs" / "book.md").read_text(encoding="utf-8")
    rows = [line for line in book.splitlines() if line.startswith("|")]
    names = sorted(path.stem for path in (config_dir() / group).glob("*.yaml"))
    if group == "experiment":
        names = [name for name in names if name.startswith("book_")]
    assert names
    missing = [name for name in names if not any(f"`{name}`" in r or f"={name}" in r for r in rows)]
    assert not missing, f"docs/book.md has no table row for {group} {missing}"


def test_nothing_but_tests_and_benchmarks_points_at_the_shared_data_folder() -> None:
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    pointing = [
        name
        for name in files
        if not name.startswith(("tests/", "benchmarks/"))
        and (ROOT / name).is_file()
        and "../shared" in (ROOT / name).read_text(encoding="utf-8", errors="ignore")
    ]
    assert not pointing, f"these files point at ../shared, absent on a user's machine: {pointing}"
