"""Peers: ``python -m pipelines.run`` vs the book's own Keras 3 code, on JAX and on torch.

The book's first network (ch. 2) is a few lines of Keras; a user choosing between writing
those lines and running our pipeline wants to know what the pipeline costs or saves. Both
sides train that network -- Dense(512, relu) -> Dense(10, softmax), RMSprop(1e-3), sparse
categorical cross-entropy, batches of 128 -- for the same epochs on the very same tensors:
the Keras side loads the train / validation split through our ``MNISTDataModule`` (pixels
in [0, 1], the seeded 10% validation split the pipeline draws with its default seed) and
flattens it to 784 floats, as the book does. By default the images are random ones in
MNIST's idx format at the book's size (60,000 training images: timing does not depend on
the pixels); with ``--real`` they are the real MNIST images of ../shared split 8,000 / 2,000
as in ``real_mnist.py``. Both sides evaluate the validation split after every epoch and keep
per-epoch loss and accuracy (Keras' ``fit`` with ``validation_data``, the pipeline's fit).

The Keras time is its ``model.fit`` call alone (including its one-off tracing / XLA
compilation, as a user waits for it; imports and data loading excluded); the pipeline's is
its ``fit`` stage (``time/fit_seconds`` in the run: Trainer set-up, training, validation,
checkpoints, MLflow logging). Every side runs in a fresh process with its library's default
threading, alternating, ``--repeats`` times; per side, the medians and the ratio Keras /
pipeline are printed (above 1: the pipeline is faster).

    python benchmarks/peers.py [--backends jax torch] [--epochs 5] [--repeats 3] [--real]
                               [--steps-per-call auto] [--keras-steps-per-execution 32]

Needs the ``bench`` extra (``pip install -e .[bench]``: Keras 3 and JAX).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from overhead import add_mnist_options, pipeline_fit_metrics, prepare_mnist

if TYPE_CHECKING:
    import numpy as np

BACKENDS = ("jax", "torch")
EXPERIMENT = "book_mnist_dense"
#: the book's settings, written out on the Keras side as the book writes them; ``main``
#: checks that conf/experiment/book_mnist_dense.yaml still says the same
BOOK = {"hidden_units": [512], "optimizer": "keras_rmsprop", "lr": 1e-3, "batch_size": 128}
#: conf/config.yaml's ``seed``: the pipeline's validation split, reproduced for Keras
SEED = 42


class Fit(TypedDict):
    """One side's measurement: what is timed, and the accuracy that shows it learned."""

    seconds: float
    val_acc: float


def check_preset() -> None:
    """Stop if the pipeline's preset drifted from the book: the comparison would be unfair."""
    import yaml

    conf = Path(__file__).resolve().parents[1] / "conf"
    preset = yaml.safe_load((conf / "experiment" / f"{EXPERIMENT}.yaml").read_text())
    found = {**preset["model"], "batch_size": preset["data"]["batch_size"]}
    drifted = {key: found.get(key) for key, value in BOOK.items() if found.get(key) != value}
    if drifted:
        raise SystemExit(f"conf/experiment/{EXPERIMENT}.yaml differs from the book: {drifted}")


