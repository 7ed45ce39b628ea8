"""Image files streamed from disk: decoded per sample in ``DataLoader`` worker processes.

The other path of :class:`plugins.data.image_folder.ImageFolderDataModule` (issue 23): for a
folder whose decoded pixels would not fit ``data.memory_budget``. Each sample is decoded as
the in-memory path decodes it (the same function: size, colour mode, resampling) and scaled
to float32 in [0, 1] the same way, so a batch holds the very numbers the in-memory path
slices; training batches come in the same seeded order (``randperm(seed + epoch)``).

A file that cannot be decoded is not raised in the worker (the ``DataLoader`` would wrap it
in the worker's traceback): the worker hands back a :class:`DecodeFailures` batch instead,
and :class:`StreamedBatches` raises it in the main process as one paragraph naming the files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from pipelines.api import DataNotFoundError


class Failed:
    """A sample whose file could not be read (``why`` None: permission denied)."""

    def __init__(self, path: Path, why: str | None) -> None:
        self.path = path
        self.why = why


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
    """The training order of the in-memory path: ``randperm`` seeded ``seed + epoch``.

    Lightning calls :meth:`set_epoch` before every epoch (a resumed run sees the order an
    uninterrupted one would); without it the epoch counts up by itself."""

    def __init__(self, count: int, seed: int) -> None:
        self.count = count
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        return iter(torch.randperm(self.count, generator=generator).tolist())


class StreamedBatches:
    """Batches of ``dataset`` from worker processes, failures raised as one paragraph
    (``describe(failed)`` writes it). Lightning takes any iterable with ``__len__``; its
    ``sampler`` is what Lightning sets the epoch on."""

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
    ) -> None:
        self.sampler = SeededPermutation(len(dataset), seed) if shuffle else None
        self.describe = describe
        self.loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=self.sampler,
            num_workers=num_workers,
            # workers end with each pass: persistent ones, shut down when the loader is
            # collected, waited out torch's join timeout (5 s a worker) in a tracked run,
            # ~20 s a run; starting them again costs well under a second a pass
            persistent_workers=False,
            pin_memory=pin_memory,
            collate_fn=collate,
        )

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            if isinstance(batch, DecodeFailures):
                raise DataNotFoundError(self.describe(batch.failed))
            yield batch
