"""Builds the Lightning ``Trainer`` from the ``trainer`` config node.

The node's keys are ``lightning.Trainer`` arguments, checked against its signature so a
typo or a wrong type names the key. The engine owns logging and checkpointing: it adds the
tracker's logger and a checkpoint callback that keeps the best and the last epoch on disk
(:mod:`pipelines.training.checkpoint`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.checks.validation import check_arguments
from pipelines.errors import ConfigValueError
from pipelines.runtime.console import interactive

if TYPE_CHECKING:
    from lightning.pytorch import Trainer
    from lightning.pytorch.callbacks import ModelCheckpoint

    from pipelines.context import RunContext

#: Trainer arguments the engine sets itself; a config that sets them would be silently lost.
ENGINE_OWNED = ("logger", "callbacks", "default_root_dir", "enable_checkpointing")

#: Trainer arguments that say what hardware runs the fit: checked before any data is prepared.
HARDWARE_KEYS = ("accelerator", "devices", "num_nodes", "strategy", "precision", "plugins")


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

    from pipelines.tracking.lightning_logger import TrackerLogger
    from pipelines.training.checkpoint import engine_checkpoints

    kwargs = trainer_arguments({**(ctx.config.get("trainer") or {}), **(overrides or {})})
    quiet_lightning()
    plain_cuda_check_without_gpu()
    strategy = engine_strategy(ctx.config.get("speed"), kwargs)
    if strategy is not None:
        kwargs["strategy"] = strategy  # pipelines.speed.fast_steps: the engine takes the steps
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
        from pipelines.training.progress import BatchProgressBar

        callbacks.append(BatchProgressBar())  # a person is watching: the rich bar
    elif ctx.epoch_lines:
        from pipelines.training.progress import EpochLines

        callbacks.append(EpochLines(metric_prefix))  # a notebook: a line per epoch
    # the settings passed check_hardware and check_trainer_settings before the run: what
    # Lightning refuses here comes of a stage's own overrides, so no hardware advice
    with lightning_refusals_as_config_errors(kwargs, hardware=False):
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


def engine_strategy(speed: Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> Any:
    """The engine's :class:`~pipelines.speed.fast_steps.FastSteps` strategy on the one device these
    trainer settings run on, or None where ``speed.fast_steps`` is off or does not apply
    (a configured ``trainer.strategy``, several devices): Lightning's own choice then."""
    from pipelines.speed.settings import SpeedSettings

    setting = SpeedSettings.from_config(speed).fast_steps
    if setting is False:
        return None
    configured = kwargs.get("strategy", "auto")
    device = single_device(kwargs) if configured == "auto" else None
    if device is None:
        if setting is True:
            raise ConfigValueError(
                "'speed.fast_steps=true' needs Lightning's single-device strategy, but "
                f"trainer.strategy={configured} (devices={kwargs.get('devices', 'auto')}) "
                "runs another. Set speed.fast_steps=auto."
            )
        return None
    from pipelines.speed.fast_steps import FastSteps

    return FastSteps(device=device)


def single_device(kwargs: Mapping[str, Any]) -> Any:
    """The ``torch.device`` a ``Trainer`` of these hardware settings trains on when that is
    one device under Lightning's single-device strategy, else None (asked of Lightning)."""
    from lightning.pytorch.strategies import SingleDeviceStrategy

    probe = check_hardware(kwargs)
    return probe.strategy.root_device if type(probe.strategy) is SingleDeviceStrategy else None


def check_hardware(kwargs: Mapping[str, Any]) -> Trainer:
    """Fail in one paragraph if this machine cannot run the trainer's hardware settings;
    the probe ``Trainer`` that asked (no logger, no callbacks) where it can.

    Lightning finds out only when the ``Trainer`` is built, after the data was prepared (a
    minute of vectorising for IMDB) and a tracked run was opened; ``trainer=gpu`` on a
    laptop then ended in a traceback ("No supported gpu backend found!"). A ``Trainer``
    built from the hardware keys alone costs ~10 ms and asks the same questions.
    """
    from lightning.pytorch import Trainer

    hardware = {key: kwargs[key] for key in HARDWARE_KEYS if key in kwargs}
    quiet_lightning()
    with lightning_refusals_as_config_errors(hardware):
        return Trainer(
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            **hardware,
        )


