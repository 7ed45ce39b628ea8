"""In-memory batching by index."""

from __future__ import annotations

import pytest
import torch

from pipelines.training.tensor_loader import TensorBatches


def test_every_sample_once_per_epoch_in_order_without_shuffle() -> None:
    x = torch.arange(10)
    batches = TensorBatches(x, x * 2, batch_size=4)
    assert len(batches) == 3
    seen = [b for b in batches]
    assert [len(b[0]) for b in seen] == [4, 4, 2]
    assert torch.equal(torch.cat([b[0] for b in seen]), x)
    assert all(torch.equal(b[1], b[0] * 2) for b in seen), "tensors stay aligned"


def test_shuffle_is_seeded_and_changes_per_epoch() -> None:
    x = torch.arange(100)
    first = TensorBatches(x, batch_size=10, shuffle=True, seed=7)
    second = TensorBatches(x, batch_size=10, shuffle=True, seed=7)
    epoch1 = torch.cat([b[0] for b in first])
    assert torch.equal(epoch1, torch.cat([b[0] for b in second])), "same seed, same order"
    assert not torch.equal(epoch1, x)
    assert torch.equal(epoch1.sort().values, x), "a permutation"
    epoch2 = torch.cat([b[0] for b in first])
    assert not torch.equal(epoch1, epoch2), "a new order each epoch"


def test_drop_last() -> None:
    batches = TensorBatches(torch.arange(10), batch_size=4, drop_last=True)
    assert len(batches) == 2 and sum(len(b[0]) for b in batches) == 8


def test_mismatched_lengths_rejected() -> None:
    with pytest.raises(ValueError, match="first dimension"):
        TensorBatches(torch.zeros(3), torch.zeros(4), batch_size=2)
