"""Where a pipeline fit's time goes: the model's steps, gathering batches, and the framework.

``overhead.py`` compares whole fits with a hand-written loop, and on this shared machine
two identical fits a minute apart differ by up to 30%, which hides a few percent of
overhead. This measures inside one fit instead, where both parts see the same machine: the
time in the engine strategy's ``training_step``/``validation_step`` calls (the model's
forward passes, backward passes and optimizer steps: the computation a hand loop does too,
with the engine's few microseconds a step of wrapping around them), the time spent drawing
batches from the in-memory tensors (a hand loop gathers them too), and the rest, which is
the framework's: Trainer set-up, Lightning's loop, checkpoints, MLflow, the fit stage's own
work. The rest's share of the fit is the overhead a user pays on top of a hand-written
loop.

    python benchmarks/fit_breakdown.py [--models mlp convnet] [--real] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

from overhead import EXPERIMENTS, add_mnist_options, mnist_workdir, pipeline_fit_seconds


@contextlib.contextmanager
def step_and_batch_timers() -> Iterator[dict[str, float]]:
    """Seconds spent in the engine's steps and in drawing batches, while inside."""
    from pipelines.speed.fast_steps import FastSteps
    from pipelines.training.tensor_loader import TensorBatches

    spent = {"steps": 0.0, "batches": 0.0}

    def timed(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent["steps"] += time.perf_counter() - started

        return wrapper

    def timed_batches(self: TensorBatches) -> Iterator[Any]:
        batches = original_iter(self)
        while True:
            started = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                return
            finally:
                spent["batches"] += time.perf_counter() - started
            yield batch

    original_train, original_val = FastSteps.training_step, FastSteps.validation_step
    original_iter = TensorBatches.__iter__
    FastSteps.training_step = timed(original_train)  # type: ignore[method-assign]
    FastSteps.validation_step = timed(original_val)  # type: ignore[method-assign]
    TensorBatches.__iter__ = timed_batches  # type: ignore[method-assign]
    try:
        yield spent
    finally:
        FastSteps.training_step = original_train  # type: ignore[method-assign]
        FastSteps.validation_step = original_val  # type: ignore[method-assign]
        TensorBatches.__iter__ = original_iter  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(EXPERIMENTS), choices=EXPERIMENTS)
    add_mnist_options(parser, repeats=3)
    options = parser.parse_args()

    with mnist_workdir(options) as root:
        for model_name in options.models:
            experiment = EXPERIMENTS[model_name]
            pipeline_fit_seconds(root, experiment, 1, [])  # warm-up: first-call costs
            shares = []
            for _ in range(options.repeats):
                with step_and_batch_timers() as spent:
                    fit, _ = pipeline_fit_seconds(root, experiment, options.epochs, [])
                rest = fit - spent["steps"] - spent["batches"]
                shares.append(rest / fit)
                print(f"  {model_name}: fit {fit:.2f} s = steps {spent['steps']:.2f} s + "
                      f"batches {spent['batches']:.2f} s + framework {rest:.3f} s "
                      f"({100 * rest / fit:.1f}%)", flush=True)  # fmt: skip
            print(f"{model_name:8s} framework share of the fit: median "
                  f"{100 * statistics.median(shares):.1f}% of {options.repeats} fits "
                  f"(python -m pipelines.run experiment={experiment})", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
