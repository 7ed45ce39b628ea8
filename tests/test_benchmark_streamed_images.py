"""benchmarks/streamed_images.py runs on a tiny generated folder and prints every row.

Its figures come from the 400 real photos (docs/benchmarks.md, "Streamed image folders");
here the script makes 24 JPEGs itself (its ``--folder`` absent) and runs one round at
32x32, so the script does not rot. The peak-memory part starts real training runs through
the CLI (tens of seconds each on a busy machine): it is checked under ``pytest -m slow``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import run_cli

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TINY = ["--generate", "24", "--size", "32", "--rounds", "1", "--steps", "1"]
NUMBER = r"\s+[0-9.]+"


def _run(tmp_path: Path, *args: str) -> str:
    folder = tmp_path / "absent"
    result = run_cli(["--folder", str(folder), *TINY, *args], BENCHMARKS, module="streamed_images")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{folder} not found: generating 24 JPEGs" in result.stdout
    return result.stdout


def test_throughput_and_cache_parts_print_every_row(tmp_path: Path) -> None:
    out = _run(tmp_path, "--parts", "throughput", "cache")
    assert "setup: in memory" in out and "round 1:" in out
    assert "streamed (ours) / torchvision ImageFolder, samples/s:" in out
    for path in (
        "in-memory (ours)",
        "streamed (ours)",
        "torchvision ImageFolder",
        "torchvision + draft decode",
    ):  # samples/s, CPU ms a sample, the ratio to the in-memory path and its range
        assert re.search(rf"^  {re.escape(path)}{NUMBER}{NUMBER}\s+[0-9.]+x \(", out, re.M), path
    for row in (
        "decode_image (JPEG draft decode + resize)",
        "memmap read of a decoded sample",
        "ImageFiles[i], decoding (streamed path)",
        "ImageFiles[i], from the memmap",
        "writing the memmap (first epoch), wall",
        "convnet training step (CPU, batch 32)",
    ):
        assert re.search(rf"^  {re.escape(row)}{NUMBER}", out, re.M), row
    assert "cold page cache, wall: decode_image / memmap" in out
    assert "a cache would save" in out


@pytest.mark.slow
def test_peak_memory_part_runs_the_cli_streamed_and_in_memory(tmp_path: Path) -> None:
    out = _run(tmp_path, "--parts", "rss", "--rss-runs", "baseline", "streamed",
               "--rss-repeats", "1", "--baseline-per-class", "6")  # fmt: skip
    assert "baseline  [data.in_memory=true data.limit_per_class=6] took the in memory" in out
    assert "took the streamed path" in out
    for run in ("baseline", "streamed"):
        assert re.search(rf"^  {run}{NUMBER}{NUMBER}{NUMBER}{NUMBER}", out, re.M), run
    assert "fixed cost: the baseline's tree" in out
    assert "streamed tree = fixed cost" in out
