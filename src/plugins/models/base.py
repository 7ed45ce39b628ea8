"""What every built-in supervised model shares: loss, metric, metric names, optimizers.

Metric names are a contract with the engine and the MLflow UI: ``train/loss``,
``val/loss``, ``val/acc``, ``test/loss``, ``test/acc`` for classifiers; ``val/mae`` and
``test/mae`` (in the data's own units) for regression. All are logged once per epoch (never
per step: a tracking write per step costs more than a small model's step), as means of the
epoch's batches weighted by batch size.
"""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F

from pipelines.api import (
    ConfigValueError,
    LearningRate,
    Penalty,
    TrainingDiverged,
)
from plugins.models.initialisation import Init, initialise
from plugins.models.optimizers import OPTIMIZERS, check_optimizer


def require_images(model: str, input_shape: tuple[int, ...]) -> None:
    """Image models need (channels, height, width) inputs: say so before any layer is built.

    ``data=imdb model=convnet`` otherwise ended in a conv2d traceback about a tensor size.
    """
    if len(tuple(input_shape)) != 3:
        raise ConfigValueError(
            f"model {model} works on images (channels, height, width), but the data gives "
            f"inputs of shape {tuple(input_shape)}. Pick an image dataset (data=digits, mnist, "
            "cifar10, image_folder, ...) or a model for this data: mlp and bow_dense take "
            "vectors; embedding_dense, lstm, gru, conv1d and transformer take token sequences."
        )


def scaled(sizes: tuple[int, ...] | list[int], width: float) -> tuple[int, ...]:
    """Layer sizes times the capacity multiplier ``width`` (book ch. 4), at least 1 each.

    One knob that every built-in model understands, so ``variant=smaller``/``bigger`` work
    for any of them instead of naming one model's layer sizes.
    """
    if width <= 0:
        raise ConfigValueError(f"'model.width' must be positive, got {width}.")
    return tuple(max(1, round(size * width)) for size in sizes)


Task = Literal["classification", "regression"]


