"""The engine's training step, through Lightning's public ``Strategy`` API (``speed.fast_steps``).

Lightning's loop costs time per step that the book's small networks notice: ~0.25 ms a
Lightning step on this project's 2-core CPU (``benchmarks/step_cost.py``), 10-15% of the MNIST
dense net's step. What pays it back lives here, in one ``SingleDeviceStrategy`` subclass that
:func:`pipelines.training.trainer.build_trainer` hands the ``Trainer`` (a strategy is Lightning's
documented extension point for how a step runs). Models stay plain ``LightningModule``\\ s
with automatic optimization; nothing here reaches into Lightning's private parts.

- **The engine takes the optimizer steps** where that changes nothing: the model optimizes
  automatically with one optimizer and no learning-rate scheduler, nothing clips or
  accumulates gradients, and neither the model nor a callback overrides a hook that only
  the automatic loop calls (``optimizer_step``, ``optimizer_zero_grad``,
  ``configure_gradient_clipping``, ``on_before_zero_grad``). The strategy then puts the
  model in Lightning's manual optimization for the fit (``automatic_optimization``, a
  public property) and its ``training_step`` does what the automatic loop does, in the same
  order: ``optimizer.step(closure)``, the closure running the model's ``training_step``,
  ``zero_grad`` and ``backward``. The weights are the automatic loop's (a test compares
  them), ``trainer.global_step`` counts optimizer steps, and the automatic loop's closure
  objects and hook dispatches around every step are skipped. The model keeps manual
  optimization after the fit, so ``trainer.global_step`` still reads the steps taken; the
  next trainer the engine builds for it puts back what the model declared (a ``Trainer``
  built by hand for the same object after an engine fit: set
  ``model.automatic_optimization = True`` first).
- **Several optimizer steps per Lightning step** (``speed.steps_per_call``, Keras'
  ``steps_per_execution``): the data hands over N batches at once (``TensorBatches``) and
  ``training_step`` cuts them apart and steps on each in order, so Lightning's per-step
  bookkeeping is paid once per N steps; each part reaches the model's ``training_step``
  with the index it has one by one. Validation batches likewise, where the model declares
  that this changes none of its numbers (``fused_steps_are_exact``) and no
  ``limit_val_batches`` counts them. After the fit the data hands out single batches again.
- **The lean step**: with Lightning's plain fp32 ``Precision``, no profiler, and no
  callback or the model overriding ``backward``, ``on_before_backward``,
  ``on_after_backward`` or ``on_before_optimizer_step``, the strategy's ``backward`` and
  ``optimizer_step`` are the plain ``loss.backward()`` and ``optimizer.step(closure)``:
  Lightning's would only dispatch those hooks to nobody (and clip nothing).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import GradientAccumulationScheduler
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.trainer.states import TrainerFn

from pipelines.errors import ConfigValueError

#: hooks only Lightning's automatic loop calls: a model or callback that overrides one keeps it
AUTOMATIC_ONLY_MODEL_HOOKS = (
    "optimizer_step",
    "optimizer_zero_grad",
    "configure_gradient_clipping",
    "on_before_zero_grad",
)
#: hooks Lightning's backward and optimizer-step wrappers dispatch (the lean step skips them)
WRAPPER_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")

#: models this module switched to manual optimization, switched back by the next connect()
_SWITCHED: weakref.WeakSet[L.LightningModule] = weakref.WeakSet()


def overrides(obj: Any, base: type, hook: str) -> bool:
    """Whether ``obj``'s class defines ``hook`` other than ``base`` does."""
    return getattr(type(obj), hook, None) is not getattr(base, hook, None)


def why_lightning_steps(module: L.LightningModule, trainer: L.Trainer) -> str | None:
    """Why only Lightning's automatic loop can optimize ``module`` under ``trainer`` (in
    words, for a message), or None: the engine may take the steps. What can be known before
    ``fit``; :meth:`FastSteps.setup` adds the optimizers once they exist."""
    if not module.automatic_optimization and module not in _SWITCHED:
        return f"{type(module).__name__} optimizing by hand (automatic_optimization=False)"
    if trainer.gradient_clip_val:
        return "gradient clipping (trainer.gradient_clip_val)"
    if trainer.accumulate_grad_batches != 1 or any(
        isinstance(callback, GradientAccumulationScheduler) for callback in trainer.callbacks
    ):
        return "gradient accumulation (trainer.accumulate_grad_batches)"
    for hook in AUTOMATIC_ONLY_MODEL_HOOKS:
        if overrides(module, L.LightningModule, hook):
            return f"{type(module).__name__}'s own {hook}"
    for callback in trainer.callbacks:
        if overrides(callback, L.Callback, "on_before_zero_grad"):
            return f"the callback {type(callback).__name__}'s on_before_zero_grad"
    return None


