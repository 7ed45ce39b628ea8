"""Framework overhead: ``python -m pipelines.run`` vs a hand-written PyTorch loop.

Both train the book's MNIST networks (the dense net of ch. 2, the convnet of ch. 5) on the
same tensors -- by default random images in MNIST's idx format at the book's size (60,000
training images: timing does not depend on the pixels, and fixed start-up costs weigh as
they do for a user), with ``--real`` the real MNIST images of ../shared split 8,000 / 2,000
as in ``real_mnist.py`` -- with the same model class, optimizer, batch size and epochs, and
both evaluate the validation split after every epoch and keep per-epoch loss and accuracy,
as Keras' ``fit`` does.

The pipeline's time is its ``fit`` stage (``time/fit_seconds`` in the run: Trainer set-up,
training, validation, checkpoints, MLflow logging); the loop's is its own training and
validation. Each side runs in a fresh process, alternating, ``--repeats`` times; printed are
the ratio of the medians and the median of the ratios of back-to-back pairs.

    python benchmarks/overhead.py [--models mlp convnet] [--epochs 5] [--repeats 3] [--real]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cli import run
from real_mnist import SHARED, make_split

#: the book's settings, as conf/experiment/book_mnist_{dense,convnet}.yaml
EXPERIMENTS = {"mlp": "book_mnist_dense", "convnet": "book_mnist_convnet"}


def random_mnist(dest: Path, n_train: int = 60000, n_test: int = 10000) -> Path:
    """Random 28x28 images in MNIST's idx format: timing does not depend on the pixels."""
    import numpy as np

    from plugins.data.mnist import write_idx

    rng = np.random.default_rng(0)
    for prefix, count in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        write_idx(dest / f"{prefix}-images-idx3-ubyte.gz", images)
        labels = rng.integers(0, 10, count, dtype=np.uint8)
        write_idx(dest / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return dest


def hand_loop(root: Path, model_name: str, epochs: int) -> float:
    """Seconds of a plain PyTorch loop: shuffled index batches, per-epoch validation."""
    import torch
    import yaml
    from torch.nn import functional as F

    from plugins.data.mnist import MNISTDataModule
    from plugins.models import convnet, dense

    conf = Path(__file__).resolve().parents[1] / "conf"
    preset = yaml.safe_load((conf / "experiment" / f"{EXPERIMENTS[model_name]}.yaml").read_text())
    defaults = yaml.safe_load((conf / "model" / f"{model_name}.yaml").read_text())
    settings = {**defaults, **preset["model"]}
    settings.pop("name")
    batch_size = preset["data"]["batch_size"]
    data = MNISTDataModule(root=str(root), batch_size=batch_size, seed=42)
    data.setup()
    (x_train, y_train), (x_val, y_val) = data.splits["train"], data.splits["val"]
    # a script that never imports Lightning does not have its NVML-based CUDA check (the
    # MNIST and model classes used here import it): the same as the pipeline does without GPU
    from pipelines.trainer import plain_cuda_check_without_gpu

    plain_cuda_check_without_gpu()
    torch.manual_seed(42)
    factory = dense.MLP if model_name == "mlp" else convnet.ConvNet
    model = factory(input_shape=tuple(x_train.shape[1:]), num_classes=10, **settings)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=settings["lr"])
    generator = torch.Generator().manual_seed(42)

    started = time.perf_counter()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        loss_sum = correct = 0.0
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            inputs, targets = x_train[index], y_train[index]
            outputs = model(inputs)
            loss = F.cross_entropy(outputs, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) * len(index)
            correct += float((outputs.argmax(dim=1) == targets).sum())
        model.eval()
        with torch.no_grad():
            val_loss = val_correct = 0.0
            for start in range(0, len(x_val), batch_size):
                inputs, targets = (
                    x_val[start : start + batch_size],
                    y_val[start : start + batch_size],
                )
                outputs = model(inputs)
                val_loss += float(F.cross_entropy(outputs, targets, reduction="sum"))
                val_correct += float((outputs.argmax(dim=1) == targets).sum())
        history = {
            "loss": loss_sum / len(order),
            "acc": correct / len(order),
            "val_loss": val_loss / len(x_val),
            "val_acc": val_correct / len(x_val),
        }
    print(json.dumps(history), file=sys.stderr)
    return time.perf_counter() - started


