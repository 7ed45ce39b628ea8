"""The ``fit`` stage: train the model, keep the best checkpoint, log it to the run."""

from __future__ import annotations

from typing import Literal

from pipelines.context import RunContext
from pipelines.trainer import build_trainer


class Fit:
    """Trains ``ctx.model`` on ``ctx.datamodule``; the best epoch by ``monitor`` is kept."""

    def __init__(self, monitor: str = "val/loss", mode: Literal["min", "max"] = "min") -> None:
        self.monitor = monitor
        self.mode = mode

    def run(self, ctx: RunContext) -> None:
        model = ctx.require("model", "fit", "prepare")
        datamodule = ctx.require("datamodule", "fit", "prepare")
        trainer, checkpoint = build_trainer(ctx, monitor=self.monitor, mode=self.mode)
        try:
            trainer.fit(model, datamodule=datamodule)
        finally:
            # Whatever happened, what was saved on disk goes into the tracked run too.
            best = checkpoint.best_model_path
            if best:
                ctx.artifacts["best_checkpoint"] = best
                ctx.tracker.log_artifact(best, "checkpoints")
        if checkpoint.best_model_score is not None:
            ctx.tracker.log_metrics(
                {f"best/{self.monitor.replace('/', '_')}": float(checkpoint.best_model_score)},
                step=trainer.global_step,
            )
