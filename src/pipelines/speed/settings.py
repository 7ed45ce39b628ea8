"""Speed settings beyond ``lightning.Trainer``'s own: data on the device, channels_last, TF32,
compile.

The ``speed`` config node. Each is about where time goes on an accelerator, and each is
"auto" where there is a safe default, so ``trainer=gpu`` is fast without more flags:

- ``data_on_device``: an in-memory dataset (MNIST is 180 MB as float32) is copied to the GPU
  once, so batches are sliced there instead of being copied from host memory every step.
  auto: on a single GPU, for data modules that hold their splits as tensors.
- ``channels_last``: the NHWC memory format, which the GPU's tensor-core convolutions use
  without transposing every layer's input. auto: on GPU, for models with 2D convolutions,
  except depthwise (grouped) ones in bf16/fp16 mixed precision. Measured on an H200
  (``benchmarks/gpu_precision.py``, 180x180, batches of 32, seconds an epoch): in float32
  NHWC made the book's convnet (0.200 vs 0.230) and mini Xception (0.448 vs 0.479)
  faster; in bf16 it made the Xception's separable convolutions slower (0.670 vs 0.551).
- ``tf32``: TensorFloat-32 for float32 matrix products on the GPU
  (``torch.set_float32_matmul_precision("high")``): dense and recurrent layers then use the
  tensor cores as PyTorch's cuDNN convolutions already do, and as TensorFlow, so the book's
  Keras, does by default. ``trainer=gpu`` trains in float32 because on an H200 the book's
  nets at their batch sizes trained faster in it than in bf16 mixed precision. auto: on GPU.
- ``compile``: ``torch.compile`` of the model, in place (``nn.Module.compile``), so
  checkpoints keep their keys and load into an uncompiled model. Off by default: compiling
  takes tens of seconds, which only pays back over long runs.
- ``fast_steps`` and ``steps_per_call``: the engine's strategy (:mod:`pipelines.speed.fast_steps`)
  takes the optimizer steps where that changes nothing, several per Lightning step.

On CPU every auto setting is off: the tensors already sit in host memory, and oneDNN picks
its own layouts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, PositiveInt

if TYPE_CHECKING:
    import torch
    from lightning.pytorch import LightningDataModule, LightningModule, Trainer

Auto = Literal["auto"] | bool

#: optimizer steps per Lightning step under ``steps_per_call: auto``. Lightning's own loop
#: costs ~0.25 ms a step on this CPU (benchmarks/step_cost.py), 10-15% of the book's MNIST
#: dense-net step; over 32 steps it is under 1%, and a 32-step call of that net (~60 ms)
#: still moves the progress bar many times a second.
AUTO_STEPS_PER_CALL = 32


class SpeedSettings(BaseModel):
    """The ``speed`` config node (checked like every plugin's arguments)."""

    model_config = ConfigDict(extra="forbid")

    data_on_device: Auto = "auto"
    channels_last: Auto = "auto"
    tf32: Auto = "auto"
    compile: bool = False
    #: torch.compile's mode: default, reduce-overhead, max-autotune
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "default"
    #: optimizer steps per Lightning step (Keras' steps_per_execution): Lightning's per-step
    #: bookkeeping is paid once for this many steps; the same batches, in the same order.
    #: auto: AUTO_STEPS_PER_CALL wherever that changes nothing but how often the progress
    #: bar moves (see :func:`auto_steps_per_call`), else 1
    steps_per_call: PositiveInt | Literal["auto"] = "auto"
    #: the engine's strategy (pipelines.speed.fast_steps) on a single device: auto and true, it
    #: takes the optimizer steps where that changes nothing (true: a configured
    #: trainer.strategy or several devices are refused); false: Lightning's loop as it comes,
    #: and steps_per_call 1
    fast_steps: Auto = "auto"

    @classmethod
    def from_config(cls, node: Mapping[str, Any] | None) -> SpeedSettings:
        """The settings of the ``speed`` node, or an error that names the key to fix."""
        import pydantic

        from pipelines.errors import ConfigValueError, did_you_mean

        node = dict(node or {})
        for key in node:
            if key not in cls.model_fields:
                raise ConfigValueError(
                    f"Unknown key 'speed.{key}'.{did_you_mean(key, cls.model_fields)} The "
                    f"speed keys are: {', '.join(cls.model_fields)}."
                )
        try:
            return cls(**node)
        except pydantic.ValidationError as exc:
            error = exc.errors()[0]
            key = ".".join(str(part) for part in error["loc"][:1])
            raise ConfigValueError(
                f"Wrong value for 'speed.{key}': got {error.get('input')!r}; {error['msg']}. "
                f"Fix it on the command line (`speed.{key}=...`) or in conf/config.yaml."
            ) from None


def apply_speed_settings(
    settings: SpeedSettings,
    model: LightningModule,
    datamodule: LightningDataModule | None,
    trainer: Trainer,
) -> dict[str, Any]:
    """Apply the settings before ``trainer.fit``; what was applied (for the run's tags)."""
    device = trainer.strategy.root_device
    on_gpu = device.type == "cuda"
    applied: dict[str, Any] = {}

    # data streamed from disk (DataPlugin.data_path) has no splits to move
    movable = hasattr(datamodule, "move_splits_to") and (
        getattr(datamodule, "data_path", None) != "streamed"
    )
    if _decide(settings.data_on_device, on_gpu and movable and trainer.world_size == 1):
        if not movable:
            from pipelines.errors import ConfigValueError

            raise ConfigValueError(
                f"'speed.data_on_device=true' needs a data module that holds its splits in "
                f"memory; {type(datamodule).__name__} streams its batches. Set "
                f"speed.data_on_device=auto."
            )
        datamodule.move_splits_to(device)  # type: ignore[union-attr]
        applied["data_on_device"] = True

    precision = str(getattr(trainer, "precision", "32-true"))
    if _decide(settings.channels_last, on_gpu and channels_last_pays(model, precision)):
        import torch

        model.to(memory_format=torch.channels_last)
        applied["channels_last"] = True

    if _decide(settings.tf32, on_gpu):
        import torch

        # process-wide, as Lightning's own advice to set it; a run is one process
        torch.set_float32_matmul_precision("high")
        applied["tf32"] = True
    elif settings.tf32 is False:
        import torch

        # an earlier run of this process (an in-process sweep, k-fold) may have turned it on
        torch.set_float32_matmul_precision("highest")

    steps_per_call = settings.steps_per_call
    if steps_per_call == "auto":
        steps_per_call = auto_steps_per_call(model, datamodule, trainer)
    applied.update(fuse_batches(steps_per_call, model, datamodule, trainer))

    if settings.compile:
        model.compile(mode=None if settings.compile_mode == "default" else settings.compile_mode)
        applied["compile"] = True
    return applied


def fuse_batches(
    steps: int, model: LightningModule, datamodule: LightningDataModule | None, trainer: Trainer
) -> dict[str, Any]:
    """Have the data hand over ``steps`` training batches per call and the engine's strategy
    step on each (validation batches too where the model declares that this changes none
    of its numbers and no limit counts them); 1 undoes what an earlier stage fused. What
    was applied (for the run's tags)."""
    from pipelines.errors import ConfigValueError
    from pipelines.speed.fast_steps import FastSteps, why_lightning_steps

    strategy = trainer.strategy
    if steps == 1:
        for name in ("steps_per_call", "val_steps_per_call"):
            if hasattr(datamodule, name):
                setattr(datamodule, name, 1)
        if isinstance(strategy, FastSteps):
            strategy.fuse(1, 0, False, None)
        return {}
    if not isinstance(strategy, FastSteps) or not hasattr(datamodule, "steps_per_call"):
        raise ConfigValueError(
            f"'speed.steps_per_call={steps}' works on in-memory data with the engine's "
            f"single-device strategy (speed.fast_steps); {type(datamodule).__name__} under "
            f"{type(strategy).__name__} takes one step per batch. Set speed.steps_per_call=1 "
            "(or auto)."
        )
    reason = why_lightning_steps(model, trainer)
    if reason is not None:
        raise ConfigValueError(
            f"'speed.steps_per_call={steps}' needs the engine to take the optimizer steps, "
            f"which {reason} rules out. Remove it, or set speed.steps_per_call=1."
        )
    datamodule.steps_per_call = steps  # type: ignore[union-attr]
    fuse_validation = (
        getattr(model, "fused_steps_are_exact", False)
        and hasattr(datamodule, "val_steps_per_call")
        and _whole(trainer.limit_val_batches)
    )
    if hasattr(datamodule, "val_steps_per_call"):
        datamodule.val_steps_per_call = steps if fuse_validation else 1
    strategy.fuse(steps, datamodule.batch_size, fuse_validation, datamodule)  # type: ignore[union-attr]
    return {"steps_per_call": steps}


def auto_steps_per_call(
    model: LightningModule, datamodule: LightningDataModule | None, trainer: Trainer
) -> int:
    """AUTO_STEPS_PER_CALL where fusing steps changes no result and no setting's meaning.

    That is: the engine's strategy can take the optimizer steps (no gradient clipping or
    accumulation, see :func:`pipelines.speed.fast_steps.why_lightning_steps`), the model declares
    that batches handed to it one after the other within a call change none of its numbers
    (``fused_steps_are_exact``: the built-in models), the data is in memory and not
    augmented per batch (its random draws would come in another order), one process
    trains, and nothing counts training batches (``max_steps``, an integer or fractional
    ``limit_train_batches`` or ``val_check_interval``), since Lightning would count calls
    instead. The weights are the same as one step per call (tests/test_speed.py); only the
    progress bar moves once per call. Anywhere else: 1.
    """
    from pipelines.speed.fast_steps import FastSteps, why_lightning_steps

    fusable = (
        isinstance(trainer.strategy, FastSteps)
        and why_lightning_steps(model, trainer) is None
        and getattr(model, "fused_steps_are_exact", False)
        and getattr(datamodule, "fused_batches_are_exact", False)
        and trainer.world_size == 1
        and trainer.max_steps == -1
        and _whole(trainer.limit_train_batches)
        and _whole(trainer.val_check_interval)
    )
    return AUTO_STEPS_PER_CALL if fusable else 1


def _whole(fraction: Any) -> bool:
    """Lightning's "all of it": the float 1.0 or None (an int 1 means one batch)."""
    return fraction is None or (isinstance(fraction, float) and fraction == 1.0)


def _decide(setting: Auto, auto: bool) -> bool:
    return auto if setting == "auto" else bool(setting)


def channels_last_pays(model: torch.nn.Module, precision: str = "32-true") -> bool:
    """Whether ``channels_last: auto`` turns NHWC on for ``model`` on a GPU at Lightning's
    ``precision``: it has 2D convolutions, and none grouped (depthwise) if the precision
    is a 16-bit one, where those ran slower in NHWC (see the module's docstring)."""
    from torch import nn

    convolutions = [module for module in model.modules() if isinstance(module, nn.Conv2d)]
    sixteen_bit = precision.startswith(("bf16", "16"))
    grouped = any(conv.groups > 1 for conv in convolutions)
    return bool(convolutions) and not (sixteen_bit and grouped)
