"""A small residual network of depthwise-separable convolutions (2nd ed. ch. 9, "mini
Xception"): batch norm before each convolution, a 1x1 strided projection on each residual
path, global average pooling instead of a big Dense layer."""

from __future__ import annotations

import torch
from torch import nn

from pipelines.api import (
    DropoutRate,
    KernelSize,
    LayerSize,
    LayerSizes,
    OptimizerArguments,
    Unpack,
    Width,
)
from plugins.models.base import Classifier, require_images, scaled


class SeparableConv2d(nn.Sequential):
    """A depthwise 3x3 convolution per channel, then a pointwise 1x1 mix: far fewer weights
    than a full convolution, and channels are treated as largely independent."""

    def __init__(self, channels_in: int, channels_out: int, kernel_size: int = 3) -> None:
        super().__init__(
            nn.Conv2d(channels_in, channels_in, kernel_size, padding="same",
                      groups=channels_in, bias=False),
            nn.Conv2d(channels_in, channels_out, 1, bias=False),
        )  # fmt: skip


class ResidualBlock(nn.Module):
    """[BN -> ReLU -> (Separable)Conv] x2 -> MaxPool(3, stride 2), plus a projected residual."""

    def __init__(self, channels_in: int, channels_out: int, separable: bool) -> None:
        super().__init__()

        def conv(c_in: int) -> nn.Module:
            if separable:
                return SeparableConv2d(c_in, channels_out)
            return nn.Conv2d(c_in, channels_out, 3, padding="same", bias=False)

        self.body = nn.Sequential(
            nn.BatchNorm2d(channels_in), nn.ReLU(), conv(channels_in),
            nn.BatchNorm2d(channels_out), nn.ReLU(), conv(channels_out),
            nn.MaxPool2d(3, stride=2, padding=1),
        )  # fmt: skip
        self.project = nn.Conv2d(channels_in, channels_out, 1, stride=2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.project(x)


class MiniXception(Classifier):
    """Stem conv -> residual blocks of growing width -> global average pool -> Dropout -> Dense.

    ``separable=false`` gives the same residual network with ordinary convolutions.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        sizes: LayerSizes = (32, 64, 128, 256),
        stem_filters: LayerSize = 32,
        stem_kernel: KernelSize = 5,
        separable: bool = True,
        dropout: DropoutRate = 0.5,
        width: Width = 1.0,
        **training: Unpack[OptimizerArguments],
    ) -> None:
        super().__init__(**training)
        require_images("mini_xception", input_shape)
        self.save_hyperparameters()
        (stem,) = scaled([stem_filters], width)
        layers: list[nn.Module] = [
            nn.Conv2d(input_shape[0], stem, stem_kernel, padding="same", bias=False)
        ]
        channels = stem
        for size in scaled(sizes, width):
            layers.append(ResidualBlock(channels, size, separable))
            channels = size
        layers += [nn.BatchNorm2d(channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        head: list[nn.Module] = [nn.Dropout(dropout)] if dropout > 0 else []
        self.net = nn.Sequential(*layers, *head, nn.Linear(channels, num_classes))
        self.initialise()
