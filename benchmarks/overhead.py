"""Framework overhead: the pipeline's fit stage vs a hand-written PyTorch loop.

Both train the book's MNIST networks (the dense net of ch. 2, the convnet of ch. 5) on the
same tensors -- by default random images in MNIST's idx format at the book's size (60,000
training images: timing does not depend on the pixels, and fixed costs weigh as they do for
a user), with ``--real`` the real MNIST images of ../shared split 8,000 / 2,000 as in
``real_mnist.py`` -- with the same model class, optimizer, batch size and epochs, and both
evaluate the validation split after every epoch and keep per-epoch loss and accuracy, as
Keras' ``fit`` does. The loop is written as well as a person would write it: batches by
index from in-memory tensors, metrics summed on detached tensors (no per-step ``.item()``).

The pipeline runs exactly what ``python -m pipelines.run experiment=book_mnist_dense
data.root=DIR`` runs (Hydra's composed config, ``run_pipeline``, MLflow tracking into a
store in a temporary folder); its time is the fit stage (``time/fit_seconds`` in its run:
Trainer set-up, training, validation, checkpoints, MLflow logging). Process start-up is
``startup.py``'s business.

Both sides run in this one process after one untimed warm-up round, in counterbalanced
blocks: hand loop, pipeline, pipeline, hand loop (ABBA). This shared machine's speed drifts
by +-30% within minutes, and mostly one way under sustained load (a plain training loop run
7 times in a row took 1.8 s, then 2.3 s, then 4.7 s of CPU): whichever side always ran
second was always the slower-looking one. A block's ratio is its two pipeline runs over its
two hand loops, which cancels a drift that is linear over the block. Printed: each block,
and per variant the median of the blocks' ratios, in wall time (what a user waits) and in
CPU time (the work both sides do, summed over threads; it leaves out the time the virtual
machine was not running us, so it is the steadier of the two here: the framework's overhead
is CPU work).

``--marginal`` measures what the book's readers pay per epoch, fixed costs aside: the
marginal time of ``--epochs`` more epochs (after ``--base-epochs``, default 1) of each side,
the pipeline run as ``python -m pipelines.run experiment=... tracking=none`` runs it
(stages prepare and fit, timed whole: what both lengths share cancels), in blocks of the
same ABBA order over sides and lengths (hand short, hand long, pipeline short, pipeline
long, pipeline long, pipeline short, hand long, hand short: every kind of fit centred on the
block's middle). A block's ratio is the pipeline's marginal time over the hand loop's.

    python benchmarks/overhead.py [--models mlp convnet] [--epochs 5] [--repeats 7] [--real]
                                  [--steps-per-call auto 1 8] [--threads 1]
    python benchmarks/overhead.py --marginal --models mlp [--epochs 5] [--base-epochs 1]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from cli import run
from real_mnist import SHARED, make_split

#: the book's settings, as conf/experiment/book_mnist_{dense,convnet}.yaml
EXPERIMENTS = {"mlp": "book_mnist_dense", "convnet": "book_mnist_convnet"}
#: the presets train on every image, as the book; the timed runs validate every epoch, as
#: the hand loop does
VALIDATED = "data.val_fraction=0.1"


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


def hand_loop(root: Path, model_name: str, epochs: int) -> tuple[float, float]:
    """Wall and CPU seconds of a plain PyTorch loop: shuffled index batches, per-epoch
    validation."""
    import torch
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from torch.nn import functional as F

    from plugins.data.mnist import MNISTDataModule
    from plugins.models import convnet, dense

    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base=None):
        cfg = compose("config", overrides=[f"experiment={EXPERIMENTS[model_name]}"])
    settings = OmegaConf.to_container(cfg.model, resolve=True)  # the preset's, composed
    settings.pop("name")
    batch_size = cfg.data.batch_size
    data = MNISTDataModule(root=str(root), batch_size=batch_size, seed=42)
    data.setup()
    (x_train, y_train), (x_val, y_val) = data.splits["train"], data.splits["val"]
    torch.manual_seed(42)
    factory = dense.MLP if model_name == "mlp" else convnet.ConvNet
    model = factory(input_shape=tuple(x_train.shape[1:]), num_classes=10, **settings)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=settings["lr"])
    generator = torch.Generator().manual_seed(42)

    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        loss_sum, correct = torch.zeros(()), torch.zeros(())
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            inputs, targets = x_train[index], y_train[index]
            outputs = model(inputs)
            loss = F.cross_entropy(outputs, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(index)
            correct += (outputs.detach().argmax(dim=1) == targets).sum()
        model.eval()
        with torch.no_grad():
            val_loss, val_correct = torch.zeros(()), torch.zeros(())
            for start in range(0, len(x_val), batch_size):
                inputs = x_val[start : start + batch_size]
                targets = y_val[start : start + batch_size]
                outputs = model(inputs)
                val_loss += F.cross_entropy(outputs, targets, reduction="sum")
                val_correct += (outputs.argmax(dim=1) == targets).sum()
        history = {  # what Keras' fit keeps per epoch
            "loss": float(loss_sum) / len(order),
            "acc": float(correct) / len(order),
            "val_loss": float(val_loss) / len(x_val),
            "val_acc": float(val_correct) / len(x_val),
        }
    assert all(value == value for value in history.values()), history  # it trained: no NaN
    return time.perf_counter() - started, time.process_time() - cpu_started


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
        VALIDATED,
        "tracking.experiment=benchmarks",
        *extra,
    ]
    result = run(args, cwd)
    client = MlflowClient(f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}")
    return client.get_run(result.run_id).data.metrics


def pipeline_fit_seconds(
    root: Path, experiment: str, epochs: int, extra: list[str]
) -> tuple[float, float]:
    """Run a book preset in this process as ``python -m pipelines.run`` would (its composed
    config, ``run_pipeline``, MLflow into ./mlruns); the fit stage's recorded wall and CPU
    seconds."""
    from hydra import compose, initialize_config_dir
    from mlflow import MlflowClient

    from pipelines.runner import run_pipeline
    from pipelines.tracking.store import TrackingSettings

    overrides = [
        f"experiment={experiment}",
        f"data.root={root}",
        f"trainer.max_epochs={epochs}",
        VALIDATED,
        "tracking.experiment=benchmarks",
        "pipeline.stages=[prepare,fit]",  # the timed part; test and report are not
        *extra,
    ]
    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base=None):
        cfg = compose("config", overrides=overrides)
    output = Path(tempfile.mkdtemp(prefix="overhead-", dir="."))
    with contextlib.redirect_stdout(io.StringIO()):  # the run summary
        run_pipeline(cfg, output_dir=output)
    client = MlflowClient(TrackingSettings(experiment="benchmarks").resolved_uri())
    experiment_id = client.get_experiment_by_name("benchmarks").experiment_id
    (latest,) = client.search_runs([experiment_id], order_by=["start_time DESC"], max_results=1)
    metrics = latest.data.metrics
    return metrics["time/fit_seconds"], metrics["time/fit_cpu_seconds"]


def pipeline_run_seconds(
    root: Path, experiment: str, epochs: int, extra: list[str]
) -> tuple[float, float]:
    """Wall and CPU seconds of a whole ``tracking=none`` run of a book preset in this process
    (stages prepare and fit; Hydra's composition untimed), as ``python -m pipelines.run``
    runs it."""
    from hydra import compose, initialize_config_dir

    from pipelines.runner import run_pipeline

    overrides = [
        f"experiment={experiment}",
        f"data.root={root}",
        f"trainer.max_epochs={epochs}",
        VALIDATED,
        "tracking=none",
        "pipeline.stages=[prepare,fit]",
        *extra,
    ]
    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base=None):
        cfg = compose("config", overrides=overrides)
    output = Path(tempfile.mkdtemp(prefix="overhead-", dir="."))
    started, cpu_started = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):  # the run summary
        run_pipeline(cfg, output_dir=output)
    return time.perf_counter() - started, time.process_time() - cpu_started


def marginal_blocks(options: argparse.Namespace, root: Path, model_name: str) -> None:
    """The issue's figure: the marginal time of ``options.epochs`` more epochs, pipeline
    (``tracking=none``) over hand loop, per ABBA block over sides and lengths."""
    experiment = EXPERIMENTS[model_name]
    short, long = options.base_epochs, options.base_epochs + options.epochs
    extra = [f"speed.steps_per_call={options.steps_per_call[0]}"]
    hand_loop(root, model_name, 1)  # warm-up round: first-call costs of either side
    pipeline_run_seconds(root, experiment, 1, extra)
    ratios: dict[str, list[float]] = {"wall": [], "cpu": []}
    for _ in range(options.repeats):
        order = [("hand", short), ("hand", long), ("pipeline", short), ("pipeline", long)]
        times: dict[tuple[str, int], list[tuple[float, float]]] = {key: [] for key in order}
        for side, epochs in [*order, *reversed(order)]:
            times[side, epochs].append(
                hand_loop(root, model_name, epochs)
                if side == "hand"
                else pipeline_run_seconds(root, experiment, epochs, extra)
            )
        marginal = {  # (wall, CPU): the mean long fit minus the mean short one
            side: [
                statistics.mean(t[i] for t in times[side, long])
                - statistics.mean(t[i] for t in times[side, short])
                for i in (0, 1)
            ]
            for side in ("hand", "pipeline")
        }
        for i, clock in enumerate(("wall", "cpu")):
            ratios[clock].append(marginal["pipeline"][i] / marginal["hand"][i])
        print(f"  {model_name}: {options.epochs} more epochs: hand loop "
              f"{marginal['hand'][0]:.2f} s (CPU {marginal['hand'][1]:.2f} s), pipeline "
              f"{marginal['pipeline'][0]:.2f} s (CPU {marginal['pipeline'][1]:.2f} s): "
              f"{ratios['wall'][-1]:.3f}x wall, {ratios['cpu'][-1]:.3f}x CPU; pipeline runs "
              f"{', '.join(f'{t[0]:.2f}' for key in order[2:] for t in times[key])} s",
              flush=True)  # fmt: skip
    wall, cpu = ratios["wall"], ratios["cpu"]
    print(f"{model_name:8s} marginal {options.epochs} epochs (after {short}): median of "
          f"{options.repeats} blocks' ratios {statistics.median(wall):.3f} wall (min "
          f"{min(wall):.3f}, max {max(wall):.3f}), {statistics.median(cpu):.3f} CPU (min "
          f"{min(cpu):.3f}, max {max(cpu):.3f})  (python -m pipelines.run experiment="
          f"{experiment} data.root=DIR tracking=none {extra[0]})", flush=True)  # fmt: skip


def add_mnist_options(parser: argparse.ArgumentParser, repeats: int) -> None:
    """The options the MNIST benchmarks share: epochs, repeats, and which images."""
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--real", action="store_true", help="the real images of ../shared")
    parser.add_argument(
        "--mnist", type=Path, help="a folder of MNIST idx files to use instead (made once)"
    )


@contextlib.contextmanager
def mnist_workdir(options: argparse.Namespace) -> Iterator[Path]:
    """Quiet Lightning as the pipeline does, put the MNIST files of ``options`` in a
    temporary working folder, work in it; yields where the files are."""
    import logging

    from pipelines.training.trainer import plain_cuda_check_without_gpu, quiet_lightning

    quiet_lightning()
    plain_cuda_check_without_gpu()  # as the pipeline does: both sides alike from the start
    logging.getLogger("pipelines").setLevel(logging.WARNING)
    started_in = Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if getattr(options, "mnist", None):  # files made once, for runs in several processes
            root, source = options.mnist.resolve(), f"the MNIST files in {options.mnist}"
        else:
            root, source = prepare_mnist(work, options.real, options.shared)
        print(f"{source}, {options.epochs} epochs", flush=True)
        os.chdir(work)
        try:
            yield root
        finally:
            os.chdir(started_in)


def prepare_mnist(work: Path, real: bool, shared: Path) -> tuple[Path, str]:
    """MNIST idx files in ``work/mnist`` (random at the book's size, or the real ones)."""
    (work / "mnist").mkdir()
    if real:
        return make_split(shared, work / "mnist"), "real MNIST (../shared): 7,200 train / 800 val"
    return random_mnist(work / "mnist"), "random MNIST-format images: 54,000 train / 6,000 val"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(EXPERIMENTS), choices=EXPERIMENTS)
    add_mnist_options(parser, repeats=7)
    parser.add_argument(
        "--steps-per-call",
        nargs="+",
        default=["auto"],
        help="pipeline variants: speed.steps_per_call values, each timed in every repeat",
    )
    parser.add_argument(
        "--threads", type=int, help="torch threads (default: torch's own choice, all cores)"
    )
    parser.add_argument(
        "--marginal",
        action="store_true",
        help="the marginal time of --epochs more epochs, pipeline (tracking=none) vs hand loop",
    )
    parser.add_argument("--base-epochs", type=int, default=1, help="with --marginal")
    options = parser.parse_args()

    import torch

    if options.threads:
        torch.set_num_threads(options.threads)

    print(f"{torch.get_num_threads()} torch threads", flush=True)
    with mnist_workdir(options) as root:
        for model_name in options.models:
            if options.marginal:
                marginal_blocks(options, root, model_name)
                continue
            experiment = EXPERIMENTS[model_name]
            variants = {
                steps: [f"speed.steps_per_call={steps}"] for steps in options.steps_per_call
            }
            hand_loop(root, model_name, 1)  # warm-up round: first-call costs of either side
            pipeline_fit_seconds(root, experiment, 1, variants[options.steps_per_call[0]])
            wall: dict[str, list[float]] = {steps: [] for steps in variants}
            cpu: dict[str, list[float]] = {steps: [] for steps in variants}
            for _ in range(options.repeats):
                # ABBA: hand, each variant, each variant in reverse order, hand
                hand = [hand_loop(root, model_name, options.epochs)]
                fits: dict[str, list[tuple[float, float]]] = {steps: [] for steps in variants}
                for steps in [*variants, *reversed(variants)]:
                    fits[steps].append(
                        pipeline_fit_seconds(root, experiment, options.epochs, variants[steps])
                    )
                hand.append(hand_loop(root, model_name, options.epochs))
                loop_wall, loop_cpu = (sum(times) for times in zip(*hand, strict=True))
                line = (f"  {model_name}: hand loop {hand[0][0]:.2f} + {hand[1][0]:.2f} s "
                        f"(CPU {loop_cpu:.2f} s)")  # fmt: skip
                for steps, times in fits.items():
                    fit_wall, fit_cpu = (sum(values) for values in zip(*times, strict=True))
                    wall[steps].append(fit_wall / loop_wall)
                    cpu[steps].append(fit_cpu / loop_cpu)
                    line += (f", pipeline (steps_per_call={steps}) {times[0][0]:.2f} + "
                             f"{times[1][0]:.2f} s (CPU {fit_cpu:.2f} s): "
                             f"{fit_wall / loop_wall:.3f}x wall, "
                             f"{fit_cpu / loop_cpu:.3f}x CPU")  # fmt: skip
                print(line, flush=True)
            for steps in variants:
                option = "" if steps == "auto" else f" speed.steps_per_call={steps}"
                print(f"{model_name:8s} steps_per_call={steps}: median of {options.repeats} "
                      f"ABBA blocks' ratios {statistics.median(wall[steps]):.3f} wall (min "
                      f"{min(wall[steps]):.3f}, max {max(wall[steps]):.3f}), "
                      f"{statistics.median(cpu[steps]):.3f} CPU (min {min(cpu[steps]):.3f}, "
                      f"max {max(cpu[steps]):.3f})  (python -m pipelines.run "
                      f"experiment={experiment} data.root=DIR{option})", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
