"""Densely connected networks (book ch. 2-4)."""

from __future__ import annotations

import math

from torch import nn

from pipelines.api import DropoutRate, HiddenUnits, TrainingArguments, Unpack, Width
from plugins.models.base import Classifier, scaled


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
        hidden_units: HiddenUnits = (512,),
        dropout: DropoutRate = 0.0,
        width: Width = 1.0,
        **training: Unpack[TrainingArguments],
    ) -> None:
        super().__init__(**training)
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
        self.initialise()
