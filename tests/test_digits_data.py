"""The embedded digits: seeded splits, MNIST-style upsampling, few-label subsets, split errors."""

from __future__ import annotations

import pytest
import torch

from pipelines.errors import ConfigValueError
from plugins.data.vision import DigitsDataModule


def splits(**kwargs) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    data = DigitsDataModule(seed=7, **kwargs)
    data.setup()
    return data.splits


def test_default_split_sizes_and_reproducibility() -> None:
    first, again = splits(), splits()
    assert {k: len(v[1]) for k, v in first.items()} == {"train": 1167, "val": 270, "test": 360}
    assert all(torch.equal(first[k][0], again[k][0]) for k in first), "same seed, same split"


def test_upsampled_into_an_mnist_frame() -> None:
    images = splits(image_size=28, margin=4)["train"][0]
    assert images.shape[1:] == (1, 28, 28)
    assert images[..., :4, :].abs().max() == 0 and images[..., :, -4:].abs().max() == 0
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert float(images[..., 4:24, 4:24].mean()) > 0.1, "the digit fills the inner 20x20"


def test_train_limit_is_stratified_and_leaves_val_and_test_alone() -> None:
    full, few = splits(), splits(train_limit=50)
    assert few["train"][1].bincount().tolist() == [5] * 10
    assert torch.equal(few["test"][0], full["test"][0])
    assert torch.equal(few["val"][0], full["val"][0])


def test_margin_too_large_is_a_clear_error() -> None:
    with pytest.raises(ConfigValueError, match=r"data\.margin"):
        splits(image_size=8, margin=4)


def test_split_too_small_for_every_class_names_the_setting() -> None:
    with pytest.raises(ConfigValueError, match=r"data\.val_fraction"):
        splits(val_fraction=0.001)


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"val_fraction": 0.9}, "(0.9 + 0.2) leave no training images"),
        ({"test_fraction": 1.0}, "'data.test_fraction' must be at least 0 and below 1"),
    ],
)
def test_fractions_that_leave_no_training_data_name_both_settings(
    settings: dict, fragment: str
) -> None:
    with pytest.raises(ConfigValueError) as error:
        DigitsDataModule(**settings).setup()
    assert fragment in str(error.value)
