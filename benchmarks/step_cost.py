"""Framework cost per optimizer step, on a network so small that almost nothing else costs.

The same tiny MLP (8 hidden units) on scikit-learn's digits, batches of 4, one thread, no
validation, in one process, measured in CPU time (steadier than wall time on a shared
machine) and divided by the optimizer steps taken:

- ``hand loop``: zero_grad / forward / backward / step over the same batches;
- ``lightning automatic``: Lightning's automatic optimization (what a template gets: a
  plain ``Trainer``);
- ``pipeline``: the engine's strategy (``pipelines.speed.fast_steps``, as ``build_trainer`` sets
  it), one step per Lightning call;
- ``pipeline, steps_per_call=N``: N steps per Lightning call (``speed.steps_per_call``).

The differences to the hand loop are what each adds per step; on a real model they are
the same absolute cost spread over a longer step.

    python benchmarks/step_cost.py [--repeats 5] [--steps-per-call 8]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable


def _setup() -> None:
    import torch

    from pipelines.training.trainer import plain_cuda_check_without_gpu, quiet_lightning

    torch.set_num_threads(1)
    plain_cuda_check_without_gpu()
    quiet_lightning()


def _data_and_model():
    from plugins.data.vision import DigitsDataModule
    from plugins.models.dense import MLP

    data = DigitsDataModule(batch_size=4)
    data.setup()
    return data, MLP(input_shape=(1, 8, 8), num_classes=10, hidden_units=[8])


def hand_loop(epochs: int) -> float:
    """CPU microseconds per step of a plain loop over the pipeline's own batches."""
    import torch
    from torch.nn import functional as F

    data, model = _data_and_model()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3)
    steps = 0
    started = time.process_time()
    for _ in range(epochs):
        for inputs, targets in data.train_dataloader():
            outputs = model(inputs)
            loss = F.cross_entropy(outputs, targets)
            model.accumulate(
                "train",
                {"loss": loss, "acc": (outputs.argmax(1) == targets).float().mean()},
                len(targets),
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
        model._epoch_sums.clear()
    return (time.process_time() - started) / steps * 1e6


def lightning_fit(epochs: int, automatic: bool = False, steps_per_call: int = 1) -> float:
    """CPU microseconds per optimizer step of ``trainer.fit`` on the same model and data."""
    from training_only import training_only_trainer

    from pipelines.speed.fast_steps import FastSteps
    from pipelines.speed.settings import SpeedSettings, apply_speed_settings

    data, model = _data_and_model()
    engine = {} if automatic else {"strategy": FastSteps()}
    trainer = training_only_trainer(max_epochs=epochs, accelerator="cpu", **engine)
    if steps_per_call > 1:
        apply_speed_settings(SpeedSettings(steps_per_call=steps_per_call), model, data, trainer)
    started = time.process_time()
    trainer.fit(model, datamodule=data)
    return (time.process_time() - started) / trainer.global_step * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps-per-call", type=int, default=8)
    options = parser.parse_args()
    _setup()
    n = options.steps_per_call
    variants: dict[str, Callable[[], float]] = {
        "hand loop": lambda: hand_loop(options.epochs),
        "lightning automatic": lambda: lightning_fit(options.epochs, automatic=True),
        "pipeline": lambda: lightning_fit(options.epochs),
        f"pipeline, steps_per_call={n}": lambda: lightning_fit(options.epochs, steps_per_call=n),
    }
    timings: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(options.repeats):  # interleaved, so slow spells hit every variant
        for name, measure in variants.items():
            timings[name].append(measure())
    hand = statistics.median(timings["hand loop"])
    for name, values in timings.items():
        median = statistics.median(values)
        print(f"{name:30s} {median:7.0f} us/step  (+{median - hand:5.0f} over the hand loop)")


if __name__ == "__main__":
    main()
