"""Cats vs. dogs on 400 real photos: the small convnet with and without augmentation + dropout.

The book (2nd ed. ch. 8) trains its convnet from scratch on 2,000 Kaggle photos and shows
that data augmentation plus dropout fights the overfitting of so little data. The 400
real photos in ``../shared/data/images`` (200 cats, 200 dogs; see its SOURCES.md) are a
smaller version of that set; every run goes through the CLI exactly as a user's would.

    python benchmarks/cats_dogs.py [--images ../shared/data/images] [--seeds 1 2] [--epochs 60]

Prints one line per run and the mean per setting; docs/benchmarks.md's table is copied from it.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from cli import run

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "images"
SETTINGS = {
    "plain": ["model.dropout=0.0"],
    "augmentation + dropout": ["augment=book", "model.dropout=0.5"],
}


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
                result = run(args, Path(tmp))
                metrics, seconds = result.metrics, result.seconds
                results[name].append(metrics["test/acc"])
                print(f"  seed {seed} {name:24s} test/acc {metrics['test/acc']:.4f} "
                      f"({seconds:.0f} s)  [{' '.join(extra)}]", flush=True)  # fmt: skip
    for name, values in results.items():
        print(f"{name:24s} mean test/acc {sum(values) / len(values):.4f} "
              f"({', '.join(f'{v:.4f}' for v in values)})")  # fmt: skip


if __name__ == "__main__":
    main()
