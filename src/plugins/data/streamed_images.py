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

import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from pipelines.api import ConfigValueError, DataNotFoundError

#: ``data.memory_budget: null``: this fraction of the memory available when the run starts
DEFAULT_BUDGET_FRACTION = 0.25
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS.update({"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40})


def available_memory() -> int:
    """Bytes of memory this process may still take: the kernel's MemAvailable (free plus
    reclaimable cache), lowered to what a cgroup (container) limit leaves."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit.isdigit():
            available = min(available, max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return int(available)


def memory_budget_bytes(value: Any, available: int | None = None) -> tuple[int, str]:
    """``data.memory_budget`` in bytes, and how it was set, in words.

    None: a quarter of the available memory; a float in (0, 1]: that fraction of it; a
    whole number of bytes (an int, or a string such as ``"500MB"``, ``"2GiB"``)."""
    budget = None
    if value is None:
        fraction = DEFAULT_BUDGET_FRACTION
    elif isinstance(value, bool):
        fraction = None
    elif isinstance(value, float) and 0 < value <= 1:
        fraction = value
    else:
        fraction = None
        budget = _bytes(value)
    if fraction is not None:
        available = available_memory() if available is None else available
        return int(available * fraction), (
            f"{fraction:g} of the {format_bytes(available)} available"
        )
    if budget is None or budget < 1:
        raise ConfigValueError(
            f"data.memory_budget must be a number of bytes (e.g. `data.memory_budget=2GB`, "
            f"`500MB` or `1000000`), a fraction of the available memory in (0, 1] (e.g. "
            f"`data.memory_budget=0.5`), or null for {DEFAULT_BUDGET_FRACTION:g} of it; got "
            f"{value!r}. Decoded images above the budget are streamed from disk "
            "(`data.in_memory=auto`)."
        )
    return budget, format_bytes(budget)


def _bytes(value: Any) -> int | None:
    """A whole number of bytes from an int, a whole float (``1e9``) or ``"<n><unit>"``."""
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value == int(value) else None
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*", value, re.IGNORECASE)
        if match:
            return int(float(match[1]) * _UNITS[(match[2] or "").lower()])
    return None


def format_bytes(count: float) -> str:
    """``59 MB``, ``1.2 GB``: decimal units, as a person reads them."""
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000:
            return f"{count:.3g} {unit}"
        count /= 1000
    return f"{count:.3g} TB"


def default_workers() -> int:
    """``data.num_workers: null``: up to 4 decoding processes, one per core."""
    return min(4, os.cpu_count() or 1)


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
