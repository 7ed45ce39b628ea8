"""Convolutional networks (book ch. 5 / 2nd ed. ch. 8)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from pipelines.api import (
    DropoutRate,
    KernelSize,
    LayerSizes,
    OptimizerArguments,
    Unpack,
    Width,
)
from plugins.models.base import Classifier, require_images, scaled


class ConvNet(Classifier):
    """[Conv2D(f, k, relu) -> MaxPool(2)]* (no pool after the last block) -> Flatten -> Dense.

    ``padding="same"`` keeps small inputs (8x8 digits) from shrinking to nothing; the book's
    ``"valid"`` works for 28x28 and larger. The flattened size is measured with a dummy
    forward pass, so any input size that survives the blocks works.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        filters: LayerSizes = (32, 64, 128),
        kernel_size: KernelSize = 3,
        padding: Literal["same", "valid"] = "same",
        dropout: DropoutRate = 0.0,
        width: Width = 1.0,
        **training: Unpack[OptimizerArguments],
    ) -> None:
        super().__init__(**training)
        self.save_hyperparameters()
        require_images("convnet", input_shape)
        channels = input_shape[0]
        layers: list[nn.Module] = []
        for index, size in enumerate(scaled(filters, width)):
            layers += [nn.Conv2d(channels, size, kernel_size, padding=padding), nn.ReLU()]
            if index < len(filters) - 1:
                layers.append(nn.MaxPool2d(2))
            channels = size
        layers.append(nn.Flatten())
        features = nn.Sequential(*layers)
        with torch.no_grad():
            flat = features(torch.zeros(1, *input_shape)).shape[1]
        head: list[nn.Module] = [nn.Dropout(dropout)] if dropout > 0 else []
        head.append(nn.Linear(flat, num_classes))
        self.net = nn.Sequential(features, *head)
        self.initialise()
