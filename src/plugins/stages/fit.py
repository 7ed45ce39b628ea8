"""The ``fit`` stage: train the model, keep the best checkpoint, log it to the run."""

from __future__ import annotations

from typing import Any, Literal

from pipelines.api import Epochs, RunContext, fit_model


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
        max_epochs: Epochs | None = None,
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
        fit_model(
            ctx,
            model,
            datamodule,
            monitor=self.monitor,
            mode=self.mode,
            max_epochs=self.max_epochs,
            metric_prefix=self.metric_prefix,
            checkpoint_dir=(
                "checkpoints" if self.stage_name == "fit" else f"checkpoints/{self.stage_name}"
            ),
        )
