"""GPU path: seconds for the book's MNIST convnet to reach a test accuracy.

Variants, each on the same GPU, in this process, one after the other (the same data, model
class, optimizer, batch size and seed; the clock starts at ``trainer.fit``):

- ``plain``: what a hand-made Lightning template does: a ``DataLoader`` over a
  ``TensorDataset`` (``pin_memory``, 4 workers), fp32.
- ``ours``: the pipeline's path, ``trainer=gpu``: bf16 mixed precision, the splits resident
  on the GPU and sliced by index (``pipelines.tensor_loader``), channels_last.
- ``ours+compile``: the same plus ``speed.compile=true``.

After every training epoch a callback measures test accuracy (on the GPU, ~10 ms) and stops
the run once it reaches ``--target``. Only the 10,000 real MNIST test images are available
offline (../shared/data/mnist): they are split 8,000 train / 2,000 test as in
``real_mnist.py``, where the convnet reaches ~0.987, hence the default target of 0.985; with
the full MNIST files (``--root DIR``) use ``--target 0.99``.

    python benchmarks/gpu.py [--root DIR] [--target 0.985] [--variants plain ours ours+compile]

Also runs on CPU (``--device cpu --limit 1000 --target 0.5``), to check the script itself.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from real_mnist import SHARED, make_split

VARIANTS = ("plain", "ours", "ours+compile")


class TimeToAccuracy(L.Callback):
    """Test accuracy after every training epoch; stops the run at ``target``."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, target: float) -> None:
        self.inputs, self.targets, self.target = inputs, targets, target
        self.started = 0.0
        self.reached: tuple[int, float, float] | None = None  # epoch, seconds, accuracy
        self.history: list[float] = []

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        accuracy = evaluate(pl_module, self.inputs, self.targets)
        self.history.append(accuracy)
        if self.reached is None and accuracy >= self.target:
            seconds = time.perf_counter() - self.started
            self.reached = (trainer.current_epoch + 1, seconds, accuracy)
            trainer.should_stop = True


@torch.no_grad()
def evaluate(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(inputs), 1000):
        batch = inputs[start : start + 1000].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(batch)
        correct += int((logits.argmax(1).cpu() == targets[start : start + 1000]).sum())
    model.train(was_training)
    return correct / len(inputs)


def run_variant(variant: str, root: Path, options: argparse.Namespace) -> TimeToAccuracy:
    from pipelines.speed import SpeedSettings, apply_speed_settings
    from pipelines.tensor_loader import TensorBatches
    from plugins.data.mnist import MNISTDataModule
    from plugins.models.convnet import ConvNet

    L.seed_everything(options.seed, verbose=False)
    data = MNISTDataModule(root=str(root), batch_size=options.batch_size, seed=options.seed)
    data.setup()
    if options.limit:
        limit = options.limit
        data.splits = {name: (x[:limit], y[:limit]) for name, (x, y) in data.splits.items()}
    test_x, test_y = data.splits["test"]
    model = ConvNet(input_shape=(1, 28, 28), num_classes=10, optimizer="rmsprop", lr=1e-3)
    clock = TimeToAccuracy(test_x, test_y, options.target)
    gpu = options.device == "cuda"
    trainer = L.Trainer(
        accelerator=options.device,
        devices=1,
        precision="32-true" if variant == "plain" or not gpu else "bf16-mixed",
        max_epochs=options.max_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        benchmark=gpu and variant != "plain",
        callbacks=[clock],
    )
    if variant == "plain":
        train_x, train_y = data.splits["train"]
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(train_x, train_y),
            batch_size=options.batch_size,
            shuffle=True,
            num_workers=options.workers,
            pin_memory=gpu,
            persistent_workers=options.workers > 0,
        )
    else:
        speed = SpeedSettings(compile=variant == "ours+compile")
        apply_speed_settings(speed, model, data, trainer)
        train_x, train_y = data.splits["train"]
        loader = TensorBatches(train_x, train_y, batch_size=options.batch_size, shuffle=True)
    trainer.fit(model, train_dataloaders=loader)
    return clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="MNIST idx files (default: ../shared split)")
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--target", type=float, default=0.985)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--max-epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64)  # the book's convnet
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--limit", type=int, default=0, help="samples per split (script check)")
    parser.add_argument("--seed", type=int, default=42)
    options = parser.parse_args()
    if options.device == "cuda":
        print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = options.root
        if root is None:
            root = make_split(options.shared, Path(tmp))
        results = {}
        for variant in options.variants:
            clock = run_variant(variant, root, options)
            results[variant] = clock.reached
            history = " ".join(f"{acc:.4f}" for acc in clock.history)
            if clock.reached:
                epochs, seconds, accuracy = clock.reached
                print(f"{variant:13s} {seconds:7.2f} s to test acc {accuracy:.4f} "
                      f"(epoch {epochs}); per epoch: {history}", flush=True)  # fmt: skip
            else:
                print(f"{variant:13s} did not reach {options.target} in {options.max_epochs} "
                      f"epochs; per epoch: {history}", flush=True)  # fmt: skip
        plain = results.get("plain")
        for variant, reached in results.items():
            if plain and reached and variant != "plain":
                print(f"{variant}: {plain[1] / reached[1]:.2f}x faster than plain", flush=True)


if __name__ == "__main__":
    main()
