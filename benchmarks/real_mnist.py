"""Real MNIST acceptance numbers: mlp and convnet accuracy, and transfer learning.

The only real MNIST images here are the 10,000 test images in ``../shared/data/mnist``
(see its SOURCES.md). They are split into train (first 8,000) and test (last 2,000) idx
files in the standard format, and every run goes through the CLI exactly as a user's would.

    python benchmarks/real_mnist.py [--shared ../shared/data/mnist] [--only accuracy|transfer]

Prints one line per measurement; docs/benchmarks.md's table is copied from this output.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from cli import run

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "mnist"


def make_split(shared: Path, dest: Path, n_train: int = 8000) -> Path:
    """Write the real test set as train/t10k idx files (first ``n_train`` are training)."""
    from plugins.data.mnist import read_idx, write_idx

    images = read_idx(shared / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(shared / "t10k-labels-idx1-ubyte.gz")
    write_idx(dest / "train-images-idx3-ubyte.gz", images[:n_train])
    write_idx(dest / "train-labels-idx1-ubyte.gz", labels[:n_train])
    write_idx(dest / "t10k-images-idx3-ubyte.gz", images[n_train:])
    write_idx(dest / "t10k-labels-idx1-ubyte.gz", labels[n_train:])
    return dest


def accuracy(data: list[str], cwd: Path) -> None:
    for model, epochs in (("mlp", 10), ("convnet", 10)):
        args = [*data, f"model={model}", f"trainer.max_epochs={epochs}"]
        result = run(args, cwd)
        metrics, seconds = result.metrics, result.seconds
        print(f"real MNIST {model:8s} test/acc {metrics['test/acc']:.4f}  ({seconds:.0f} s)  "
              f"python -m pipelines.run {' '.join(args)}", flush=True)  # fmt: skip


def transfer(data: list[str], cwd: Path, seeds: tuple[int, ...] = (1, 2, 3)) -> None:
    """Source: the book's MNIST convnet; target: 50 labelled, upsampled sklearn digits."""
    source_args = [*data, "experiment=book_mnist_convnet"]
    source = run(source_args, cwd)
    metrics, source_id = source.metrics, source.run_id
    print(f"source: python -m pipelines.run {' '.join(source_args)}\n"
          f"  convnet on real MNIST, test/acc {metrics['test/acc']:.4f}", flush=True)  # fmt: skip
    tracked = ["tracking.experiment=benchmarks"]
    scratch_args = [*tracked, "data=digits_few", "augment=digits", "model=convnet",
                    "model.padding=valid", "trainer.max_epochs=30"]  # fmt: skip
    transfer_args = [*tracked, "experiment=transfer_digits", f"model.backbone=runs:/{source_id}"]
    results: dict[str, list[float]] = {"scratch": [], "feature extraction": [], "fine-tuning": []}
    for seed in seeds:
        scratch = run([*scratch_args, f"seed={seed}"], cwd).metrics
        transferred = run([*transfer_args, f"seed={seed}"], cwd).metrics
        results["scratch"].append(scratch["test/acc"])
        results["feature extraction"].append(transferred["feature_extraction/test/acc"])
        results["fine-tuning"].append(transferred["test/acc"])
        print(f"  seed {seed}: scratch {scratch['test/acc']:.4f}  feature extraction "
              f"{transferred['feature_extraction/test/acc']:.4f}  fine-tuning "
              f"{transferred['test/acc']:.4f}", flush=True)  # fmt: skip
    print("target: sklearn digits at 28x28, 50 training images, 360 test images; "
          f"seeds {', '.join(map(str, seeds))}")  # fmt: skip
    for name, values in results.items():
        print(f"  {name:20s} mean test/acc {sum(values) / len(values):.4f}  "
              f"({', '.join(f'{v:.4f}' for v in values)})")  # fmt: skip
    print(f"  scratch:   python -m pipelines.run {' '.join(scratch_args)} seed=S\n"
          f"  transfer:  python -m pipelines.run {' '.join(transfer_args[:-1])} "
          "model.backbone=runs:/<source run id> seed=S", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--only", choices=("accuracy", "transfer"))
    options = parser.parse_args()
    if not options.shared.is_dir():
        raise SystemExit(f"{options.shared} not found: it holds the real MNIST test set.")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = make_split(options.shared, work / "mnist")
        data = ["data=mnist", f"data.root={root}", "tracking.experiment=benchmarks"]
        if options.only in (None, "accuracy"):
            accuracy(data, work)
        if options.only in (None, "transfer"):
            transfer(data, work)


if __name__ == "__main__":
    main()
