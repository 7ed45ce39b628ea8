"""What every built-in classifier shares: loss, accuracy, metric names, optimizers.

Metric names are a contract with the engine and the MLflow UI: ``train/loss``,
``val/loss``, ``val/acc``, ``test/loss``, ``test/acc``, logged once per epoch (never per
step: a tracking write per step costs more than a small model's step).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F

from pipelines.errors import ConfigValueError, did_you_mean

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "rmsprop": torch.optim.RMSprop,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}


class Classifier(L.LightningModule):
    """A LightningModule around ``self.net`` that maps inputs to class logits."""

    net: nn.Module

    def __init__(
        self,
        optimizer: str = "rmsprop",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        l1: float = 0.0,
        l2: float = 0.0,
    ) -> None:
        """``l1``/``l2`` add the book's weight penalties (``l1 * sum|w|``, ``l2 * sum w^2``
        over weight matrices and kernels, not biases) to the training loss; ``weight_decay``
        is the optimizer's own decay."""
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ConfigValueError(
                f"Unknown optimizer '{optimizer}' in 'model.optimizer'."
                f"{did_you_mean(optimizer, OPTIMIZERS)} Known: {', '.join(sorted(OPTIMIZERS))}."
            )
        self.optimizer_name = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.l1 = l1
        self.l2 = l2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        inputs, targets = batch
        logits = self(inputs)
        loss = F.cross_entropy(logits, targets)
        accuracy = (logits.argmax(dim=1) == targets).float().mean()
        size = targets.shape[0]
        self.log(
            f"{stage}/loss",
            loss,
            on_step=False,
            on_epoch=True,
            batch_size=size,
            prog_bar=stage != "train",
        )
        self.log(
            f"{stage}/acc",
            accuracy,
            on_step=False,
            on_epoch=True,
            batch_size=size,
            prog_bar=stage != "train",
        )
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self._evaluate(batch, "train")
        if self.l1 or self.l2:
            loss = loss + self.weight_penalty()
        return loss

    def weight_penalty(self) -> torch.Tensor:
        """The L1/L2 penalty on trainable weights (tensors of 2+ dimensions)."""
        weights = [p for p in self.parameters() if p.requires_grad and p.ndim > 1]
        penalty = torch.zeros((), device=weights[0].device if weights else None)
        for weight in weights:
            if self.l1:
                penalty = penalty + self.l1 * weight.abs().sum()
            if self.l2:
                penalty = penalty + self.l2 * weight.pow(2).sum()
        return penalty

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(inputs).softmax(dim=1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        trainable = [p for p in self.parameters() if p.requires_grad]
        return OPTIMIZERS[self.optimizer_name](
            trainable, lr=self.lr, weight_decay=self.weight_decay
        )
