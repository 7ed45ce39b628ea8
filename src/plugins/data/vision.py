"""Image datasets as in-memory tensors, batched by index (the fast path)."""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch

from pipelines.tensor_loader import TensorBatches
from plugins.data.augment import AugmentSettings, BatchAugmentation


class InMemoryImageData(L.LightningDataModule):
    """Train/val/test image tensors (N, C, H, W) in [0, 1] with integer labels.

    Subclasses fill ``self.splits`` in :meth:`setup`; batching, shuffling, augmentation and
    the properties the model needs (``input_shape``, ``num_classes``) are shared.

    ``augment`` (the book's flip/rotation/zoom/translation, see :mod:`plugins.data.augment`)
    transforms training batches only, after they reach the model's device: on a GPU the
    augmentation runs there, and validation/test images are never touched.
    """

    def __init__(
        self, batch_size: int = 32, seed: int = 0, augment: AugmentSettings | None = None
    ) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.seed = seed
        if isinstance(augment, dict):
            augment = AugmentSettings(**augment)
        self.augmentation = BatchAugmentation(augment) if augment and augment.active else None
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.classes: list[str] = []

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

    def _batches(self, split: str, shuffle: bool) -> TensorBatches:
        images, labels = self.splits[split]
        return TensorBatches(
            images, labels, batch_size=self.batch_size, shuffle=shuffle, seed=self.seed
        )

    def train_dataloader(self) -> TensorBatches:
        return self._batches("train", shuffle=True)

    def val_dataloader(self) -> TensorBatches:
        return self._batches("val", shuffle=False)

    def test_dataloader(self) -> TensorBatches:
        return self._batches("test", shuffle=False)

    def predict_dataloader(self) -> TensorBatches:
        return self._batches("test", shuffle=False)


def stratified_split(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Indices of a seeded, stratified train/val/test split (``test_fraction`` may be 0)."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(labels))
    if test_fraction > 0:
        rest, test = train_test_split(
            indices, test_size=test_fraction, random_state=seed, stratify=labels
        )
    else:
        rest, test = indices, indices[:0]
    train, val = train_test_split(
        rest,
        test_size=val_fraction / (1.0 - test_fraction),
        random_state=seed,
        stratify=labels[rest],
    )
    return {"train": train, "val": val, "test": test}


class DigitsDataModule(InMemoryImageData):
    """scikit-learn's bundled 8x8 digits (1,797 images, 10 classes): no download, ever."""

    def __init__(
        self,
        batch_size: int = 32,
        val_fraction: float = 0.15,
        test_fraction: float = 0.2,
        seed: int = 0,
        augment: AugmentSettings | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, seed=seed, augment=augment)
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
        labels = torch.from_numpy(digits.target.astype(np.int64))
        split = stratified_split(digits.target, self.val_fraction, self.test_fraction, self.seed)
        self.splits = {name: (images[idx], labels[idx]) for name, idx in split.items()}
        self.classes = [str(c) for c in digits.target_names]