class Classifier(L.LightningModule):
    """A LightningModule around ``self.net``: class logits, or values for regression.

    ``task`` comes from the data (its ``model_kwargs()``), so one architecture serves both:
    a classifier (cross-entropy, accuracy) or a regressor (MSE loss, MAE metric, the book's
    choice for housing prices and temperatures). For regression the output layer has
    ``num_classes`` units, one per target, and ``target_scale`` (the target's standard
    deviation when the data normalised it) turns the MAE back into the data's own units.
    """

    net: nn.Module

    def __init__(
        self,
        optimizer: str = "rmsprop",
        lr: LearningRate = 1e-3,
        weight_decay: Penalty = 0.0,
        l1: Penalty = 0.0,
        l2: Penalty = 0.0,
        optimizer_args: dict[str, Any] | None = None,
        init: Init = "keras",
        task: Task = "classification",
        target_scale: float = 1.0,
    ) -> None:
        """The keys of ``pipelines.api.TrainingArguments``, with their defaults: every
        built-in model takes them as ``**training: Unpack[TrainingArguments]`` (or
        ``OptimizerArguments``, the first five) and passes them on to here.

        ``l1``/``l2`` add the book's weight penalties (``l1 * sum|w|``, ``l2 * sum w^2``
        over weight matrices and kernels, not biases) to the training loss; ``weight_decay``
        is the optimizer's own decay. ``optimizer_args`` go to the optimizer's constructor
        as they are (e.g. ``{eps: 1e-7}``, Keras' Adam epsilon).
        ``init`` is what the layers start with (:mod:`plugins.models.initialisation`): a
        subclass builds ``self.net`` and then calls :meth:`initialise`."""
        super().__init__()
        self.task = task
        self.target_scale = target_scale
        self.optimizer_args = check_optimizer(optimizer, optimizer_args)
        self.init = init
        self.optimizer_name = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.l1 = l1
        self.l2 = l2
        #: per stage, per metric: (sum of batch means times batch size, number of samples)
        self._epoch_sums: dict[str, dict[str, tuple[torch.Tensor, int]]] = {}

    def initialise(self, keep: list[nn.Module] | tuple[()] = ()) -> None:
        """Start ``self.net``'s layers as ``model.init`` says, leaving ``keep`` (pretrained
        parts) alone. Each built-in model calls it once, at the end of its constructor."""
        initialise(self.net, self.init, keep)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        inputs, targets = batch
        outputs = self(inputs)
        if self.task == "regression":
            outputs = outputs.reshape(targets.shape)
            loss = F.mse_loss(outputs, targets)
            metric = "mae", (outputs - targets).abs().mean() * self.target_scale
        else:
            loss = F.cross_entropy(outputs, targets)
            metric = "acc", (outputs.argmax(dim=1) == targets).float().mean()
        self.accumulate(stage, {"loss": loss, metric[0]: metric[1]}, targets.shape[0])
        return loss

    # -- epoch metrics ------------------------------------------------------------------------
    # Lightning's ``self.log(on_epoch=True)`` moves its result collection to the device on
    # every call: measured at about 0.7 ms per call on this CPU, against a 2-3 ms training
    # step of the book's MNIST dense net. Batch metrics are therefore summed here (detached
    # tensors: no device sync) and logged once per epoch, as batch-size-weighted means.

    def accumulate(self, stage: str, values: dict[str, torch.Tensor], batch_size: int) -> None:
        """Add one batch's metrics (means over the batch) to the epoch's sums for ``stage``.

        Each metric keeps its own sample count, so a model may accumulate several times per
        batch (char_lstm adds ``bpc`` after the base loss and accuracy).
        """
        sums = self._epoch_sums.setdefault(stage, {})
        for name, value in values.items():
            weighted = torch.as_tensor(value).detach() * batch_size
            total, count = sums.get(name, (0, 0))
            sums[name] = (total + weighted, count + batch_size)

    def log_epoch_means(self, stage: str) -> None:
        """Log ``<stage>/<name>`` means of the epoch's batches, then start the next epoch."""
        if stage == "train":
            self.check_training_loss()
        means = {
            name: total / count for name, (total, count) in self._epoch_sums.pop(stage, {}).items()
        }
        for name, mean in means.items():
            self.log(f"{stage}/{name}", mean, prog_bar=stage != "train")

    def check_training_loss(self) -> None:
        """Stop with :class:`TrainingDiverged` if this epoch's training loss is NaN or inf.

        Checked once per epoch, from the epoch's sums (no per-step device sync), and before
        validation: the diverged weights are never validated or checkpointed, so both the
        best checkpoint and ``last.ckpt`` (what a resume starts from) stay good.
        """
        total, _ = self._epoch_sums.get("train", {}).get("loss", (None, 0))
        if total is None or bool(torch.isfinite(torch.as_tensor(total)).all()):
            return
        # epochs counted from 0, as in the checkpoint files' names (best-000.ckpt)
        kept = (
            "the checkpoints of the earlier epochs (best and last) stay in its checkpoints/ folder"
            if self.current_epoch > 0
            else "no epoch had finished, so there is no checkpoint"
        )
        clip = "" if self.trainer.gradient_clip_val else " (+trainer.gradient_clip_val=1.0)"
        raise TrainingDiverged(
            f"Training diverged: the training loss of epoch {self.current_epoch} (counted "
            f"from 0) is {float(total)}. The run is marked FAILED; {kept}. Lower the learning "
            f"rate (model.lr={self.lr}), or clip gradients{clip}."
        )

    def on_validation_start(self) -> None:
        if self.trainer.state.fn == "fit":  # not a standalone trainer.validate()
            self.check_training_loss()

    def on_train_epoch_end(self) -> None:
        self.log_epoch_means("train")

    def on_validation_epoch_end(self) -> None:
        self.log_epoch_means("val")

    def on_test_epoch_end(self) -> None:
        self.log_epoch_means("test")

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self._evaluate(batch, "train")
        if self.l1 or self.l2:
            loss = loss + self.weight_penalty()
        return loss

    #: this class logs epoch means of its own sums (never per batch through ``self.log``)
    #: and uses no per-batch hook, so batches handed to its steps one after the other within
    #: one Lightning call (``speed.steps_per_call``) change none of its numbers: the engine
    #: may fuse them (``pipelines.api.ModelPlugin.fused_steps_are_exact``). A subclass that
    #: logs per batch sets it False.
    fused_steps_are_exact = True

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
        outputs = self(inputs)
        return outputs if self.task == "regression" else outputs.softmax(dim=1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        trainable = [p for p in self.parameters() if p.requires_grad]
        return OPTIMIZERS[self.optimizer_name](
            trainable, lr=self.lr, weight_decay=self.weight_decay, **self.optimizer_args
        )