class FastSteps(SingleDeviceStrategy):
    """Lightning's single-device strategy, taking the optimizer steps itself where that
    changes nothing (see the module's docstring). ``build_trainer`` passes it to the
    ``Trainer`` under ``speed.fast_steps``; ``L.Trainer(strategy=FastSteps())`` works too."""

    strategy_name = "pipelines_fast_steps"

    def __init__(self, device: Any = "cpu", **kwargs: Any) -> None:
        super().__init__(device=device, **kwargs)
        #: decided at setup (fit): this strategy takes the steps / skips unused hooks
        self.takes_steps = False
        self.lean = False
        #: speed.steps_per_call: batches per training (and validation) call, and their size
        self.steps_per_call = 1
        self.val_steps_per_call = 1
        self.micro_batch_size = 0
        self._fused_data: Any = None

    # -- set-up -------------------------------------------------------------------------------

    def fuse(self, steps: int, batch_size: int, validation: bool, datamodule: Any) -> None:
        """Take ``steps`` optimizer steps of ``batch_size`` samples per training call (and
        validate as many batches per call if ``validation``); ``datamodule`` hands them
        over so, and hands out single batches again after the fit. 1 undoes it."""
        self.steps_per_call = steps
        self.val_steps_per_call = steps if validation else 1
        self.micro_batch_size = batch_size
        self._fused_data = datamodule if steps > 1 else None

    def connect(self, model: L.LightningModule) -> None:
        if model in _SWITCHED:  # an earlier engine fit switched it: what the model declared
            _SWITCHED.discard(model)
            model.automatic_optimization = True
        super().connect(model)

    def setup(self, trainer: L.Trainer) -> None:
        super().setup(trainer)  # the optimizers exist from here on
        module = self.lightning_module
        fitting = trainer.state.fn == TrainerFn.FITTING
        reason = why_lightning_steps(module, trainer) if fitting else "not fitting"
        if reason is None and (len(self.optimizers) != 1 or self.lr_scheduler_configs):
            reason = "configure_optimizers returning several optimizers or a scheduler"
        if reason is not None and self.steps_per_call > 1 and fitting:
            raise ConfigValueError(
                f"'speed.steps_per_call={self.steps_per_call}' needs the engine to take the "
                f"optimizer steps, which {reason} rules out. Set speed.steps_per_call=1."
            )
        self.takes_steps = reason is None
        if self.takes_steps:
            module.automatic_optimization = False
            _SWITCHED.add(module)
        self.lean = fitting and self._lean_possible(trainer)

    def _lean_possible(self, trainer: L.Trainer) -> bool:
        """True when Lightning's backward and step wrappers would only dispatch hooks that
        nobody implements: the plain calls are the same computation."""
        module = self.lightning_module
        plain = (
            type(self.precision_plugin) is Precision
            and isinstance(trainer.profiler, PassThroughProfiler)
            and not overrides(module, L.LightningModule, "backward")
            and not overrides(module, L.LightningModule, "configure_gradient_clipping")
            and not trainer.gradient_clip_val
        )
        if not plain:
            return False
        listeners = [(module, L.LightningModule)] + [(c, L.Callback) for c in trainer.callbacks]
        return not any(
            overrides(one, base, hook) for hook in WRAPPER_HOOKS for one, base in listeners
        )

    def teardown(self) -> None:
        if self._fused_data is not None:  # a Trainer built by hand later gets single batches
            for name in ("steps_per_call", "val_steps_per_call"):
                setattr(self._fused_data, name, 1)
        self.fuse(1, 0, False, None)
        super().teardown()

    # -- steps --------------------------------------------------------------------------------

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        if not self.takes_steps:
            return super().training_step(*args, **kwargs)
        module = self.lightning_module
        optimizer = module.optimizers()  # Lightning's wrapper: it counts the steps
        output = None
        for part_args in self._parts(args, self.steps_per_call):

            def closure(part_args: Sequence[Any] = part_args) -> torch.Tensor | None:
                nonlocal output
                with self.precision_plugin.train_step_context():
                    output = module.training_step(*part_args, **kwargs)
                loss = output.get("loss") if isinstance(output, Mapping) else output
                self.optimizers[0].zero_grad()
                if loss is not None:
                    self.backward(loss, self.optimizers[0])
                return loss

            optimizer.step(closure=closure)
        return output

    def validation_step(self, *args: Any, **kwargs: Any) -> Any:
        output = None
        for part_args in self._parts(args, self.val_steps_per_call):
            output = super().validation_step(*part_args, **kwargs)
        return output

    def _parts(self, args: tuple[Any, ...], steps: int) -> Iterable[tuple[Any, ...]]:
        """The step's arguments, or (``steps`` > 1) one set per batch of the fused batch,
        each with the index that batch has one by one: (batch, batch_idx, ...)."""
        if steps == 1:
            return (args,)
        batch, rest = args[0], args[1:]
        parts = zip(*(tensor.split(self.micro_batch_size) for tensor in batch), strict=True)
        if not rest:
            return ((type(batch)(part),) for part in parts)
        first = rest[0] * steps
        return ((type(batch)(part), first + i, *rest[1:]) for i, part in enumerate(parts))

    def backward(
        self, closure_loss: torch.Tensor, optimizer: Any, *args: Any, **kwargs: Any
    ) -> Any:
        if not self.lean:
            return super().backward(closure_loss, optimizer, *args, **kwargs)
        closure_loss.backward(*args, **kwargs)
        return closure_loss.detach()

    def optimizer_step(
        self,
        optimizer: Any,
        closure: Callable[[], Any],
        model: Any = None,
        **kwargs: Any,
    ) -> Any:
        if not self.lean:
            return super().optimizer_step(optimizer, closure, model, **kwargs)
        return optimizer.step(closure=closure, **kwargs)
