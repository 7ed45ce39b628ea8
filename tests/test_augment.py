"""Per-batch augmentation: what each transform does, and that only training batches change."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from pydantic import ValidationError

from plugins.data.augment import AugmentSettings, BatchAugmentation
from plugins.data.vision import DigitsDataModule


def asymmetric_batch(n: int = 64, size: int = 12) -> torch.Tensor:
    """Images whose left half is bright: a horizontal flip is easy to recognise."""
    images = torch.zeros(n, 1, size, size)
    images[..., : size // 2] = 1.0
    return images


def test_inactive_settings_leave_images_alone() -> None:
    images = torch.rand(4, 3, 8, 8)
    assert BatchAugmentation(AugmentSettings())(images) is images


def test_horizontal_flip_mirrors_about_half_the_images() -> None:
    torch.manual_seed(0)
    images = asymmetric_batch()
    out = BatchAugmentation(AugmentSettings(flip="horizontal"))(images)
    mirrored = torch.flip(images, dims=[3])
    kept = [torch.allclose(o, i, atol=1e-5) for o, i in zip(out, images, strict=True)]
    flipped = [torch.allclose(o, m, atol=1e-5) for o, m in zip(out, mirrored, strict=True)]
    assert all(k or f for k, f in zip(kept, flipped, strict=True)), "only exact flips"
    assert 16 < sum(flipped) < 48, "each image flips with probability 1/2"


def test_transforms_stay_within_the_configured_ranges() -> None:
    torch.manual_seed(0)
    settings = AugmentSettings(rotation=0.1, zoom=0.2, translation=0.1)
    theta = BatchAugmentation(settings).transforms(2000, torch.device("cpu"), torch.float32)
    scale = torch.linalg.det(theta[:, :, :2]).sqrt()  # rotation keeps the determinant
    angle = torch.atan2(theta[:, 1, 0], theta[:, 0, 0]).abs()
    assert scale.min() >= 0.8 - 1e-4 and scale.max() <= 1.2 + 1e-4
    assert angle.max() <= 0.1 * 2 * torch.pi + 1e-4 and angle.max() > 0.5
    assert theta[:, :, 2].abs().max() <= 0.2 + 1e-6, "shift of 10% = 0.2 grid units"


def test_translation_moves_content_and_fills_with_zeros() -> None:
    torch.manual_seed(1)
    images = torch.zeros(32, 1, 20, 20)
    images[:, :, 8:12, 8:12] = 1.0
    out = BatchAugmentation(AugmentSettings(translation=0.2, fill="zeros"))(images)
    centres = [torch.nonzero(o[0] > 0.5).float().mean(dim=0) for o in out]
    moved = [float((c - 9.5).abs().max()) for c in centres]
    assert max(moved) > 1.0 and max(moved) <= 4.5, "moved by up to 20% of 20 px"
    assert out.sum(dim=(1, 2, 3)).sub(16).abs().max() < 1.0, "content kept, no new mass"


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValidationError):
        AugmentSettings(rotation=2.0)
    with pytest.raises(ValidationError):
        AugmentSettings(flip="sideways")  # type: ignore[arg-type]


@pytest.mark.parametrize("training", [True, False])
def test_data_module_augments_training_batches_only(training: bool) -> None:
    data = DigitsDataModule(augment={"flip": "horizontal", "rotation": 0.1})
    data.trainer = SimpleNamespace(training=training)  # type: ignore[assignment]
    images, labels = torch.rand(8, 1, 8, 8), torch.arange(8)
    out_images, out_labels = data.on_after_batch_transfer((images, labels), 0)
    assert out_labels is labels
    assert torch.equal(out_images, images) is (not training)
