"""The ``test`` stage: evaluate the best checkpoint on the test split."""

from __future__ import annotations

import torch

from pipelines.context import RunContext
from pipelines.trainer import build_trainer


class Test:
    """Tests ``ctx.model`` with the weights of the best checkpoint the ``fit`` stage kept.

    ``metric_prefix`` tells apart tests run at several points of one pipeline (e.g. after
    feature extraction and again after fine-tuning).
    """

    def __init__(self, metric_prefix: str = "") -> None:
        self.metric_prefix = metric_prefix

    def run(self, ctx: RunContext) -> None:
        model = ctx.require("model", "test", "prepare")
        datamodule = ctx.require("datamodule", "test", "prepare")
        trainer, _ = build_trainer(ctx, checkpoint_dir=None, metric_prefix=self.metric_prefix)
        best = ctx.artifacts.get("best_checkpoint")
        if best:
            # weights only: a checkpoint file cannot run code when it is loaded
            state = torch.load(best, map_location="cpu", weights_only=True)
            model.load_state_dict(state["state_dict"])
        results = trainer.test(model, datamodule=datamodule, verbose=False)
        for metrics in results:
            ctx.metrics.update(
                {f"{self.metric_prefix}{key}": float(value) for key, value in metrics.items()}
            )
