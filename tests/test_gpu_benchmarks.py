"""The GPU benchmarks run on CPU too, so they do not rot between the sessions lent a GPU.

Their figures come from a GPU (docs/benchmarks.md, "GPU"); here each script runs its CPU
mode on tiny data through every variant it has, and must print its per-variant lines.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest import run_cli

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _tiny_mnist(folder: Path) -> Path:
    """MNIST idx files of random digits: 256 to train, 64 to test."""
    from plugins.data.mnist import write_idx

    rng = np.random.default_rng(0)
    for split, count in (("train", 256), ("t10k", 64)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, count, dtype=np.uint8)
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return folder


def test_time_to_accuracy_script_runs_every_variant_on_cpu(tmp_path: Path) -> None:
    root = _tiny_mnist(tmp_path)
    args = ["--device", "cpu", "--root", str(root), "--target", "0.0", "--max-epochs", "1",
            "--variants", "plain", "ours"]  # fmt: skip
    result = run_cli(args, BENCHMARKS, module="gpu")
    assert result.returncode == 0, result.stderr[-3000:]
    for variant in ("plain", "ours"):
        assert f"{variant} " in result.stdout and "to test acc" in result.stdout
    assert "ours: speed settings applied" in result.stdout


def test_precision_script_times_both_precisions_on_cpu(tmp_path: Path) -> None:
    args = ["--device", "cpu", "--models", "convnet", "--images", "32", "--size", "96",
            "--epochs", "2", "--channels-last", "on"]  # fmt: skip
    result = run_cli(args, BENCHMARKS, module="gpu_precision")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "convnet 32-true: speed settings applied: {'channels_last': True}" in result.stdout
    for precision in ("32-true", "bf16-mixed"):
        assert f"convnet       {precision:10s} first epoch" in result.stdout
    assert "convnet: bf16-mixed" in result.stdout