def check_trainer_settings(kwargs: Mapping[str, Any]) -> None:
    """Fail in one paragraph on a setting Lightning's ``Trainer`` refuses beyond the
    hardware (``trainer.gradient_clip_algorithm=bogus``), before any data is read or a run
    opens: a ``Trainer`` built from all of them, without logger, callbacks or checkpoints."""
    from lightning.pytorch import Trainer

    quiet_lightning()
    with lightning_refusals_as_config_errors(kwargs, hardware=False):
        Trainer(logger=False, enable_checkpointing=False, **kwargs)


@contextmanager
def lightning_refusals_as_config_errors(
    kwargs: Mapping[str, Any], hardware: bool = True
) -> Iterator[None]:
    """Turn the ``Trainer``'s refusal of its arguments into a :class:`ConfigValueError`.

    Lightning raises ``MisconfigurationException``, ``ValueError`` or ``ImportError`` (a
    strategy's package is missing) for settings this machine or install cannot run. The
    message keeps Lightning's reason, names the ``trainer.*`` settings, and says what to do.
    """
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        yield
    except (MisconfigurationException, ValueError, ImportError) as error:
        reason = str(error).strip().rstrip(".!")
        if not hardware:
            raise ConfigValueError(
                f"Lightning's Trainer refused the trainer settings: {reason}. Fix the "
                "`trainer.*` value it names (conf/trainer/ holds the presets)."
            ) from None
        shown = ", ".join(f"trainer.{key}={kwargs[key]}" for key in HARDWARE_KEYS if key in kwargs)
        raise ConfigValueError(
            f"Lightning's Trainer cannot run these trainer settings here"
            f"{f' ({shown})' if shown else ''}: {reason}. {_hardware_advice(kwargs)}"
        ) from None


def _hardware_advice(kwargs: Mapping[str, Any]) -> str:
    """What to do instead, with what PyTorch sees on this machine where a GPU was asked for."""
    import os

    import torch

    accelerator = str(kwargs.get("accelerator", "auto")).lower()
    if accelerator in ("gpu", "cuda") and torch.cuda.device_count() == 0:
        if torch.version.cuda is None:
            why = f"this torch ({torch.__version__}) is a CPU-only build"
        elif "CUDA_VISIBLE_DEVICES" in os.environ:
            why = f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r} hides them"
        else:
            why = f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no driver or GPU"
        return (
            f"PyTorch sees no CUDA GPU on this machine: {why}. To run on the CPU, pick a CPU "
            "trainer (`trainer=default` takes whatever accelerator there is; `trainer=ddp_cpu` "
            "runs several processes) or add `trainer.accelerator=cpu`; to use a GPU, run where "
            '`python -c "import torch; print(torch.cuda.is_available())"` prints True.'
        )
    return (
        "Set the trainer's accelerator, devices, strategy and precision to what this machine "
        "has (`trainer=default` runs anywhere: one device of whatever accelerator there is), "
        "or install what the message names."
    )


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


#: where Lightning's hardware lines and tips are logged from: its unified package's modules,
#: and the standalone ``pytorch_lightning`` / ``lightning_fabric`` ones, which report under
#: their own names once imported (``mlflow.pytorch`` imports ``pytorch_lightning`` when it
#: logs a model, so from a sweep's second job on every Trainer spoke up again)
_CHATTY_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "pytorch_lightning.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
)


def quiet_lightning() -> None:
    """Silence Lightning's start-up chatter and warnings that do not apply to our set-up.

    Hardware lines and tips repeat on every ``Trainer``; the per-step logging interval
    warning is moot because metrics are logged per epoch by design.
    """
    import logging
    import warnings

    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    # a resumed run writes its checkpoints into the folder it started in
    warnings.filterwarnings("ignore", message=r".*Checkpoint directory .* is not empty.*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    # under DDP every rank evaluates the whole val/test split (pipelines.training.tensor_loader), so
    # epoch metrics are already the same on every rank: no cross-rank reduction is needed
    warnings.filterwarnings("ignore", message=r".*sync_dist=True.*distributed setting.*")
