"""Training a model the way the ``fit`` stage does: the engine's trainer and checkpoints, the
speed settings, the best epoch's metrics, and the kept checkpoint logged to the run.

Without validation (``data.val_fraction=0``: the book's final models, trained on every
training row) no epoch is ever scored, so there is no best checkpoint: the final weights
(``last.ckpt``) are then the run's model, logged and tagged like a best checkpoint, so the
test stage, ``evaluate`` and ``predict`` all use the same weights.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from pipelines.context import RunContext
from pipelines.speed.settings import SpeedSettings, apply_speed_settings
from pipelines.tracking.tracker import Tracker
from pipelines.training.checkpoint import (
    LastCheckpoint,
    checkpoint_damage,
    epochs_done,
    resumable_checkpoint,
)
from pipelines.training.run_loader import BEST_CHECKPOINT_TAG
from pipelines.training.trainer import build_trainer

log = logging.getLogger(__name__)


class BestEpochMetrics(Callback):
    """Keeps every validation metric of the epoch that is best by ``monitor``.

    The checkpoint kept is that epoch's, so these are the validation numbers of the weights
    the test stage will use (``best/val_acc`` beside ``best/val_loss``): what a user compares
    runs by, and what a benchmark selects settings on without touching the test split.
    """

    def __init__(self, monitor: str, mode: str) -> None:
        self.monitor = monitor
        self.sign = 1.0 if mode == "min" else -1.0
        self.best: dict[str, float] = {}

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        # after the epoch-end hooks, where models log their epoch means
        if trainer.sanity_checking:
            return
        metrics = {
            key: float(value)
            for key, value in trainer.callback_metrics.items()
            if key.startswith("val/") and value.numel() == 1
        }
        score = metrics.get(self.monitor)
        if score is None or score != score:  # not logged, or NaN
            return
        if not self.best or self.sign * score < self.sign * self.best[self.monitor]:
            self.best = metrics

    # saved in every checkpoint, so a resumed run still knows its best epoch's metrics
    def state_dict(self) -> dict[str, Any]:
        return {"best": dict(self.best)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = dict(state_dict.get("best") or {})


def fit_model(
    ctx: RunContext,
    model: Any,
    datamodule: Any,
    *,
    monitor: str = "val/loss",
    mode: str = "min",
    max_epochs: int | None = None,
    metric_prefix: str = "",
    checkpoint_dir: str = "checkpoints",
) -> dict[str, float]:
    """Train ``model`` on ``datamodule`` as the ``fit`` stage does; the best epoch's metrics.

    The trainer is the run's (``trainer`` config, the tracker's logger, a best and a last
    checkpoint in ``output_dir/checkpoint_dir``), with the ``speed`` settings applied. A
    resumed run continues from its last intact checkpoint. Whatever happens, the best intact
    checkpoint on disk is logged to the run and becomes ``ctx.artifacts["best_checkpoint"]``
    (the weights the test stage, ``evaluate`` and ``predict`` use). The validation metrics of
    that epoch (``best/val_acc``, ...) are logged, added to ``ctx.metrics`` and returned.
    ``max_epochs`` overrides ``trainer.max_epochs`` for this call only.
    """
    overrides = {"max_epochs": max_epochs} if max_epochs is not None else {}
    trainer, checkpoint = build_trainer(
        ctx,
        monitor=monitor,
        mode=mode,
        checkpoint_dir=checkpoint_dir,
        metric_prefix=metric_prefix,
        overrides=overrides,
    )
    best_metrics = BestEpochMetrics(monitor, mode)
    trainer.callbacks.append(best_metrics)
    speed = SpeedSettings.from_config(ctx.config.get("speed"))
    applied = apply_speed_settings(speed, model, datamodule, trainer)
    shown = [name if value is True else f"{name}={value}" for name, value in applied.items()]
    ctx.tracker.set_tags({"speed": ",".join(shown) or "none"})
    resumable = (
        resumable_checkpoint(Path(ctx.output_dir) / checkpoint_dir) if ctx.resuming else None
    )
    resume_from = str(resumable) if resumable else None
    if resumable:
        print(f"resuming from {resumable} ({epochs_done(resumable)})", file=sys.stderr, flush=True)
    try:
        # weights only: a checkpoint file cannot run code when it is loaded
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    finally:
        # Whatever happened, what was saved on disk goes into the tracked run too.
        kept = _best_saved_checkpoint(checkpoint) or _final_saved_checkpoint(trainer, checkpoint)
        if kept:
            ctx.artifacts["best_checkpoint"] = kept
            ctx.tracker.log_artifact(kept, checkpoint_dir)
            logged = f"{checkpoint_dir}/{Path(kept).name}"
            ctx.tracker.set_tags({BEST_CHECKPOINT_TAG: logged})
            if ctx.resuming:
                drop_earlier_checkpoints(ctx.tracker, checkpoint_dir, logged)
    # Logged, and shown in the run's summary: for pipelines without a test stage
    # (generative ones) these are the numbers that say how training went.
    best = {
        f"{metric_prefix}best/{key.replace('/', '_')}": value
        for key, value in best_metrics.best.items()
    }
    if checkpoint and checkpoint.best_model_score is not None:
        best[f"{metric_prefix}best/{monitor.replace('/', '_')}"] = float(
            checkpoint.best_model_score
        )
    if best:
        ctx.metrics.update(best)
        ctx.tracker.log_metrics(best, step=trainer.global_step)
    return best


def drop_earlier_checkpoints(tracker: Tracker, checkpoint_dir: str, logged: str) -> None:
    """Remove from the run the checkpoints in ``checkpoint_dir`` other than ``logged``.

    A stopped run (Ctrl-C, SIGTERM, a full disk) logs its best checkpoint so far, so that
    ``evaluate`` and ``predict`` can use it; resumed, it logs the final best beside it, and
    the run's artifacts showed two "best" models. Called only on resume: one attempt of a
    stage logs one checkpoint. Where the artifact store cannot delete (some of MLflow's
    cannot), the earlier file stays and a warning says which one is current.
    """
    try:
        logged_before = tracker.artifact_files(checkpoint_dir)
    except Exception as exc:  # a tidy-up: never the reason a run fails
        log.warning("Could not list the run's checkpoints to remove earlier ones: %s", exc)
        return
    for path in logged_before:
        if path == logged or not path.endswith(".ckpt"):
            continue
        if not tracker.delete_artifact(path):
            log.warning(
                "The run's artifacts keep %s, its best checkpoint before it was resumed: this "
                "artifact store cannot delete it. The run's model is %s (tag %s); delete the "
                "other one by hand if it is in the way.",
                path,
                logged,
                BEST_CHECKPOINT_TAG,
            )


def _best_saved_checkpoint(checkpoint: ModelCheckpoint | None) -> str:
    """The best intact checkpoint that is on disk ("" if none).

    ``ModelCheckpoint`` names its new best (and forgets the old one) before writing it, so a
    run stopped in between (Ctrl-C, a full disk) has a ``best_model_path`` with no file, or
    with a file cut short (a full disk mid-write), which the run must not record as its
    model. The best intact one still on disk stands in: the best of the top-k kept, else the
    newest non-"last" checkpoint, which with ``save_top_k=1`` is the previous best.
    """
    if checkpoint is None or not checkpoint.best_model_path:
        return ""
    if _intact(checkpoint.best_model_path):
        return checkpoint.best_model_path
    kept = {path: score for path, score in checkpoint.best_k_models.items() if _intact(path)}
    if kept:
        choose = min if checkpoint.mode == "min" else max
        return choose(kept, key=lambda path: float(kept[path]))
    last = checkpoint.CHECKPOINT_NAME_LAST or "last"
    saved = sorted(
        (
            path
            for path in Path(checkpoint.dirpath or ".").glob(f"*{checkpoint.FILE_EXTENSION}")
            if not path.stem.startswith(last)
        ),
        key=lambda path: path.stat().st_mtime,
        reverse=True,
    )
    return next((str(path) for path in saved if _intact(path)), "")


def _final_saved_checkpoint(trainer: Any, checkpoint: ModelCheckpoint | None) -> str:
    """The final weights (``last.ckpt``) where no epoch was ever scored ("" otherwise).

    The best checkpoint is chosen by a validation metric: a fit without validation data
    (``data.val_fraction=0``, or validation never due) never saves one, and its final
    weights, which the test stage evaluates, are the run's model. Not logged, they stayed
    in the output folder only, and ``evaluate``/``predict`` found no checkpoint in the run.
    Where an epoch was scored, the best one is the model and ``last.ckpt`` is only for
    resuming, so it never stands in for a best checkpoint that is missing or damaged.
    """
    if checkpoint is None or checkpoint.best_model_score is not None or checkpoint.best_model_path:
        return ""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, LastCheckpoint) and callback.best is checkpoint:
            last = Path(callback.dirpath or ".") / (
                f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
            )
            if _intact(last):
                log.info("no epoch was validated: the final weights (%s) are the model", last)
                return str(last)
    return ""


def _intact(path: str | Path) -> bool:
    """Whether ``path`` is a checkpoint file that can be read back whole."""
    if not Path(path).is_file():
        return False
    damage = checkpoint_damage(path)
    if damage is not None:
        log.warning("%s is damaged (%s): not recorded as the run's model", path, damage)
    return damage is None