def book_arrays(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The pipeline's own train / validation split as the flat float32 arrays the book uses.

    Going through ``MNISTDataModule`` rather than re-reading the idx files guarantees the
    same images, scaling and validation split as the pipeline, not merely similar ones.
    """
    from plugins.data.mnist import MNISTDataModule

    data = MNISTDataModule(root=str(root), batch_size=BOOK["batch_size"], seed=SEED)
    data.setup()
    (x_train, y_train), (x_val, y_val) = data.splits["train"], data.splits["val"]
    return (
        x_train.reshape(len(x_train), 28 * 28).numpy(),
        y_train.numpy(),
        x_val.reshape(len(x_val), 28 * 28).numpy(),
        y_val.numpy(),
    )


def keras_fit(root: Path, epochs: int, steps_per_execution: int = 1) -> Fit:
    """The book's Keras code in this process's backend (``KERAS_BACKEND``): fit seconds.

    Run only in a fresh process: Keras fixes its backend at import, and a fresh process keeps
    one side's warm caches and allocations from helping the next.
    """
    x_train, y_train, x_val, y_val = book_arrays(root)
    import keras
    from keras import layers

    wanted = os.environ.get("KERAS_BACKEND", "tensorflow")
    if keras.backend.backend() != wanted:
        raise SystemExit(f"asked Keras for {wanted}, it runs {keras.backend.backend()}")
    keras.utils.set_random_seed(SEED)
    model = keras.Sequential(
        [
            keras.Input((784,)),
            layers.Dense(512, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.RMSprop(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,  # the book leaves it at 1
    )
    started = time.perf_counter()
    history = model.fit(
        x_train,
        y_train,
        epochs=epochs,
        batch_size=128,
        validation_data=(x_val, y_val),
        verbose=0,
    )
    seconds = time.perf_counter() - started
    last = {key: float(values[-1]) for key, values in history.history.items()}
    print(json.dumps(last), file=sys.stderr)
    return {"seconds": seconds, "val_acc": last["val_accuracy"]}


def keras_side(root: Path, backend: str, epochs: int, steps_per_execution: int = 1) -> Fit:
    """Run :func:`keras_fit` in a fresh process with ``KERAS_BACKEND=backend``."""
    command = [sys.executable, __file__, "--epochs", str(epochs), "--keras-fit", str(root),
               "--keras-steps-per-execution", str(steps_per_execution)]  # fmt: skip
    env = {**os.environ, "KERAS_BACKEND": backend}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"keras ({backend}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def pipeline_side(root: Path, epochs: int, cwd: Path, steps_per_call: str = "auto") -> Fit:
    """The pipeline's fit seconds and last validation accuracy, read from its MLflow run."""
    extra = (f"speed.steps_per_call={steps_per_call}",) if steps_per_call != "auto" else ()
    metrics = pipeline_fit_metrics(root, EXPERIMENT, epochs, cwd, extra)
    return {"seconds": metrics["time/fit_seconds"], "val_acc": metrics.get("val/acc", float("nan"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    add_mnist_options(parser, repeats=3)
    parser.add_argument(
        "--steps-per-call", default="auto", help="the pipeline's speed.steps_per_call"
    )
    parser.add_argument(
        "--keras-steps-per-execution",
        type=int,
        default=1,
        help="Keras' compile(steps_per_execution=): 1 as the book writes it",
    )
    parser.add_argument("--keras-fit", type=Path, metavar="ROOT", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.keras_fit:
        fit = keras_fit(options.keras_fit, options.epochs, options.keras_steps_per_execution)
        print(json.dumps(fit))
        return
    check_preset()
    if options.keras_steps_per_execution > 1 and "torch" in options.backends:
        # Keras 3.15: "`steps_per_execution` must be 1 with the PyTorch backend"
        print("Keras on torch takes one step per execution only: measuring JAX alone")
        options.backends = [backend for backend in options.backends if backend != "torch"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root, source = prepare_mnist(work, options.real, options.shared)
        print(f"{source}, {options.epochs} epochs, the book's dense net", flush=True)
        sides = [f"keras-{backend}" for backend in options.backends] + ["pipeline"]
        seconds: dict[str, list[float]] = {side: [] for side in sides}
        for repeat in range(1, options.repeats + 1):
            for side in sides:
                if side == "pipeline":
                    result = pipeline_side(root, options.epochs, work, options.steps_per_call)
                else:
                    result = keras_side(
                        root,
                        side.removeprefix("keras-"),
                        options.epochs,
                        options.keras_steps_per_execution,
                    )
                seconds[side].append(result["seconds"])
                print(f"  repeat {repeat}: {side:12s} fit {result['seconds']:7.2f} s, "
                      f"val acc {result['val_acc']:.4f}", flush=True)  # fmt: skip
        ours = statistics.median(seconds["pipeline"])
        command = f"experiment={EXPERIMENT} data.root=DIR trainer.max_epochs={options.epochs}"
        if options.steps_per_call != "auto":
            command += f" speed.steps_per_call={options.steps_per_call}"
        print(f"pipeline     median fit {ours:7.2f} s  (python -m pipelines.run {command})")
        for side in sides[:-1]:
            theirs = statistics.median(seconds[side])
            ratio = theirs / ours
            verdict = (
                f"our pipeline is {ratio:.2f}x faster"
                if ratio > 1
                else f"Keras is {1 / ratio:.2f}x faster"
            )
            print(f"{side:12s} median fit {theirs:7.2f} s  ratio keras / ours {ratio:.3f}: "
                  f"{verdict}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
