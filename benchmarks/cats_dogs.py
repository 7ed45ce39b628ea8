"""Cats vs. dogs on 400 real photos: the small convnet with and without augmentation + dropout.

The book (2nd ed. ch. 8) trains its convnet from scratch on 2,000 Kaggle photos and shows
that data augmentation plus dropout fights the overfitting of so little data. The 400
real photos in ``../shared/data/images`` (200 cats, 200 dogs; see its SOURCES.md) are a
smaller version of that set; every run goes through the CLI exactly as a user's would.

    python benchmarks/cats_dogs.py [--images ../shared/data/images] [--seeds 1 2] [--epochs 60]

Prints one line per run and the mean per setting; the README's table is copied from it.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "images"
SETTINGS = {
    "plain": ["model.dropout=0.0"],
    "augmentation + dropout": ["augment=book", "model.dropout=0.5"],
}


def run(args: list[str], cwd: Path) -> tuple[dict[str, float], float]:
    """Run the CLI; return its summary metrics and wall seconds."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.run", *args], cwd=cwd, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{proc.stderr[-3000:]}")
    metrics = {
        m[1]: float(m[2]) for m in re.finditer(r"^\s+(\S+/\S+)\s+([0-9.]+)$", proc.stdout, re.M)
    }
    return metrics, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=SHARED)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--image-size", type=int, default=128)
    options = parser.parse_args()
    if not options.images.is_dir():
        raise SystemExit(f"{options.images} not found: it holds the 400 real cat/dog photos.")
    base = [
        "data=image_folder", f"data.root={options.images.resolve()}",
        f"data.image_size={options.image_size}", "model=convnet",
        "model.filters=[32,64,128,128]", "model.padding=valid",
        f"trainer.max_epochs={options.epochs}", "tracking.experiment=benchmarks",
    ]  # fmt: skip
    print(f"python -m pipelines.run {' '.join(base)} [setting] seed=S", flush=True)
    results: dict[str, list[float]] = {name: [] for name in SETTINGS}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in options.seeds:
            for name, extra in SETTINGS.items():
                args = [*base, *extra, f"seed={seed}", f"data.cache_dir={tmp}/cache"]
                metrics, seconds = run(args, Path(tmp))
                results[name].append(metrics["test/acc"])
                print(f"  seed {seed} {name:24s} test/acc {metrics['test/acc']:.4f} "
                      f"({seconds:.0f} s)  [{' '.join(extra)}]", flush=True)  # fmt: skip
    for name, values in results.items():
        print(f"{name:24s} mean test/acc {sum(values) / len(values):.4f} "
              f"({', '.join(f'{v:.4f}' for v in values)})")  # fmt: skip


if __name__ == "__main__":
    main()
