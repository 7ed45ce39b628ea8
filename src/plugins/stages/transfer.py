"""Transfer-learning stages (book ch. 5): feature extraction, then fine-tuning.

Both are the ``fit`` stage with a step before training; their metrics carry a prefix
(``feature_extraction/val/acc``, ``fine_tuning/val/acc``) so each is visible on its own.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from pipelines.api import Epochs, LearningRate, PipelineError, RunContext
from plugins.stages.fit import Fit


def _require_base(model: Any, stage: str) -> None:
    if not (hasattr(model, "freeze_base") and hasattr(model, "unfreeze_top")):
        raise PipelineError(
            f"The '{stage}' stage needs a model with a pretrained base to freeze and unfreeze "
            f"(model=transfer); '{type(model).__name__}' has none. Use pipeline=classify for it."
        )


class FeatureExtraction(Fit):
    """Train only the new head on top of the frozen base."""

    stage_name = "feature_extraction"

    def __init__(
        self,
        monitor: str = "val/loss",
        mode: Literal["min", "max"] = "min",
        max_epochs: Epochs | None = None,
        metric_prefix: str = "feature_extraction/",
    ) -> None:
        super().__init__(monitor, mode, max_epochs, metric_prefix)

    def check(self, ctx: RunContext) -> None:
        """Right after ``prepare``: the model has a pretrained base to freeze."""
        _require_base(ctx.model, self.stage_name)

    def before_fit(self, ctx: RunContext, model: Any) -> None:
        _require_base(model, self.stage_name)
        model.freeze_base()


class FineTune(Fit):
    """Unfreeze the top ``unfreeze_blocks`` of the base and train on at a lower rate.

    Starts from the best weights of the previous training stage, as the book does, with the
    learning rate multiplied by ``lr_factor``: large updates would wreck the pretrained
    features the head was just fitted to.
    """

    stage_name = "fine_tuning"

    def __init__(
        self,
        unfreeze_blocks: int = 2,
        lr_factor: LearningRate = 0.1,
        monitor: str = "val/loss",
        mode: Literal["min", "max"] = "min",
        max_epochs: Epochs | None = None,
        metric_prefix: str = "fine_tuning/",
    ) -> None:
        super().__init__(monitor, mode, max_epochs, metric_prefix)
        self.unfreeze_blocks = unfreeze_blocks
        self.lr_factor = lr_factor

    def check(self, ctx: RunContext) -> None:
        """Right after ``prepare``: the model has a pretrained base to unfreeze (in a
        pipeline without ``feature_extraction`` before it, nothing else would say so
        before a training stage ran)."""
        _require_base(ctx.model, self.stage_name)

    def before_fit(self, ctx: RunContext, model: Any) -> None:
        _require_base(model, self.stage_name)
        best = ctx.artifacts.get("best_checkpoint")
        if best:
            state = torch.load(best, map_location="cpu", weights_only=True)
            model.load_state_dict(state["state_dict"])
        unfrozen = model.unfreeze_top(self.unfreeze_blocks)
        model.lr = model.lr * self.lr_factor
        ctx.tracker.set_tags({"fine_tuning.unfrozen_blocks": ", ".join(unfrozen)})
