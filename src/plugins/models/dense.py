"""Densely connected networks (book ch. 2-4)."""

from __future__ import annotations

import math

from torch import nn

from plugins.models.base import Classifier


class MLP(Classifier):
    """Flatten -> [Dense(units, relu) -> Dropout]* -> Dense(num_classes).

    The book's MNIST network is ``hidden_units=[512]``; smaller or bigger lists are the
    capacity knobs of ch. 4, ``dropout`` and ``weight_decay`` (L2) its regularizers.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        hidden_units: tuple[int, ...] = (512,),
        dropout: float = 0.0,
        optimizer: str = "rmsprop",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        l1: float = 0.0,
        l2: float = 0.0,
    ) -> None:
        super().__init__(optimizer=optimizer, lr=lr, weight_decay=weight_decay, l1=l1, l2=l2)
        self.save_hyperparameters()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for units in hidden_units:
            layers += [nn.Linear(width, units), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = units
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)
