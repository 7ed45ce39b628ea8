"""Builds the Lightning ``Trainer`` from the ``trainer`` config node.

The node's keys are ``lightning.Trainer`` arguments, checked against its signature so a
typo or a wrong type names the key. The engine owns logging and checkpointing: it adds the
tracker's logger and a checkpoint callback that keeps the best and the last epoch on disk
(:mod:`pipelines.checkpoint`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.console import interactive
from pipelines.errors import ConfigValueError
from pipelines.validation import check_arguments

if TYPE_CHECKING:
    from lightning.pytorch import Trainer
    from lightning.pytorch.callbacks import ModelCheckpoint

    from pipelines.context import RunContext

#: Trainer arguments the engine sets itself; a config that sets them would be silently lost.
ENGINE_OWNED = ("logger", "callbacks", "default_root_dir", "enable_checkpointing")


def build_trainer(
    ctx: RunContext,
    *,
    monitor: str = "val/loss",
    mode: str = "min",
    checkpoint_dir: str | None = "checkpoints",
    metric_prefix: str = "",
    overrides: Mapping[str, Any] | None = None,
) -> tuple[Trainer, ModelCheckpoint | None]:
    """A ``Trainer`` for one stage, and the checkpoint callback that tracks its best epoch.

    ``checkpoint_dir=None`` builds a trainer that saves nothing (evaluation stages);
    ``metric_prefix`` is put before every metric name this trainer logs.
    """
    from lightning.pytorch import Trainer

    from pipelines.checkpoint import engine_checkpoints
    from pipelines.lightning_logger import TrackerLogger

    kwargs = trainer_arguments({**(ctx.config.get("trainer") or {}), **(overrides or {})})
    quiet_lightning()
    plain_cuda_check_without_gpu()
    logger = TrackerLogger(ctx.tracker, prefix=metric_prefix)
    checkpoints = (
        engine_checkpoints(
            Path(ctx.output_dir) / checkpoint_dir, monitor, mode, logger.wait_for_writes
        )
        if checkpoint_dir is not None
        else []
    )
    callbacks: list[Any] = list(checkpoints)
    if kwargs["enable_progress_bar"] and interactive():
        from pipelines.progress import BatchProgressBar

        callbacks.append(BatchProgressBar())  # a person is watching: the rich bar
    trainer = Trainer(
        logger=logger,
        callbacks=callbacks,
        enable_checkpointing=bool(checkpoints),
        default_root_dir=str(ctx.output_dir),
        **kwargs,
    )
    logger.follow(trainer)
    return trainer, checkpoints[0] if checkpoints else None


def trainer_arguments(node: Mapping[str, Any]) -> dict[str, Any]:
    """The ``trainer`` config node checked against ``lightning.Trainer``'s signature."""
    from lightning.pytorch import Trainer

    kwargs = dict(node)
    for key in ENGINE_OWNED:
        if key in kwargs:
            raise ConfigValueError(
                f"'trainer.{key}' is set by the engine and cannot be configured; remove it."
            )
    if kwargs.get("enable_progress_bar") is None:
        kwargs["enable_progress_bar"] = interactive()
    return check_arguments(Trainer, kwargs, path="trainer", what="lightning.Trainer")


def plain_cuda_check_without_gpu() -> None:
    """Stop every ``optimizer.step()`` from asking NVML for GPUs on a machine that has none.

    Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` when imported, so that checking for
    CUDA never initialises it before DataLoader workers fork. PyTorch's optimizers check for
    an accelerator on every step, and with that variable the answer is not cached until CUDA
    initialises -- which, without a GPU, never happens: ~0.16 ms more per step here, 5-10%
    of the book's MNIST dense net. Once NVML has said there is no GPU, the plain check
    (cached by PyTorch, and with no GPU there is nothing to initialise) is used instead.
    """
    import os

    import torch

    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") == "1" and torch.cuda.device_count() == 0:
        del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]


def quiet_lightning() -> None:
    """Silence Lightning's start-up chatter and warnings that do not apply to our set-up.

    Hardware lines and tips repeat on every ``Trainer``; the per-step logging interval
    warning is moot because metrics are logged per epoch by design.
    """
    import logging
    import warnings

    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    # a resumed run writes its checkpoints into the folder it started in
    warnings.filterwarnings("ignore", message=r".*Checkpoint directory .* is not empty.*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    # under DDP every rank evaluates the whole val/test split (pipelines.tensor_loader), so
    # epoch metrics are already the same on every rank: no cross-rank reduction is needed
    warnings.filterwarnings("ignore", message=r".*sync_dist=True.*distributed setting.*")
