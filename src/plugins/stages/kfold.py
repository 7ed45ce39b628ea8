"""The ``kfold`` stage: K-fold cross-validation on the training data (book 3.6.4 / 4.3).

With few samples (Boston housing: 404 to train on), one validation split is too noisy to
choose a number of epochs. K-fold trains K fresh models, each on K-1 folds, validates each on
the fold it did not see, and averages. The test split is never touched.

Contract with the data plugin: ``datamodule.folds(k, seed)`` yields one
``(train_loader, val_loader)`` pair per fold over the training data (train + val merged),
each fold's samples validated exactly once; ``datamodule.model_kwargs()`` gives the model's
data-implied arguments. See :class:`plugins.data.tabular.TabularRegressionDataModule`.

Each fold is a nested MLflow run (``fold-0`` ... ``fold-3`` under the pipeline's run, tagged
``mlflow.parentRunId``, param ``fold``) with its own per-epoch curves; the parent gets
``kfold/val_mae_mean``, ``kfold/val_mae_std`` (over folds, of each fold's final
``val/mae``) and the mean validation curve ``kfold/val_mae`` per epoch -- the book's plot --
with ``kfold/best_epoch``, the epoch where that mean curve is lowest.

Everything counts from 0, as Lightning does: folds (the log says ``fold-2``, the name of the
child run to look for in the MLflow UI, not "fold 3/4"), and epochs (``kfold/best_epoch``
is the step of the lowest point of ``kfold/val_mae``, as checkpoint names ``best-007.ckpt``
and the divergence message count them). Training the final model for the best number of
epochs therefore takes ``trainer.max_epochs`` = best epoch + 1, which the log says.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Literal

import numpy as np
from lightning.pytorch import Callback

from pipelines.api import (
    Epochs,
    PipelineError,
    RunContext,
    Seed,
    build_trainer,
    stop_if_requested,
)

log = logging.getLogger(__name__)


class _History(Callback):
    """Collects one metric at the end of every training epoch (after its validation)."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.values: list[float] = []

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        value = trainer.callback_metrics.get(self.metric)
        if value is not None:
            self.values.append(float(value))


