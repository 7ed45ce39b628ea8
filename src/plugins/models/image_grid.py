"""Images (N, C, H, W) in [0, 1] as one PNG grid: what the generative models draw.

Pillow only (no display, no figure): a grid of 225 MNIST digits is written in milliseconds.
Each image keeps its own pixel size, so a 15 x 15 latent grid of 28 x 28 digits is exactly
420 x 420 pixels (with the default ``padding=0``, as the book's figure).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def image_grid(
    images: torch.Tensor | np.ndarray,
    columns: int | None = None,
    padding: int = 0,
    pad_value: float = 1.0,
) -> np.ndarray:
    """The images tiled row by row into one uint8 array (H, W) or (H, W, C).

    ``columns`` defaults to a square-ish grid (``ceil(sqrt(N))``); ``padding`` pixels of
    ``pad_value`` go between cells (not around the border); values are clipped to [0, 1].
    """
    if isinstance(images, torch.Tensor):
        images = images.detach().float().cpu().numpy()
    pixels = np.asarray(images, dtype=np.float32)
    if pixels.ndim == 3:  # (N, H, W): one channel
        pixels = pixels[:, None]
    if pixels.ndim != 4 or pixels.shape[1] not in _MODES or len(pixels) == 0:
        raise ValueError(
            f"Expected images (N, C, H, W) with N >= 1 and C in 1, 3 or 4, got {pixels.shape}."
        )
    count, channels, height, width = pixels.shape
    columns = max(1, min(columns or math.ceil(math.sqrt(count)), count))
    rows = math.ceil(count / columns)
    canvas = np.full(
        (channels, rows * height + (rows - 1) * padding, columns * width + (columns - 1) * padding),
        pad_value,
        dtype=np.float32,
    )
    for index, image in enumerate(pixels):
        top = (index // columns) * (height + padding)
        left = (index % columns) * (width + padding)
        canvas[:, top : top + height, left : left + width] = image
    grid = np.rint(np.clip(canvas, 0.0, 1.0) * 255.0).astype(np.uint8)
    return grid[0] if channels == 1 else grid.transpose(1, 2, 0)


def save_image_grid(
    images: torch.Tensor | np.ndarray,
    path: Path | str,
    columns: int | None = None,
    padding: int = 0,
    pad_value: float = 1.0,
) -> Path:
    """Write :func:`image_grid` of ``images`` as a PNG at ``path`` (folders created)."""
    from PIL import Image

    grid = image_grid(images, columns=columns, padding=padding, pad_value=pad_value)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path, format="PNG")  # uint8 (H, W[, C]): L, RGB or RGBA
    return path
