"""Image datasets as in-memory tensors, batched by index (the fast path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from pipelines.api import BatchSize, ConfigValueError, Seed, TensorSplitLoaders
from plugins.data.augment import AugmentSettings, BatchAugmentation


class InMemoryImageData(TensorSplitLoaders, L.LightningDataModule):
    """Train/val/test image tensors (N, C, H, W) in [0, 1] with integer labels.

    Subclasses fill ``self.splits`` in :meth:`setup`; batching, shuffling, augmentation and
    the properties the model needs (``input_shape``, ``num_classes``) are shared.

    ``augment`` (the book's flip/rotation/zoom/translation, see :mod:`plugins.data.augment`)
    transforms training batches only, after they reach the model's device: on a GPU the
    augmentation runs there, and validation/test images are never touched.
    """

    def __init__(
        self, batch_size: BatchSize = 32, seed: Seed = 0, augment: AugmentSettings | None = None
    ) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.seed = seed
        if isinstance(augment, dict):
            augment = AugmentSettings(**augment)
        self.augmentation = BatchAugmentation(augment) if augment and augment.active else None
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.classes: list[str] = []
        #: (C, H, W) that :meth:`encode_inputs` makes, set by :meth:`prepare_to_encode`
        #: (without it, the training images' shape)
        self.encode_shape: tuple[int, int, int] | None = None

    @property
    def fused_batches_are_exact(self) -> bool:
        return self.augmentation is None

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = getattr(self, "trainer", None)
        if self.augmentation is None or trainer is None or not trainer.training:
            return batch
        images, labels = batch
        return self.augmentation(images), labels

    def model_kwargs(self) -> dict[str, Any]:
        """Model arguments implied by the data."""
        images, _ = self.splits["train"]
        return {"input_shape": tuple(images.shape[1:]), "num_classes": len(self.classes)}

    def known_classes(self) -> list[str] | None:
        """The class names by label index where they are known without reading the data
        (fixed ones, such as MNIST's digits; or what the run logged); None where only the
        data's files can tell (then ``predict`` sets the data up)."""
        return None

    def prepare_to_encode(self, model: Any) -> bool:
        """Ready :meth:`encode_inputs` and ``classes`` for ``predict`` without the training
        images: their shape is the model's ``input_shape`` (its hyper-parameters), the class
        names :meth:`known_classes`. False (set the data up instead) where either is unknown
        or the model was built for another number of classes."""
        hparams = dict(getattr(model, "hparams", None) or {})
        shape = hparams.get("input_shape")
        classes = self.known_classes()
        if classes is None or shape is None or len(shape) != 3:
            return False
        if hparams.get("num_classes") not in (None, len(classes)):
            return False
        channels, height, width = (int(size) for size in shape)
        self.encode_shape = (channels, height, width)
        self.classes = list(classes)
        return True

    def encode_inputs(self, paths: list[Path]) -> torch.Tensor:
        """Image files as the model's inputs (``python -m pipelines.predict``): grey or RGB
        as the training images, resized to their size, scaled to [0, 1] like them."""
        return torch.stack([self._decode(path) for path in paths])

    def encode_values(self, values: Any) -> torch.Tensor:
        """Images as a person holds them -- file paths or the files' bytes, as a list or a
        pandas DataFrame's ``path`` column -- encoded as :meth:`encode_inputs` does."""
        import pandas as pd

        if isinstance(values, pd.DataFrame):
            if "path" not in values.columns:
                raise ConfigValueError(
                    "An image run predicts from a DataFrame's 'path' column (image files); "
                    f"this one has {', '.join(map(repr, values.columns)) or 'no columns'}."
                )
            values = values["path"].tolist()
        elif isinstance(values, (str, bytes, Path)):
            values = [values]
        images = list(values)
        if not images:
            raise ConfigValueError("No images to predict on: give image paths or bytes.")
        return torch.stack([self._pixels(image) for image in images])

    def _pixels(self, image_source: Any) -> torch.Tensor:
        """One image (a path or the file's bytes) as a (C, H, W) tensor like the training
        images; anything else, or a file that is not an image, in one paragraph."""
        import io

        from PIL import UnidentifiedImageError

        if isinstance(image_source, (bytes, bytearray)):
            source: Any = io.BytesIO(image_source)
            name = f"the {len(image_source)} bytes given"
        elif isinstance(image_source, (str, Path)):
            source = name = str(image_source)
            if not Path(source).is_file():
                raise ConfigValueError(
                    f"{source[:80]!r} is not an image file: an image run predicts from image "
                    "files (their paths) or their bytes, not text."
                )
        else:
            raise ConfigValueError(
                f"An image run predicts from image file paths or bytes, got "
                f"{type(image_source).__name__}."
            )
        try:
            return self._decode(source)
        except (UnidentifiedImageError, OSError) as exc:
            raise ConfigValueError(
                f"{name} cannot be decoded as an image ({exc}): give PNG, JPEG or another "
                "format Pillow reads."
            ) from None

    def _decode(self, source: Any) -> torch.Tensor:
        """An image file (or file object) as a (C, H, W) tensor in [0, 1]: grey or RGB as
        the training images, resized to their size."""
        from PIL import Image

        channels, height, width = self.encode_shape or self.splits["train"][0].shape[1:]
        with Image.open(source) as image:
            mode = "L" if channels == 1 else "RGB"
            resized = image.convert(mode).resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(resized, dtype=np.float32) / 255.0
        return torch.from_numpy(pixels.reshape(height, width, channels)).permute(2, 0, 1)


def check_split_fractions(val_fraction: float, test_fraction: float, items: str) -> None:
    """Each fraction in [0, 1) and some ``items`` (images, texts) left to train on."""
    for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ConfigValueError(f"'data.{key}' must be at least 0 and below 1, got {value}.")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigValueError(
            f"'data.val_fraction' + 'data.test_fraction' ({val_fraction} + {test_fraction}) "
            f"leave no training {items}: keep their sum below 1."
        )


def stratified_split(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Indices of a seeded, stratified train/val/test split (either fraction may be 0)."""
    check_split_fractions(val_fraction, test_fraction, "images")
    indices = np.arange(len(labels))
    if test_fraction > 0:
        rest, test = _stratified(indices, labels, test_fraction, seed, "data.test_fraction")
    else:
        rest, test = indices, indices[:0]
    if val_fraction == 0:
        return {"train": rest, "val": rest[:0], "test": test}
    train, val = _stratified(
        rest, labels, val_fraction / (1.0 - test_fraction), seed, "data.val_fraction"
    )
    return {"train": train, "val": val, "test": test}


def _stratified(
    indices: np.ndarray, labels: np.ndarray, fraction: float, seed: int, key: str
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` in two, every class in both parts, or say which setting to change."""
    from sklearn.model_selection import train_test_split

    try:
        return tuple(  # type: ignore[return-value]
            train_test_split(
                indices, test_size=fraction, random_state=seed, stratify=labels[indices]
            )
        )
    except ValueError as exc:
        classes = len(np.unique(labels[indices]))
        raise ConfigValueError(
            f"Cannot split {len(indices)} images of {classes} classes with '{key}'={fraction:.3g} "
            f"so that every class is on both sides ({exc}). Use more data (e.g. a larger "
            f"`data.train_limit`) or a larger `{key}`, so the split holds at least one image "
            "per class."
        ) from None


def select_classes(
    images: np.ndarray, labels: np.ndarray, keep: list[int] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Only the samples of the ``keep`` labels, re-indexed 0..k-1 in the order given."""
    if not keep:
        return images, labels
    mask = np.isin(labels, keep)
    remap = np.full(max(keep) + 1, -1, dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    return images[mask], remap[labels[mask]]


def image_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, H, W) or (N, C, H, W) as float32 (N, C, H, W) in [0, 1]; int64 labels."""
    pixels = images.astype(np.float32)
    pixels /= 255.0
    if pixels.ndim == 3:
        pixels = pixels[:, None]
    return torch.from_numpy(pixels), torch.from_numpy(labels.astype(np.int64))


class DigitsDataModule(InMemoryImageData):
    """scikit-learn's bundled 8x8 digits (1,797 images, 10 classes): no download, ever.

    ``image_size`` upsamples them (bilinear) for networks built for bigger inputs, with a
    black ``margin`` on each side: ``image_size=28, margin=4`` puts a 20x20 digit in a 28x28
    frame, as MNIST does -- a small, shifted target domain for a network trained on MNIST.
    ``train_limit`` keeps only that many training images (a stratified subset) for
    few-label experiments; validation and test stay as they are.
    """

    def __init__(
        self,
        batch_size: BatchSize = 32,
        val_fraction: float = 0.15,
        test_fraction: float = 0.2,
        seed: Seed = 0,
        augment: AugmentSettings | None = None,
        image_size: int | None = None,
        margin: int = 0,
        train_limit: int | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, seed=seed, augment=augment)
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.image_size = image_size
        self.margin = margin
        self.train_limit = train_limit

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
        if self.image_size:
            images = self._resize(images)
        labels = torch.from_numpy(digits.target.astype(np.int64))
        split = stratified_split(digits.target, self.val_fraction, self.test_fraction, self.seed)
        if self.train_limit and self.train_limit < len(split["train"]):
            split["train"] = limit_stratified(
                split["train"], digits.target, self.train_limit, self.seed
            )
        self.splits = {name: (images[idx], labels[idx]) for name, idx in split.items()}
        self.classes = [str(c) for c in digits.target_names]

    def known_classes(self) -> list[str] | None:
        return [str(digit) for digit in range(10)]  # load_digits' target_names

    def _resize(self, images: torch.Tensor) -> torch.Tensor:
        from torch.nn import functional as F

        inner = self.image_size - 2 * self.margin
        if inner < 1:
            raise ConfigValueError(
                f"'data.margin' ({self.margin}) leaves no room in 'data.image_size' "
                f"({self.image_size}): use a margin below {self.image_size // 2}."
            )
        resized = F.interpolate(images, size=(inner, inner), mode="bilinear", align_corners=False)
        return F.pad(resized.clamp(0.0, 1.0), [self.margin] * 4)


def limit_stratified(indices: np.ndarray, labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """A seeded, stratified subset of ``limit`` of ``indices`` (every class kept if possible)."""
    from sklearn.model_selection import train_test_split

    kept, _ = train_test_split(
        indices, train_size=limit, random_state=seed, stratify=labels[indices]
    )
    return np.sort(kept)
