"""Image files streamed from disk: decoded per sample in ``DataLoader`` worker processes.

The other path of :class:`plugins.data.image_folder.ImageFolderDataModule`: for a
folder whose decoded pixels would not fit ``data.memory_budget``. Each sample is decoded as
the in-memory path decodes it (the same function: size, colour mode, resampling) and scaled
to float32 in [0, 1] the same way, so a batch holds the very numbers the in-memory path
slices; training batches come in the same seeded order (``randperm(seed + epoch)``), and
under DDP each rank reads the same shard of it as the in-memory path's rank would
(:class:`SeededPermutation`). The loader draws nothing from torch's global random numbers,
so augmentation and dropout draw what they draw on the in-memory path.

A file that cannot be decoded is not raised in the worker (the ``DataLoader`` would wrap it
in the worker's traceback): the worker hands back a :class:`DecodeFailures` batch instead,
and :class:`StreamedBatches` raises it in the main process as one paragraph naming the files.

The workers persist from one pass to the next (starting them costs each pass, training
and validation, the time to fork and fill the queues again) and end when the data module's
``teardown`` closes the loader, or when the loader is dropped: see :class:`StreamedBatches`
for why they are kept in :data:`_OPEN` until then.
"""

from __future__ import annotations

import itertools
import math
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from pipelines.api import DataNotFoundError, PipelineError, shard_order


class Failed:
    """A sample whose file could not be decoded (``why``), read (``why`` None: permission
    denied) or found (``missing``: deleted or moved since the folder was listed)."""

    def __init__(self, path: Path, why: str | None, missing: bool = False) -> None:
        self.path = path
        self.why = why
        self.missing = missing


class DecodeFailures:
    """A batch in which some files failed: raised in the main process, not in the worker."""

    def __init__(self, failed: list[Failed]) -> None:
        self.failed = failed


class ImageFiles(Dataset):
    """``(image, label)`` per file: decoded with ``decode`` (``(path, size, color_mode)`` ->
    uint8 ``(H, W, C)``), as float32 ``(C, H, W)`` in [0, 1]."""

    def __init__(
        self,
        paths: Sequence[Path],
        labels: Sequence[int],
        size: tuple[int, int],
        color_mode: str,
        decode: Callable[..., np.ndarray],
    ) -> None:
        self.paths = list(paths)
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        self.size = size
        self.color_mode = color_mode
        self.decode = decode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | Failed:
        path = self.paths[index]
        try:
            pixels = self.decode(path, self.size, self.color_mode)
        except FileNotFoundError:
            return Failed(path, None, missing=True)
        except PermissionError:
            return Failed(path, None)
        except Exception as exc:  # any decoder error means the file is not a usable image
            return Failed(path, f"{type(exc).__name__}: {exc}")
        # as the in-memory path: uint8 (C, H, W), then .float().div_(255.0)
        image = torch.from_numpy(np.array(pixels.transpose(2, 0, 1), order="C"))  # a copy
        return image.float().div_(255.0), self.labels[index]


def collate(samples: list[Any]) -> Any:
    """Stack the samples, or hand back the failed ones as one :class:`DecodeFailures`."""
    failed = [sample for sample in samples if isinstance(sample, Failed)]
    if failed:
        return DecodeFailures(failed)
    return default_collate(samples)


class SeededPermutation(Sampler):
    """The training order of the in-memory path (``TensorBatches``): ``randperm`` seeded
    ``seed + epoch`` (``shuffle``; else the files in order), and under DDP this rank's shard
    of it: the same permutation on every rank, padded by repeating its start to a multiple
    of ``world_size`` (as torch's ``DistributedSampler`` pads), every ``world_size``-th
    index from ``rank`` on. One epoch over all ranks reads every file, once each but for
    the padding.

    Lightning calls :meth:`set_epoch` before every epoch (a resumed run sees the order an
    uninterrupted one would); without it the epoch counts up by itself."""

    def __init__(
        self, count: int, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1
    ) -> None:
        if not 0 <= rank < max(1, world_size):
            raise ValueError(f"rank {rank} is not one of world size {world_size}'s")
        self.count = count
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = max(1, world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.count / self.world_size)

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.count, generator=generator)
        else:
            order = torch.arange(self.count)
        self.epoch += 1
        order = shard_order(order, self.rank, self.world_size)
        return iter(order.tolist())


