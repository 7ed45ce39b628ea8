"""What the progress bar a person watches costs: fits with no bar, Lightning's rich bar, ours.

The bar only shows when a person runs the pipeline in a terminal, so this draws it on a
terminal that writes to /dev/null. The fit is a small net on the bundled digits at one
step per call (the most bar updates per second of computation, as with augmented data);
CPU seconds, one torch thread, the three variants interleaved in every repeat, in turns
forwards and backwards (this machine slows down under load: no side always runs last).

    python benchmarks/progress_bar.py [--repeats 5] [--epochs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any


def fit_cpu_seconds(bar: Any, epochs: int) -> float:
    """CPU seconds of a digits MLP fit with ``bar`` (None: no progress bar)."""
    import lightning as L

    from pipelines.speed.settings import SpeedSettings, apply_speed_settings
    from plugins.data.vision import DigitsDataModule
    from plugins.models.dense import MLP

    data = DigitsDataModule(batch_size=16)
    data.setup()
    model = MLP(input_shape=(1, 8, 8), num_classes=10, hidden_units=[32])
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        enable_progress_bar=bar is not None,
        callbacks=[bar] if bar is not None else [],
    )
    apply_speed_settings(SpeedSettings(steps_per_call=1), model, data, trainer)
    started = time.process_time()
    trainer.fit(model, datamodule=data)
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5)
    options = parser.parse_args()
    import torch
    from lightning.pytorch.callbacks import RichProgressBar

    from pipelines.training.progress import BatchProgressBar
    from pipelines.training.trainer import plain_cuda_check_without_gpu, quiet_lightning

    torch.set_num_threads(1)
    quiet_lightning()
    plain_cuda_check_without_gpu()
    with open(os.devnull, "w") as devnull:
        terminal = {"force_terminal": True, "file": devnull}
        variants = {
            "no bar": lambda: None,
            "Lightning's RichProgressBar": lambda: RichProgressBar(console_kwargs=terminal),
            "ours (BatchProgressBar)": lambda: BatchProgressBar(console_kwargs=terminal),
        }
        for make in variants.values():  # warm-up: first-call costs
            fit_cpu_seconds(make(), 1)
        seconds: dict[str, list[float]] = {name: [] for name in variants}
        for repeat in range(options.repeats):
            order = list(variants.items())
            for name, make in order if repeat % 2 == 0 else reversed(order):  # no side last
                seconds[name].append(fit_cpu_seconds(make(), options.epochs))
    baseline = seconds["no bar"]
    for name, values in seconds.items():
        ratio = statistics.median(v / b for v, b in zip(values, baseline, strict=True))
        print(f"  {name:30s} median {statistics.median(values):.2f} CPU s, "
              f"{ratio:.2f}x no bar", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
