"""The book's data augmentation (flip, rotation, zoom, translation), per batch on tensors.

Keras' ``RandomFlip``/``RandomRotation``/``RandomZoom``/``RandomTranslation`` layers, done as
one random affine transform per image applied with ``affine_grid``/``grid_sample``: a whole
batch costs one kernel launch on whatever device the batch is on (the GPU when there is
one), instead of a PIL round trip per sample in DataLoader workers.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch.nn import functional as F

FlipMode = Literal["horizontal", "vertical", "horizontal_and_vertical"]


class AugmentSettings(BaseModel):
    """Factors as Keras reads them.

    ``rotation``: a fraction of a full turn (0.1 -> up to +-36 degrees); ``zoom``: up to
    +-that fraction of the size; ``translation``: up to +-that fraction of height/width;
    ``fill``: how pixels outside the image are filled (Keras' default is ``reflect``).
    """

    model_config = ConfigDict(extra="forbid")

    flip: FlipMode | None = None
    rotation: float = Field(0.0, ge=0.0, le=1.0)
    zoom: float = Field(0.0, ge=0.0, lt=1.0)
    translation: float = Field(0.0, ge=0.0, le=1.0)
    fill: Literal["reflect", "zeros", "border"] = "reflect"

    @property
    def active(self) -> bool:
        return bool(self.flip or self.rotation or self.zoom or self.translation)


_PADDING = {"reflect": "reflection", "zeros": "zeros", "border": "border"}


class BatchAugmentation:
    """Random affine augmentation of an image batch ``(N, C, H, W)``."""

    def __init__(self, settings: AugmentSettings) -> None:
        self.settings = settings

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if not self.settings.active:
            return images
        theta = self.transforms(images.shape[0], images.device, images.dtype)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        return F.grid_sample(
            images,
            grid,
            mode="bilinear",
            padding_mode=_PADDING[self.settings.fill],
            align_corners=False,
        )

    def transforms(self, n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """One 2x3 matrix per image, mapping output to input coordinates in [-1, 1]."""
        s = self.settings

        def uniform(low: float, high: float) -> torch.Tensor:
            return torch.empty(n, device=device, dtype=dtype).uniform_(low, high)

        angle = uniform(-s.rotation, s.rotation) * (2 * math.pi)
        scale = uniform(1.0 - s.zoom, 1.0 + s.zoom)
        # grid coordinates span 2 units across the image, so a shift of a fraction f is 2f
        shift_x = uniform(-s.translation, s.translation) * 2
        shift_y = uniform(-s.translation, s.translation) * 2
        flip_x = torch.ones(n, device=device, dtype=dtype)
        flip_y = torch.ones(n, device=device, dtype=dtype)
        if s.flip in ("horizontal", "horizontal_and_vertical"):
            flip_x = torch.where(torch.rand(n, device=device) < 0.5, -flip_x, flip_x)
        if s.flip in ("vertical", "horizontal_and_vertical"):
            flip_y = torch.where(torch.rand(n, device=device) < 0.5, -flip_y, flip_y)
        cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
        row_x = torch.stack([cos * flip_x, -sin * flip_y, shift_x], dim=1)
        row_y = torch.stack([sin * flip_x, cos * flip_y, shift_y], dim=1)
        return torch.stack([row_x, row_y], dim=1)
