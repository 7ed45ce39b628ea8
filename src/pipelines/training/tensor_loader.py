"""Batches from in-memory tensors by index: the fast path for datasets that fit in memory.

A ``DataLoader`` over a ``TensorDataset`` indexes one sample at a time and collates, which
costs about 1.8x a hand-written loop on the book's MNIST dense net; slicing whole batches
out of the tensors brings Lightning to about 1.1x.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator
from typing import Any

import torch

log = logging.getLogger(__name__)


class FollowsTrainerEpoch:
    """For batch iterables shuffled by ``seed + epoch``: the epoch is the trainer's.

    Lightning calls ``dataloader.sampler.set_epoch(epoch)`` before every epoch. Being their
    own sampler, these iterables shuffle as the trainer's epoch says, so a resumed run sees
    the same order an uninterrupted one would have.
    """

    epoch: int = 0
    #: read next to ``sampler`` by Lightning's DataLoader checks: there is none
    batch_sampler = None

    @property
    def sampler(self) -> FollowsTrainerEpoch:
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


class TensorBatches(FollowsTrainerEpoch):
    """An iterable of batches over tensors sharing their first dimension.

    Shuffling is seeded and changes every epoch (``seed + epoch``), so runs are repeatable.
    Lightning accepts any iterable with ``__len__`` as a dataloader.
    """

    def __init__(
        self,
        *tensors: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        batches_per_call: int = 1,
    ) -> None:
        """``batches_per_call`` > 1: each batch of ``batch_size`` is that many batches handed
        over at once (``speed.steps_per_call``), which the engine's strategy cuts apart
        (:mod:`pipelines.speed.fast_steps`)."""
        if not tensors:
            raise ValueError("TensorBatches needs at least one tensor")
        size = tensors[0].shape[0]
        if any(t.shape[0] != size for t in tensors):
            raise ValueError("all tensors must have the same first dimension")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = max(1, world_size)
        self.batches_per_call = batches_per_call
        self.epoch = 0

    def _shard_size(self) -> int:
        # every rank gets the same number of samples (DistributedSampler's padding)
        return math.ceil(self.tensors[0].shape[0] / self.world_size)

    def __len__(self) -> int:
        return self._count(self.batch_size)

    @property
    def unfused_batches(self) -> int:
        """How many batches the model sees (``len`` counts the calls that hand them over)."""
        return self._count(self.batch_size // self.batches_per_call)

    def _count(self, batch_size: int) -> int:
        size = self._shard_size()
        if self.drop_last:
            return size // batch_size
        return math.ceil(size / batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        total = self.tensors[0].shape[0]
        size = self._shard_size()
        order = None
        if self.shuffle:
            # the same permutation on every rank (same seed), then each takes its own shard
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(total, generator=generator).to(self.tensors[0].device)
        if self.world_size > 1:
            if order is None:
                order = torch.arange(total, device=self.tensors[0].device)
            order = shard_order(order, self.rank, self.world_size)
        self.epoch += 1
        for batch in range(len(self)):
            start = batch * self.batch_size
            stop = min(start + self.batch_size, size)
            if order is None:
                yield tuple(t[start:stop] for t in self.tensors)
            else:
                index = order[start:stop]
                yield tuple(t[index] for t in self.tensors)


class SplitLoaders:
    """Lightning's four dataloader hooks over ``self._batches(split, shuffle)``.

    Training batches are shuffled, validation and test are not, prediction runs on test.
    A data module mixes this in (before ``LightningDataModule``) and says how a split
    becomes batches: tensors sliced by index, windows gathered from a series or a text.
    """

    def _batches(self, split: str, shuffle: bool) -> Any:
        raise NotImplementedError

    def train_dataloader(self) -> Any:
        return self._batches("train", shuffle=True)

    def val_dataloader(self) -> Any:
        return self._batches("val", shuffle=False)

    def test_dataloader(self) -> Any:
        return self._batches("test", shuffle=False)

    def predict_dataloader(self) -> Any:
        return self._batches("test", shuffle=False)


def no_validation_data(items: str) -> list:
    """The validation loader of data with no validation split (``data.val_fraction=0``, as
    the book trains its final models on every training item): an empty list, which
    Lightning skips. Says so once in the log instead of Lightning's warnings about an
    empty loader and an unmonitored checkpoint; the fit stage then keeps the final weights,
    which ``test`` evaluates."""
    warnings.filterwarnings("ignore", message=r".*Total length of `list` across ranks is zero.*")
    warnings.filterwarnings(
        "ignore", message=r"`ModelCheckpoint\(monitor='val/.*could not find the monitored key"
    )
    log.info(
        "no validation %s (data.val_fraction=0): training on every training item, the final "
        "weights are tested",
        items,
    )
    return []


class TensorSplitLoaders(SplitLoaders):
    """:class:`SplitLoaders` over ``self.splits`` (``name -> (inputs, targets)``).

    Mixed into every in-memory data module (images, text, tables), which only fill
    ``splits`` and set ``batch_size`` and ``seed``; training batches are shuffled per epoch.
    Under distributed training each rank trains on its own shard of every epoch; validation
    and test run whole on every rank, so their metrics are exact and identical everywhere
    without any cross-rank reduction (in-memory splits are small enough for that).
    """

    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]
    batch_size: int
    seed: int
    #: training batches handed over at once (speed.steps_per_call; the engine cuts them apart)
    steps_per_call: int = 1
    #: validation batches handed over at once (the same, where the model allows it):
    #: Lightning's evaluation loop costs ~0.2 ms a batch here, as much as validating one
    val_steps_per_call: int = 1

    @property
    def fused_batches_are_exact(self) -> bool:
        """Whether N batches handed over at once reach the model exactly as N single ones
        would: true unless the data transforms each batch at random (augmentation draws
        its random numbers per batch, so fused batches would draw them in another order)."""
        return True

    def val_dataloader(self) -> Any:
        if len(self.splits["val"][1]) == 0:
            return no_validation_data("items")
        return super().val_dataloader()

    def move_splits_to(self, device: torch.device) -> None:
        """Keep every split on ``device`` (the GPU): batches are then sliced there, with no
        host-to-device copy per step. Images go channels_last on a GPU, as the models do."""
        moved = {}
        for split, (inputs, targets) in self.splits.items():
            if inputs.ndim == 4 and device.type == "cuda":
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            moved[split] = (inputs.to(device), targets.to(device))
        self.splits = moved

    def _batches(self, split: str, shuffle: bool) -> TensorBatches:
        inputs, targets = self.splits[split]
        rank, world_size = distributed_shard(split)
        per_call = self._batches_per_call(split)
        return TensorBatches(
            inputs,
            targets,
            batch_size=self.batch_size * per_call,
            shuffle=shuffle,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
            batches_per_call=per_call,
        )

    def _batches_per_call(self, split: str) -> int:
        fused = {"train": self.steps_per_call, "val": self.val_steps_per_call}
        return fused.get(split, 1)


def shard_order(order: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This rank's part of ``order`` (sample indices, the same on every rank): ``order``
    padded by repeating its start to a multiple of ``world_size``, as torch's
    ``DistributedSampler`` pads, then every ``world_size``-th index from ``rank`` on. All
    ranks together read every index, once each but for the padding."""
    if world_size <= 1 or len(order) == 0:
        return order
    size = math.ceil(len(order) / world_size)
    padded = order.repeat(math.ceil(size * world_size / len(order)))
    return padded[: size * world_size][rank::world_size]


def distributed_shard(split: str) -> tuple[int, int]:
    """(rank, world size) to shard ``split`` by: the running process group's for training;
    (0, 1) outside distributed training and for validation and test, which every rank reads
    whole (their metrics exact and the same on every rank, with no reduction)."""
    import torch.distributed as dist

    if split == "train" and dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
