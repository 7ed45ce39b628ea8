"""The optimizers a built-in model can name (``model.optimizer``), and Keras' RMSprop.

``keras_rmsprop`` is Keras' ``rmsprop`` exactly, the optimizer behind the book's figures:
``v = rho * v + (1 - rho) * g^2``, ``w -= lr * g / sqrt(v + epsilon)``, with ``rho=0.9``
and ``epsilon=1e-7``. ``torch.optim.RMSprop`` with the same numbers is not the same
optimizer: it adds epsilon *outside* the square root, so a weight whose gradient is nearly
always zero (a rare word's input weight in a multi-hot bag, a rare character's) takes steps
up to ~3,000 times larger. On the book's IMDB net that cost 2.5 points of accuracy against
the book's code (benchmarks/book_parity.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

import torch

from pipelines.api import ConfigValueError, did_you_mean


class KerasRMSprop(torch.optim.Optimizer):
    """Keras 3's ``keras.optimizers.RMSprop`` (``momentum=0``, ``centered=False``).

    ``weight_decay`` is Keras' decoupled decay (``w -= lr * weight_decay * w`` before each
    update), not torch's L2 term added to the gradient.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        rho: float = 0.9,
        eps: float = 1e-7,
        weight_decay: float = 0.0,
    ) -> None:
        for name, value in (("lr", lr), ("eps", eps), ("weight_decay", weight_decay)):
            if value < 0:
                raise ConfigValueError(f"KerasRMSprop's '{name}' must be at least 0, got {value}.")
        if not 0.0 <= rho < 1.0:
            raise ConfigValueError(f"KerasRMSprop's 'rho' must be in [0, 1), got {rho}.")
        super().__init__(params, {"lr": lr, "rho": rho, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, rho, eps, decay = group["lr"], group["rho"], group["eps"], group["weight_decay"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                state = self.state[param]
                if not state:
                    state["square_avg"] = torch.zeros_like(param)
                square_avg = state["square_avg"]
                square_avg.mul_(rho).addcmul_(grad, grad, value=1.0 - rho)
                if decay:
                    param.mul_(1.0 - lr * decay)
                param.addcdiv_(grad, square_avg.add(eps).sqrt_(), value=-lr)
        return loss


OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "rmsprop": torch.optim.RMSprop,
    "keras_rmsprop": KerasRMSprop,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}


def check_optimizer(optimizer: str, optimizer_args: dict[str, Any] | None) -> dict[str, Any]:
    """The ``model.optimizer`` name known and ``model.optimizer_args`` keys its constructor
    takes, or one paragraph naming the fix; returns the extra arguments (a plain dict)."""
    if optimizer not in OPTIMIZERS:
        raise ConfigValueError(
            f"Unknown optimizer '{optimizer}' in 'model.optimizer'."
            f"{did_you_mean(optimizer, OPTIMIZERS)} Known: {', '.join(sorted(OPTIMIZERS))}."
        )
    extra = dict(optimizer_args or {})
    factory = OPTIMIZERS[optimizer]
    accepted = set(inspect.signature(factory).parameters) - {"params", "lr", "weight_decay"}
    for key in extra:
        if key in ("lr", "weight_decay"):
            raise ConfigValueError(
                f"'model.optimizer_args.{key}' repeats a model setting: set `model.{key}`."
            )
        if key not in accepted:
            raise ConfigValueError(
                f"'model.optimizer_args' has '{key}', which the '{optimizer}' optimizer "
                f"({factory.__name__}) does not take.{did_you_mean(key, accepted)} It takes: "
                f"{', '.join(sorted(accepted))}."
            )
    return extra