class KFold:
    """K-fold validation of the configured model on the data's training split.

    ``k`` folds (the book: 4); ``seed`` shuffles the samples into folds (null: the run's
    ``seed``); ``max_epochs`` overrides ``trainer.max_epochs`` for the fold models only;
    ``metric`` is the validation metric averaged over folds, and ``mode`` whether its best
    epoch is its lowest (``min``: a loss or an error such as val/mae) or its highest
    (``max``: an accuracy), as for the ``fit`` stage's ``monitor``.
    """

    def __init__(
        self,
        k: int = 4,
        seed: Seed | None = None,
        max_epochs: Epochs | None = None,
        metric: str = "val/mae",
        mode: Literal["min", "max"] = "min",
    ) -> None:
        if k < 2:
            raise PipelineError(f"'kfold' needs at least 2 folds, got k={k}.")
        self.k = k
        self.seed = seed
        self.max_epochs = max_epochs
        self.metric = metric
        self.mode = mode

    def check(self, ctx: RunContext) -> None:
        """Data without folds is refused right after ``prepare``, wherever this stage is."""
        datamodule = ctx.require("datamodule", "kfold", "prepare")
        if not hasattr(datamodule, "folds"):
            raise PipelineError(
                f"The 'kfold' stage needs data that can be split into folds (a data plugin "
                f"with `folds(k, seed)`, e.g. data=housing); data "
                f"'{ctx.config['data']['name']}' has none."
            )

    def run(self, ctx: RunContext) -> None:
        self.check(ctx)
        datamodule = ctx.require("datamodule", "kfold", "prepare")
        seed = ctx.seed if self.seed is None else self.seed
        data_kwargs = datamodule.model_kwargs() if hasattr(datamodule, "model_kwargs") else {}
        key = self.metric.replace("/", "_")
        finals: list[float] = []
        curves: list[list[float]] = []
        for index, (train_loader, val_loader) in enumerate(datamodule.folds(self.k, seed)):
            history = self._fold(ctx, index, seed, train_loader, val_loader, data_kwargs)
            if not history:
                raise PipelineError(
                    f"Fold run {fold_run_name(index)} logged no '{self.metric}': the model "
                    "must log it on the validation data (regression models log val/mae)."
                )
            finals.append(history[-1])
            curves.append(history)
            log.info(
                "kfold: %s (of %s) %s %.4f",
                fold_run_name(index),
                f"{fold_run_name(0)}..{fold_run_name(self.k - 1)}",
                self.metric,
                history[-1],
            )
        epochs = min(len(curve) for curve in curves)
        mean_curve = np.mean([curve[:epochs] for curve in curves], axis=0)
        for epoch, value in enumerate(mean_curve):
            ctx.tracker.log_metrics({f"kfold/{key}": float(value)}, step=epoch)
        best_epoch = best_epoch_of(mean_curve, self.mode)
        summary = {
            f"kfold/{key}_mean": float(np.mean(finals)),
            f"kfold/{key}_std": float(np.std(finals)),
            "kfold/best_epoch": float(best_epoch),
        }
        ctx.tracker.log_metrics(summary, step=epochs)
        ctx.tracker.set_tags({"kfold.k": str(self.k), "kfold.seed": str(seed)})
        ctx.metrics.update(summary)
        log.info(
            "kfold: %s %.4f +- %.4f over %d folds",
            self.metric,
            summary[f"kfold/{key}_mean"],
            summary[f"kfold/{key}_std"],
            self.k,
        )
        log.info(
            "kfold: the mean %s is %s at epoch %d (counted from 0, like kfold/best_epoch "
            "and the steps of kfold/%s): train the final model for %d epochs "
            "(trainer.max_epochs=%d)",
            self.metric,
            "lowest" if self.mode == "min" else "highest",
            best_epoch,
            key,
            best_epoch + 1,
            best_epoch + 1,
        )

    def _fold(
        self,
        ctx: RunContext,
        index: int,
        seed: int,
        train_loader: Any,
        val_loader: Any,
        data_kwargs: dict[str, Any],
    ) -> list[float]:
        """Train a fresh model on one fold in its own child run; its per-epoch metric."""
        config = ctx.config
        tags = {
            "fold": str(index),
            "kfold.k": str(self.k),
            "model": str(config["model"]["name"]),
            "data": str(config["data"]["name"]),
            "pipeline": str(config.get("pipeline", {}).get("name", "")),
        }
        child = ctx.tracker.child(fold_run_name(index), tags=tags)
        status = "FAILED"
        try:
            child.log_params({"fold": index, "kfold.k": self.k, "kfold.seed": seed})
            model = ctx.build_model(**data_kwargs, tracking_uri=ctx.tracking_uri)
            fold_ctx = dataclasses.replace(ctx, tracker=child, metrics={}, artifacts={})
            overrides = {"max_epochs": self.max_epochs} if self.max_epochs is not None else {}
            trainer, _ = build_trainer(fold_ctx, checkpoint_dir=None, overrides=overrides)
            history = _History(self.metric)
            trainer.callbacks.append(history)
            trainer.fit(model, train_dataloaders=train_loader, val_dataloaders=val_loader)
            stop_if_requested()  # a SIGTERM during the fold's last hooks
            status = "FINISHED"
            return history.values
        except (KeyboardInterrupt, SystemExit):
            status = "KILLED"
            raise
        finally:
            child.finish(status)


def fold_run_name(index: int) -> str:
    """The child run of fold ``index`` (from 0), as the log names it: one name in both, so a
    user reading "fold-2" in the log finds that run in the MLflow UI."""
    return f"fold-{index}"


def best_epoch_of(mean_curve: np.ndarray, mode: str = "min") -> int:
    """The epoch, counted from 0 like Lightning's (and like the steps the mean curve is logged
    at), where the mean validation curve is lowest (``mode="min"``) or highest (``"max"``).

    Always the lowest, a ``metric=val/acc`` picked the epoch of the worst accuracy."""
    return int(np.argmax(mean_curve) if mode == "max" else np.argmin(mean_curve))
