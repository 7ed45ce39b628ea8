"""When Lightning's wrappers around ``backward`` and ``optimizer.step`` only dispatch hooks
that nobody implements, and can be skipped.

In manual optimization, ``manual_backward`` and ``LightningOptimizer.step`` pass through the
strategy and the precision plugin to call ``on_before_backward``, ``on_after_backward`` and
``on_before_optimizer_step`` on every callback and on the module, then do the plain
``loss.backward()`` and ``optimizer.step()``. Those dispatches cost ~50 us a step on this
CPU (benchmarks/step_cost.py), several percent of the book's MNIST dense-net step. With
fp32 on one device and none of those hooks overridden anywhere, they do nothing, and the
plain calls are the same computation; the step counter still advances through the
optimizer's own ``_on_before_step``/``_on_after_step``, which the manual loop installs.
Otherwise (mixed precision, several devices, a callback that inspects gradients, a profiler)
Lightning's own path runs.
"""

from __future__ import annotations

from typing import Any

#: the hooks Lightning's backward and step wrappers dispatch in manual optimization
WRAPPER_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")


def lean_step_possible(module: Any, trainer: Any) -> bool:
    """True when the plain ``loss.backward()``/``optimizer.step()`` changes nothing."""
    from lightning.pytorch.plugins.precision import Precision
    from lightning.pytorch.profilers import PassThroughProfiler
    from lightning.pytorch.strategies import SingleDeviceStrategy
    from lightning.pytorch.utilities.model_helpers import is_overridden

    if trainer is None:
        return False
    plain = (
        type(trainer.precision_plugin) is Precision
        and type(trainer.strategy) is SingleDeviceStrategy
        and isinstance(trainer.profiler, PassThroughProfiler)
        and not is_overridden("backward", module)
    )
    if not plain:
        return False
    listeners = [module, *trainer.callbacks]
    return not any(is_overridden(hook, one) for hook in WRAPPER_HOOKS for one in listeners)
