"""The ``test`` stage: evaluate the run's model (its best checkpoint) on the test split."""

from __future__ import annotations

from pipelines.api import RunContext, build_trainer, load_checkpoint


class Test:
    """Tests ``ctx.model`` with the weights of the best checkpoint the ``fit`` stage kept.

    Without validation data that is its final weights (``last.ckpt``): loaded from the
    file the run logged as its model, so the numbers recorded here are the ones
    ``evaluate`` reproduces from the run.

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
            state = load_checkpoint(best)
            model.load_state_dict(state["state_dict"])
        results = trainer.test(model, datamodule=datamodule, verbose=False)
        for metrics in results:
            ctx.metrics.update(
                {f"{self.metric_prefix}{key}": float(value) for key, value in metrics.items()}
            )
