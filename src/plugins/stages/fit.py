"""The ``fit`` stage: train the model, keep the best checkpoint, log it to the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pipelines.context import RunContext
from pipelines.run_loader import BEST_CHECKPOINT_TAG
from pipelines.trainer import build_trainer


class Fit:
    """Trains ``ctx.model`` on ``ctx.datamodule``; the best epoch by ``monitor`` is kept.

    ``max_epochs`` overrides ``trainer.max_epochs`` for this stage only; ``metric_prefix``
    keeps this stage's curves apart when a pipeline trains more than once.
    """

    #: the name used in messages and for this stage's checkpoint folder
    stage_name = "fit"

    def __init__(
        self,
        monitor: str = "val/loss",
        mode: Literal["min", "max"] = "min",
        max_epochs: int | None = None,
        metric_prefix: str = "",
    ) -> None:
        self.monitor = monitor
        self.mode = mode
        self.max_epochs = max_epochs
        self.metric_prefix = metric_prefix

    def before_fit(self, ctx: RunContext, model: Any) -> None:
        """Hook for stages that change the model before training (freeze, unfreeze, lr)."""

    def run(self, ctx: RunContext) -> None:
        model = ctx.require("model", self.stage_name, "prepare")
        datamodule = ctx.require("datamodule", self.stage_name, "prepare")
        self.before_fit(ctx, model)
        overrides = {"max_epochs": self.max_epochs} if self.max_epochs is not None else {}
        checkpoint_dir = (
            "checkpoints" if self.stage_name == "fit" else f"checkpoints/{self.stage_name}"
        )
        trainer, checkpoint = build_trainer(
            ctx,
            monitor=self.monitor,
            mode=self.mode,
            checkpoint_dir=checkpoint_dir,
            metric_prefix=self.metric_prefix,
            overrides=overrides,
        )
        try:
            trainer.fit(model, datamodule=datamodule)
        finally:
            # Whatever happened, what was saved on disk goes into the tracked run too.
            best = checkpoint.best_model_path if checkpoint else ""
            if best:
                ctx.artifacts["best_checkpoint"] = best
                ctx.tracker.log_artifact(best, checkpoint_dir)
                ctx.tracker.set_tags({BEST_CHECKPOINT_TAG: f"{checkpoint_dir}/{Path(best).name}"})
        if checkpoint and checkpoint.best_model_score is not None:
            name = f"{self.metric_prefix}best/{self.monitor.replace('/', '_')}"
            ctx.tracker.log_metrics(
                {name: float(checkpoint.best_model_score)}, step=trainer.global_step
            )
