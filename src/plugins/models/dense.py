"""Densely connected networks (book ch. 2-4)."""

from __future__ import annotations

import math

from torch import nn

from plugins.models.base import Classifier, Task, scaled


class MLP(Classifier):
    """Flatten -> [Dense(units, relu) -> Dropout]* -> Dense(num_classes).

    The book's MNIST network is ``hidden_units=[512]``; smaller or bigger lists (or ``width``,
    a multiplier of every size) are the capacity knobs of ch. 4, ``dropout`` and ``l2`` its
    regularizers.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        hidden_units: tuple[int, ...] = (512,),
        dropout: float = 0.0,
        width: float = 1.0,
        optimizer: str = "rmsprop",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        l1: float = 0.0,
        l2: float = 0.0,
        task: Task = "classification",
        target_scale: float = 1.0,
    ) -> None:
        super().__init__(
            optimizer=optimizer,
            lr=lr,
            weight_decay=weight_decay,
            l1=l1,
            l2=l2,
            task=task,
            target_scale=target_scale,
        )
        self.save_hyperparameters()
        layers: list[nn.Module] = [nn.Flatten()]
        features = math.prod(input_shape)
        for units in scaled(hidden_units, width):
            layers += [nn.Linear(features, units), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            features = units
        layers.append(nn.Linear(features, num_classes))
        self.net = nn.Sequential(*layers)
