"""GPU path: seconds for the book's MNIST convnet to reach a test accuracy.

Variants, each on the same GPU, in this process, one after the other (the same data, model
class, optimizer, batch size and seed; the clock starts at ``trainer.fit``):

- ``plain``: what a hand-made Lightning template does: a ``DataLoader`` over a
  ``TensorDataset`` (``pin_memory``, 4 workers), fp32.
- ``ours``: the pipeline's path, ``trainer=gpu``: its precision (conf/trainer/gpu.yaml:
  float32 with TF32 tensor cores), the splits resident on the GPU and sliced by index,
  channels_last, 32 optimizer steps per Lightning step (the data module's own loader after
  ``apply_speed_settings``), no cuDNN autotuning.
- ``ours+compile``: the same plus ``speed.compile=true``.

``--precision``, ``--cudnn-benchmark`` and ``--channels-last`` change one setting of every
variant, to see what each costs (``auto``: as above).

After every training epoch a callback measures test accuracy (on the GPU, ~10 ms) and stops
the run once it reaches ``--target``. Besides the time to that accuracy, each variant's
first epoch (warm-up: workers, cuDNN, compilation) and its later epochs are timed apart,
training only. Only the 10,000 real MNIST test images are available offline
(../shared/data/mnist): they are split 8,000 train / 2,000 test as in ``real_mnist.py``
(the data module keeps 800 of the 8,000 for validation: 7,200 train, in 113 batches of 64),
where the convnet reaches ~0.987, hence the default target of 0.985; with the full MNIST
files (``--root DIR``) use ``--target 0.99``.

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
import yaml
from real_mnist import SHARED, make_split
from training_only import training_only_trainer

VARIANTS = ("plain", "ours", "ours+compile")
#: trainer=gpu's precision, as the preset sets it
PRESET_PRECISION = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "conf" / "trainer" / "gpu.yaml").read_text()
)["precision"]


class TimeToAccuracy(L.Callback):
    """Test accuracy after every training epoch; stops the run at ``target``."""

    def __init__(
        self, inputs: torch.Tensor, targets: torch.Tensor, target: float, bf16: bool
    ) -> None:
        self.inputs, self.targets, self.target, self.bf16 = inputs, targets, target, bf16
        self.started = 0.0
        self.reached: tuple[int, float, float] | None = None  # epoch, seconds, accuracy
        self.history: list[float] = []
        self.epoch_started = 0.0
        self.epoch_seconds: list[float] = []  # training only, without the evaluation

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.started = time.perf_counter()

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.epoch_started = time.perf_counter()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        self.epoch_seconds.append(time.perf_counter() - self.epoch_started)
        accuracy = evaluate(pl_module, self.inputs, self.targets, self.bf16)
        self.history.append(accuracy)
        if self.reached is None and accuracy >= self.target:
            seconds = time.perf_counter() - self.started
            self.reached = (trainer.current_epoch + 1, seconds, accuracy)
            trainer.should_stop = True


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor, bf16: bool
) -> float:
    """Test accuracy in the precision the variant trains in (bf16 autocast or fp32)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(inputs), 1000):
        batch = inputs[start : start + 1000].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(batch)
        correct += int((logits.argmax(1).cpu() == targets[start : start + 1000]).sum())
    model.train(was_training)
    return correct / len(inputs)


def run_variant(variant: str, root: Path, options: argparse.Namespace) -> TimeToAccuracy:
    from pipelines.speed.settings import SpeedSettings, apply_speed_settings
    from plugins.data.mnist import MNISTDataModule
    from plugins.models.convnet import ConvNet

    L.seed_everything(options.seed, verbose=False)
    torch.set_float32_matmul_precision("highest")  # torch's default; ours sets TF32 itself
    data = MNISTDataModule(root=str(root), batch_size=options.batch_size, seed=options.seed)
    data.setup()
    if options.limit:
        limit = options.limit
        data.splits = {name: (x[:limit], y[:limit]) for name, (x, y) in data.splits.items()}
    test_x, test_y = data.splits["test"]
    model = ConvNet(input_shape=(1, 28, 28), num_classes=10, optimizer="rmsprop", lr=1e-3)
    gpu = options.device == "cuda"
    preset_bf16 = variant != "plain" and PRESET_PRECISION == "bf16-mixed"
    bf16 = gpu and {"auto": preset_bf16, "bf16": True, "32": False}[options.precision]
    benchmark = gpu and {"auto": False, "on": True, "off": False}[options.cudnn_benchmark]
    clock = TimeToAccuracy(test_x, test_y, options.target, bf16)
    trainer = training_only_trainer(
        accelerator=options.device,
        devices=1,
        precision="bf16-mixed" if bf16 else "32-true",
        max_epochs=options.max_epochs,
        benchmark=benchmark,
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
        channels_last = {"auto": "auto", "on": True, "off": False}[options.channels_last]
        speed = SpeedSettings(compile=variant == "ours+compile", channels_last=channels_last)
        applied = apply_speed_settings(speed, model, data, trainer)
        print(f"{variant}: speed settings applied: {applied}", flush=True)
        loader = data.train_dataloader()  # the pipeline's own: on the GPU, fused steps
    trainer.fit(model, train_dataloaders=loader)
    return clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="MNIST idx files (default: ../shared split)")
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--target", type=float, default=0.985)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)  # the book's convnet
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--limit", type=int, default=0, help="samples per split (script check)")
    parser.add_argument("--seed", type=int, default=42)
    # what each of the GPU path's settings costs (auto: as trainer=gpu and a plain template)
    parser.add_argument("--precision", default="auto", choices=("auto", "32", "bf16"))
    parser.add_argument("--cudnn-benchmark", default="auto", choices=("auto", "on", "off"))
    parser.add_argument("--channels-last", default="auto", choices=("auto", "on", "off"))
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
            epochs = clock.epoch_seconds
            if len(epochs) >= 2:  # the first epoch holds warm-up (workers, cuDNN, compile)
                steady = sum(epochs[1:]) / (len(epochs) - 1)
                print(f"{variant:13s} first epoch {epochs[0]:.2f} s, then {steady:.3f} s per "
                      f"epoch (training only)", flush=True)  # fmt: skip
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