def pipeline_fit_metrics(
    root: Path, experiment: str, epochs: int, cwd: Path, extra: tuple[str, ...] = ()
) -> dict[str, float]:
    """Run a book preset on the MNIST files in ``root``; the metrics its MLflow run holds.

    ``time/fit_seconds`` among them: the fit stage's wall time, which the benchmarks compare.
    """
    from mlflow import MlflowClient

    args = [
        f"experiment={experiment}",
        f"data.root={root}",
        f"trainer.max_epochs={epochs}",
        "tracking.experiment=benchmarks",
        *extra,
    ]
    result = run(args, cwd)
    client = MlflowClient(f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}")
    return client.get_run(result.run_id).data.metrics


def prepare_mnist(work: Path, real: bool, shared: Path) -> tuple[Path, str]:
    """MNIST idx files in ``work/mnist`` (random at the book's size, or the real ones)."""
    (work / "mnist").mkdir()
    if real:
        return make_split(shared, work / "mnist"), "real MNIST (../shared): 7,200 train / 800 val"
    return random_mnist(work / "mnist"), "random MNIST-format images: 54,000 train / 6,000 val"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(EXPERIMENTS), choices=EXPERIMENTS)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--real", action="store_true", help="the real images of ../shared")
    parser.add_argument(
        "--steps-per-call",
        nargs="+",
        type=int,
        default=[1],
        help="pipeline variants: speed.steps_per_call values, each timed in every repeat",
    )
    parser.add_argument("--hand-loop", nargs=2, metavar=("ROOT", "MODEL"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.hand_loop:
        root, model_name = options.hand_loop
        print(hand_loop(Path(root), model_name, options.epochs))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root, source = prepare_mnist(work, options.real, options.shared)
        print(f"{source}, {options.epochs} epochs", flush=True)
        for model_name in options.models:
            loops: list[float] = []
            fits: dict[int, list[float]] = {n: [] for n in options.steps_per_call}
            for _ in range(options.repeats):
                command = [sys.executable, __file__, "--epochs", str(options.epochs),
                           "--hand-loop", str(root), model_name]  # fmt: skip
                done = subprocess.run(command, capture_output=True, text=True, check=True)
                loops.append(float(done.stdout.strip().splitlines()[-1]))
                line = f"  {model_name}: hand loop {loops[-1]:.2f} s"
                for steps in options.steps_per_call:
                    extra = (f"speed.steps_per_call={steps}",) if steps > 1 else ()
                    metrics = pipeline_fit_metrics(
                        root, EXPERIMENTS[model_name], options.epochs, work, extra
                    )
                    fits[steps].append(metrics["time/fit_seconds"])
                    line += f", pipeline fit (steps_per_call={steps}) {fits[steps][-1]:.2f} s"
                print(line, flush=True)
            loop = statistics.median(loops)
            for steps, times in fits.items():
                fit = statistics.median(times)
                # each repeat ran back to back: the median of their ratios cancels the slow
                # and fast spells of a shared machine better than the ratio of two medians
                paired = statistics.median(f / h for f, h in zip(times, loops, strict=True))
                option = f" speed.steps_per_call={steps}" if steps > 1 else ""
                print(f"{model_name:8s} median hand loop {loop:.2f} s, pipeline fit {fit:.2f} s: "
                      f"ratio of medians {fit / loop:.3f}, median of paired ratios "
                      f"{paired:.3f}  (python -m pipelines.run experiment="
                      f"{EXPERIMENTS[model_name]} data.root=DIR{option})", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