#: the open loaders of live :class:`StreamedBatches`, by key (see there)
_OPEN: dict[int, DataLoader] = {}
_KEYS = itertools.count()


class StreamedBatches:
    """Batches of ``dataset`` from worker processes, failures raised as one paragraph
    (``describe(failed)`` writes it). Lightning takes any iterable with ``__len__``; its
    ``sampler`` is what Lightning sets the epoch on.

    With ``persistent_workers`` the workers outlive each pass and end with :meth:`close`
    (the data module's ``teardown``) or when this object is collected. Their loader is held
    in the module's :data:`_OPEN`, not here, and dropped by a ``weakref.finalize`` of this
    object. A loader collected as part of a reference cycle (this object is one, through
    Lightning's trainer) has its worker queues finalized before its own shutdown runs, whose
    stop message then never reaches the workers: torch waits out its join timeout, 5 s a
    worker. Held outside the cycle, the loader and its queues are alive when the finalizer
    drops it, and the workers end at once.
    """

    batch_sampler = None

    def __init__(
        self,
        dataset: ImageFiles,
        batch_size: int,
        shuffle: bool,
        seed: int,
        num_workers: int,
        pin_memory: bool,
        describe: Callable[[list[Failed]], str],
        rank: int = 0,
        world_size: int = 1,
        persistent_workers: bool = True,
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.describe = describe
        sharded = world_size > 1
        self.sampler = (
            SeededPermutation(len(dataset), seed, shuffle, rank, world_size)
            if shuffle or sharded
            else None
        )
        self._key = next(_KEYS)
        weakref.finalize(self, _OPEN.pop, self._key, None)

    @property
    def loader(self) -> DataLoader:
        """The ``DataLoader`` (made on first use, and again after :meth:`close`)."""
        loader = _OPEN.get(self._key)
        if loader is None:
            loader = _OPEN[self._key] = DataLoader(
                self.dataset,
                batch_size=self.batch_size,
                sampler=self.sampler,
                num_workers=self.num_workers,
                persistent_workers=self.persistent_workers,
                pin_memory=self.pin_memory,
                collate_fn=collate,
                # the workers' base seed from a generator of its own, not torch's global
                # one: a draw there would move the run's dropout and augmentation
                generator=torch.Generator().manual_seed(self.seed),
            )
        return loader

    def close(self) -> None:
        """End the workers now (they start again if this is iterated again)."""
        _OPEN.pop(self._key, None)

    def __len__(self) -> int:
        samples = len(self.sampler) if self.sampler is not None else len(self.dataset)
        return math.ceil(samples / self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        batches = iter(self.loader)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except RuntimeError as exc:
                if not str(exc).startswith("DataLoader worker"):
                    raise
                self.close()
                raise PipelineError(_worker_died(exc, self.num_workers)) from None
            if isinstance(batch, DecodeFailures):
                raise DataNotFoundError(self.describe(batch.failed))
            yield batch


def _worker_died(exc: RuntimeError, workers: int) -> str:
    """A decoding process that died (killed by a signal, or out of memory): one paragraph."""
    why = str(exc).strip().splitlines()[0].rstrip(".")
    return (
        f"A process decoding the streamed images ended unexpectedly ({why}). It was most "
        "likely killed for lack of memory: lower `data.num_workers` (now "
        f"{workers}) or `data.batch_size`, or set `data.num_workers=0` to decode in the "
        "training process."
    )
