"""GPU precision: seconds per training epoch of the book's 180x180 image nets, fp32 vs bf16.

Which precision ``trainer=gpu`` should train in: on the MNIST convnet (``gpu.py``) bf16
mixed precision was slower than float32, and that net is too small to load the GPU, so
this script times larger ones, the book's cats-vs-dogs models at 180x180 (2nd ed. ch. 8
and 9), through the pipeline's own GPU path: ``experiment=book_cats_dogs_augmented``'s
convnet (filters 32-256, valid padding, dropout 0.5) and ``model=mini_xception``, batches
of 32, the book's augmentation (flip, rotation 0.1, zoom 0.2) on the GPU, the splits
resident on the GPU and sliced by index, and the ``speed`` node's defaults as
``apply_speed_settings`` applies them (TF32, channels_last, which ``--channels-last``
overrides). docs/benchmarks.md (GPU) holds the results.

The images are random (2,000 to train, the book's count): timing does not depend on the
pixels, and no photo set has to travel to the GPU machine. Each setting trains
``--epochs`` epochs in this process, one after the other, the same seed each time; the
first epoch (cuDNN's kernel choice, allocator warm-up) is reported apart from the mean of
the later ones.

    python benchmarks/gpu_precision.py [--models convnet mini_xception] [--epochs 4]

Also runs on CPU (``--device cpu --images 64 --epochs 2 --size 96``), to check the script.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import lightning as L
import torch
from training_only import training_only_trainer

BOOK_AUGMENTATION = {"flip": "horizontal", "rotation": 0.1, "zoom": 0.2}
# experiment=book_cats_dogs_augmented's model node, and conf/model/mini_xception.yaml's
MODELS: dict[str, dict[str, Any]] = {
    "convnet": {"filters": [32, 64, 128, 256, 256], "padding": "valid", "dropout": 0.5},
    "mini_xception": {},
}
PRECISIONS = ("32-true", "bf16-mixed")


class EpochClock(L.Callback):
    """Wall seconds of each training epoch (the GPU synchronised at both ends)."""

    def __init__(self) -> None:
        self.started = 0.0
        self.seconds: list[float] = []

    def _sync(self, pl_module: Any) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._sync(pl_module)
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._sync(pl_module)
        self.seconds.append(time.perf_counter() - self.started)


def random_images(options: argparse.Namespace) -> Any:
    """The pipeline's in-memory image data module, filled with random photos-to-be."""
    from plugins.data.augment import AugmentSettings
    from plugins.data.vision import InMemoryImageData

    class RandomImages(InMemoryImageData):
        def setup(self, stage: str | None = None) -> None:
            generator = torch.Generator().manual_seed(options.seed)
            size = (3, options.size, options.size)
            counts = {"train": options.images, "val": options.images // 2}
            self.splits = {
                name: (
                    torch.rand((count, *size), generator=generator),
                    torch.randint(0, 2, (count,), generator=generator),
                )
                for name, count in counts.items()
            }
            self.classes = ["cats", "dogs"]

    augment = AugmentSettings(**BOOK_AUGMENTATION)
    data = RandomImages(batch_size=options.batch_size, seed=options.seed, augment=augment)
    data.setup()
    return data


def time_setting(model_name: str, precision: str, options: argparse.Namespace) -> list[float]:
    """Seconds of each training epoch of one model in one precision."""
    from pipelines.speed.settings import SpeedSettings, apply_speed_settings
    from plugins.models.convnet import ConvNet
    from plugins.models.xception import MiniXception

    L.seed_everything(options.seed, verbose=False)
    data = random_images(options)
    model_class = {"convnet": ConvNet, "mini_xception": MiniXception}[model_name]
    model = model_class(**data.model_kwargs(), **MODELS[model_name])
    clock = EpochClock()
    trainer = training_only_trainer(
        accelerator=options.device,
        devices=1,
        precision=precision if options.device == "cuda" else "32-true",
        max_epochs=options.epochs,
        benchmark=False,
        callbacks=[clock],
    )
    channels_last = {"auto": "auto", "on": True, "off": False}[options.channels_last]
    speed = SpeedSettings(channels_last=channels_last)
    applied = apply_speed_settings(speed, model, data, trainer)
    print(f"{model_name} {precision}: speed settings applied: {applied}", flush=True)
    trainer.fit(model, train_dataloaders=data.train_dataloader())
    return clock.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--images", type=int, default=2000, help="training images")
    parser.add_argument("--size", type=int, default=180, help="height and width")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--channels-last", default="auto", choices=("auto", "on", "off"))
    options = parser.parse_args()
    if options.device == "cuda":
        print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, cuDNN "
              f"{torch.backends.cudnn.version()}, TF32 convolutions "
              f"{torch.backends.cudnn.allow_tf32}", flush=True)  # fmt: skip
    steps = -(-options.images // options.batch_size)
    for model_name in options.models:
        later: dict[str, float] = {}
        for precision in options.precisions:
            seconds = time_setting(model_name, precision, options)
            later[precision] = sum(seconds[1:]) / max(1, len(seconds) - 1)
            print(f"{model_name:13s} {precision:10s} first epoch {seconds[0]:.2f} s, then "
                  f"{later[precision]:.3f} s per epoch ({steps} steps: "
                  f"{1000 * later[precision] / steps:.2f} ms a step)", flush=True)  # fmt: skip
        if len(later) == 2:
            ratio = later["32-true"] / later["bf16-mixed"]
            print(f"{model_name}: bf16-mixed {ratio:.2f}x the speed of fp32 (later epochs)")


if __name__ == "__main__":
    main()
