"""Images in class folders, read like Keras' ``image_dataset_from_directory`` (book ch. 5 / 8).

``root`` holds one sub-folder of images per class (``cats/``, ``dogs/``; class names are the
sorted folder names), split seeded and stratified into train/val/test; or ``train/``,
``validation/`` (or ``val/``) and ``test/`` folders that each hold the same class sub-folders
-- the book's ``cats_vs_dogs_small`` layout -- used as given, a missing validation or test
folder being split off ``train/``.

Images are decoded with PIL (JPEGs straight at a reduced scale, ``Image.draft``) on a thread
pool, resized bilinearly to ``image_size`` without keeping the aspect ratio (as Keras does)
and cached as one uint8 tensor in ``cache_dir``, keyed by the files' names, sizes and mtimes
and the decode settings: the next run loads the cache instead of decoding.

Folders too big for memory are streamed from disk instead (``in_memory``, ``memory_budget``):
each image is decoded when a batch needs it, in ``DataLoader`` worker processes that persist
from epoch to epoch and end with each stage (:meth:`ImageFolderDataModule.teardown`;
:mod:`plugins.data.streamed_images`), with the same splits, class order and batch order, and
under DDP the same shard of the training images on each rank.

``python -m plugins.data.image_folder make-book-split SRC DEST`` builds the book's small
layout from Kaggle's Dogs vs. Cats ``train/`` folder (see :func:`make_book_split`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from pipelines.api import (
    BatchSize,
    ConfigValueError,
    DataNotFoundError,
    PipelineError,
    Seed,
    atomic_torch_save,
    distributed_shard,
    no_validation_data,
    unreadable_file_error,
)
from plugins.data.augment import AugmentSettings
from plugins.data.memory_budget import (
    InMemory,
    check_in_memory,
    choose_data_path,
    default_workers,
    memory_budget_bytes,
)
from plugins.data.streamed_images import ImageFiles, StreamedBatches
from plugins.data.vision import InMemoryImageData, stratified_split

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
#: split -> the folder names that may hold it (the first one present wins)
SPLIT_FOLDERS: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "val": ("validation", "val"),
    "test": ("test",),
}
#: where an image came from: a split folder, or the flat layout (split later)
_SOURCES = {"train": 0, "val": 1, "test": 2, "all": 3}
_CACHE_VERSION = 1

ColorMode = Literal["rgb", "grayscale"]


def image_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively, as Keras reads them), sorted; hidden skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True, onerror=_denied):
        dirnames[:] = [name for name in dirnames if not name.startswith(".")]
        found.extend(
            Path(dirpath) / name
            for name in filenames
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)
        )
    return sorted(found)


def _denied(error: OSError) -> None:
    """``os.walk``'s error handler: a folder this user may not list is raised, not skipped;
    skipped, its class looked empty and the user was told to delete a folder of images."""
    if isinstance(error, PermissionError):
        raise error


@contextmanager
def _readable(root: Path) -> Iterator[None]:
    """A PermissionError while listing or reading ``root``'s folders and files becomes one
    paragraph naming what was denied (``root`` where the error names nothing)."""
    try:
        yield
    except PermissionError as exc:
        denied = Path(exc.filename) if exc.filename else root
        raise unreadable_file_error(denied, "data.root") from exc


def class_folders(folder: Path) -> list[Path]:
    """The visible sub-folders of ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def decode_image(path: Path, size: tuple[int, int], color_mode: ColorMode) -> np.ndarray:
    """One image file as uint8 ``(height, width, channels)``, resized bilinearly to ``size``."""
    from PIL import Image

    height, width = size
    mode = "L" if color_mode == "grayscale" else "RGB"
    with Image.open(path) as source:
        # JPEG only: decode at the smallest 1/2, 1/4 or 1/8 scale still >= size (much faster)
        source.draft(mode, (width, height))
        image = source
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")  # what PIL asks for palette images with transparency
        image = image.convert(mode)
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(image)
    return pixels.reshape(height, width, -1)


def decode_images(
    paths: Sequence[Path], size: tuple[int, int], color_mode: ColorMode
) -> np.ndarray:
    """Decode ``paths`` into one uint8 array ``(N, H, W, C)`` on a thread pool.

    PIL releases the GIL while it decodes and resizes, so threads scale with the cores.
    Every file that fails is named in one :class:`DataNotFoundError`; files this user may
    not read (permission denied) apart from the damaged ones, since the damaged-file advice,
    delete it, would destroy a photo whose only fault is its permissions; and files gone
    since the folder was listed apart from both.
    """
    channels = 1 if color_mode == "grayscale" else 3
    pixels = np.empty((len(paths), *size, channels), dtype=np.uint8)
    failures: list[tuple[Path, str]] = []
    unreadable: list[Path] = []
    missing: list[Path] = []

    def decode(index: int) -> None:
        try:
            pixels[index] = decode_image(paths[index], size, color_mode)
        except FileNotFoundError:
            missing.append(paths[index])
        except PermissionError:
            unreadable.append(paths[index])
        except Exception as exc:  # any decoder error means the file is not a usable image
            failures.append((paths[index], f"{type(exc).__name__}: {exc}"))

    workers = min(8, os.cpu_count() or 1, max(1, len(paths)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(decode, range(len(paths))))
    if failures or unreadable or missing:
        raise DataNotFoundError(decode_problems(failures, unreadable, missing))
    return pixels


def decode_problems(
    failures: list[tuple[Path, str]], unreadable: list[Path], missing: Sequence[Path] = ()
) -> str:
    """The paragraph for image files that failed to decode (path, why), to be read, or to
    be found (deleted or moved since the folder was listed)."""
    problems = [_unreadable_images(sorted(unreadable))] if unreadable else []
    if missing:
        gone = sorted(missing)
        shown = ", ".join(map(str, gone[:5]))
        more = f" and {len(gone) - 5} more" if len(gone) > 5 else ""
        problems.append(
            f"{len(gone)} image file(s) listed when the run read the folder are no longer "
            f"there: {shown}{more}. They were moved or deleted while the run used them; put "
            "them back, or run again to list the folder anew."
        )
    if failures:
        failures = sorted(failures)
        shown = "; ".join(f"{path} ({why})" for path, why in failures[:5])
        more = f" and {len(failures) - 5} more" if len(failures) > 5 else ""
        them = "it" if len(failures) == 1 else "them"
        problems.append(
            f"Cannot decode {len(failures)} image file(s): {shown}{more}. The file is corrupt, "
            f"truncated or not an image; delete {them} (or replace {them} with a valid image) "
            "and run again."
        )
    return " ".join(problems)


def _streamed_problems(failed: list[Any]) -> str:
    """:func:`decode_problems` for the failed samples of a streamed batch."""
    return decode_problems(
        [(f.path, f.why) for f in failed if f.why is not None],
        [f.path for f in failed if f.why is None and not f.missing],
        [f.path for f in failed if f.missing],
    )


def _unreadable_images(paths: list[Path]) -> str:
    """The sentences for image files this user may not read: the fix is their permissions."""
    if len(paths) == 1:
        return str(unreadable_file_error(paths[0], "data.root"))
    shown = ", ".join(map(str, paths[:5]))
    more = f" and {len(paths) - 5} more" if len(paths) > 5 else ""
    return (
        f"Cannot read {len(paths)} image files (permission denied): {shown}{more}. Give this "
        "user read access (chmod) to them, or point `data.root=` elsewhere."
    )


def _image_size(value: int | tuple[int, int]) -> tuple[int, int]:
    size = (value, value) if isinstance(value, int) else tuple(value)
    if len(size) != 2 or any(int(side) < 1 for side in size):
        raise ConfigValueError(
            f"data.image_size must be a positive int or [height, width], got {value!r}. "
            "Set e.g. `data.image_size=150` or `data.image_size=[120,160]`."
        )
    return int(size[0]), int(size[1])


class ImageFolderDataModule(InMemoryImageData):
    """Photos in class sub-folders (the book's cats vs. dogs), decoded once and cached.

    ``val_fraction``/``test_fraction`` are fractions of the images being split: the whole
    folder in the flat layout, ``train/`` when a validation or test folder is missing.
    ``limit_per_class`` takes the first N files (sorted names) of each class in each folder.
    ``cache_dir`` defaults to ``data_cache/image_folder_cache`` in the working directory.

    ``in_memory``: ``auto`` decodes the images into memory when their float32 pixels fit
    ``memory_budget`` (bytes, ``"2GB"``, a fraction of the available memory in (0, 1], or
    null for a quarter of it) and streams them from disk otherwise; ``true``/``false`` force
    a path. Streamed, ``num_workers`` processes (null: up to 4) decode the batches.
    ``data_path`` says which path :meth:`setup` took.
    """

    def __init__(
        self,
        root: str,
        image_size: int | tuple[int, int] = 150,
        color_mode: ColorMode = "rgb",
        batch_size: BatchSize = 32,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        limit_per_class: int | None = None,
        cache: bool = True,
        cache_dir: str | None = None,
        augment: AugmentSettings | None = None,
        seed: Seed = 0,
        in_memory: InMemory = "auto",
        memory_budget: int | float | str | None = None,
        num_workers: int | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, seed=seed, augment=augment)
        self.in_memory = check_in_memory(in_memory, "decodes the images into memory")
        self.memory_budget = memory_budget_bytes(memory_budget)  # checked before the run
        if num_workers is not None and num_workers < 0:
            raise ConfigValueError(
                f"data.num_workers must be 0 (decode in the training process), a positive "
                f"int or null (up to 4, one per core), got {num_workers}."
            )
        self.num_workers = default_workers() if num_workers is None else num_workers
        #: "in_memory" or "streamed", after :meth:`setup` (the run's tag pipelines.data_path)
        self.data_path: str | None = None
        #: streamed: split -> (image files, labels)
        self.streams: dict[str, tuple[list[Path], np.ndarray]] = {}
        #: streamed: the loaders handed out whose workers :meth:`teardown` ends
        self._open_batches: weakref.WeakSet[StreamedBatches] = weakref.WeakSet()
        if str(root).strip() in ("", "???"):
            raise ConfigValueError(
                "The image_folder data needs `data.root`: the folder that holds one "
                "sub-folder of images per class (or train/, validation/ and test/ folders "
                "that each hold them). Pass it on the command line, e.g. "
                "`data.root=path/to/cats_vs_dogs_small`."
            )
        self.root = Path(root).expanduser().resolve()
        self.image_size = _image_size(image_size)
        if color_mode not in ("rgb", "grayscale"):
            raise ConfigValueError(
                f"data.color_mode must be 'rgb' or 'grayscale', got {color_mode!r}."
            )
        self.color_mode: ColorMode = color_mode
        if not (
            0 < val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1
        ):
            raise ConfigValueError(
                f"data.val_fraction={val_fraction} and data.test_fraction={test_fraction} "
                "must satisfy 0 < val_fraction, 0 <= test_fraction and val_fraction + "
                "test_fraction < 1. Fix them, e.g. `data.val_fraction=0.2 data.test_fraction=0.2`."
            )
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        if limit_per_class is not None and limit_per_class < 1:
            raise ConfigValueError(
                f"data.limit_per_class must be a positive int or null, got {limit_per_class}."
            )
        self.limit_per_class = limit_per_class
        self.cache = cache
        self.cache_dir = Path(cache_dir or "data_cache/image_folder_cache").expanduser()
        #: the class names a run logged (``data/classes.json``, :meth:`use_artifacts`)
        self.run_classes: list[str] | None = None

    # -- finding the files ---------------------------------------------------------------

    def split_folders(self) -> dict[str, Path] | None:
        """The split folders present (``train`` always among them), or None for a flat root."""
        found: dict[str, Path] = {}
        for split, names in SPLIT_FOLDERS.items():
            present = [self.root / n for n in names if (self.root / n).is_dir()]
            if len(present) > 1:
                raise DataNotFoundError(
                    f"{self.root} has both {present[0].name}/ and {present[1].name}/; both "
                    f"would be the {split} split. Remove or rename one of them."
                )
            if present:
                found[split] = present[0]
        if not found:
            return None
        if "train" not in found:
            names = ", ".join(f"{p.name}/" for p in found.values())
            raise DataNotFoundError(
                f"{self.root} has {names} but no train/ folder. Add train/ (with the same "
                "class sub-folders), or point `data.root=` at a folder of class sub-folders."
            )
        others = [p.name for p in class_folders(self.root) if p not in found.values()]
        if others:
            log.warning(
                "image_folder: ignoring %s in %s (only train/, validation/ or val/ and test/ "
                "are read when train/ exists)",
                ", ".join(others),
                self.root,
            )
        return found

    def scan_classes(self, folder: Path) -> dict[str, list[Path]]:
        """Class name -> its image files (the first ``limit_per_class``) in one folder."""
        folders = class_folders(folder)
        if len(folders) < 2:
            loose = len([p for p in folder.iterdir() if p.name.lower().endswith(IMAGE_EXTENSIONS)])
            named = ", ".join(p.name for p in folders) or "none"
            stray = (
                f" Its {loose} image file(s) directly inside are not used: images must sit in "
                "class sub-folders."
                if loose
                else ""
            )
            raise DataNotFoundError(
                f"{folder} has {len(folders)} class sub-folder(s) ({named}); a classifier "
                f"needs at least 2.{stray} Put each class's images in its own sub-folder "
                f"(e.g. {folder / 'cats'}/ and {folder / 'dogs'}/), or point `data.root=` at "
                "the folder that holds the class sub-folders."
            )
        classes = {p.name: image_files(p)[: self.limit_per_class] for p in folders}
        empty = [str(folder / name) for name, files in classes.items() if not files]
        if empty:
            raise DataNotFoundError(
                f"The class folder(s) {', '.join(empty)} hold no images (looked for "
                f"{', '.join(IMAGE_EXTENSIONS)} files, any case; hidden files skipped). Add "
                "images to them or delete them; if the images are elsewhere, point "
                "`data.root=` at the folder whose sub-folders are the classes."
            )
        return classes

    def scan(self) -> tuple[list[str], list[tuple[Path, int, int]]]:
        """Class names and every image as ``(path, label, source)``, in a fixed order; a
        folder this user may not list is one paragraph naming it."""
        with _readable(self.root):
            return self._scan()

    def _scan(self) -> tuple[list[str], list[tuple[Path, int, int]]]:
        if not self.root.is_dir():
            what = "is not a folder" if self.root.exists() else "does not exist"
            book = (
                " To build the book's cats_vs_dogs_small from Kaggle's Dogs vs. Cats train/ "
                "folder, run `python -m plugins.data.image_folder make-book-split "
                f"path/to/train {self.root}`."
                if "cats_vs_dogs" in self.root.name
                else ""
            )
            raise DataNotFoundError(
                f"The image folder {self.root} {what}. Point `data.root=` at a folder with "
                "one sub-folder of images per class (e.g. cats/ and dogs/), or with train/, "
                f"validation/ and test/ folders that each hold those class sub-folders.{book}"
            )
        folders = self.split_folders() or {"all": self.root}
        found = {split: self.scan_classes(folder) for split, folder in folders.items()}
        classes = sorted(next(iter(found.values())))
        for split, per_class in found.items():
            if sorted(per_class) != classes:
                first, here = folders[next(iter(found))], folders[split]
                missing = sorted(set(classes) - set(per_class))
                extra = sorted(set(per_class) - set(classes))
                raise DataNotFoundError(
                    f"The split folders of {self.root} disagree on the classes: {first} has "
                    f"{', '.join(classes)}; {here} has {', '.join(sorted(per_class))} "
                    f"(missing: {', '.join(missing) or 'none'}; extra: "
                    f"{', '.join(extra) or 'none'}). Every split folder needs the same class "
                    "sub-folders: add, rename or remove folders so they match."
                )
        entries = [
            (path, label, _SOURCES[split])
            for split, per_class in found.items()
            for label, name in enumerate(classes)
            for path in per_class[name]
        ]
        return classes, entries

    def prepare_data(self) -> None:
        self.scan()  # fails fast on a missing or malformed folder

    # -- decoding and the cache ----------------------------------------------------------

    def cache_path(self, entries: Sequence[tuple[Path, int, int]]) -> Path:
        """``image_folder-<settings>-<files>.pt``: one file per root and decode settings."""
        settings = {
            "version": _CACHE_VERSION,
            "root": str(self.root),
            "image_size": self.image_size,
            "color_mode": self.color_mode,
            "limit_per_class": self.limit_per_class,
        }
        files = hashlib.sha256()
        for path, label, source in entries:
            stat = path.stat()
            relative = path.relative_to(self.root).as_posix()
            files.update(
                f"{relative}\t{label}\t{source}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode()
            )
        key = hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:12]
        return self.cache_dir / f"image_folder-{key}-{files.hexdigest()[:16]}.pt"

    def load(
        self, scanned: tuple[list[str], list[tuple[Path, int, int]]] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str], bool]:
        """uint8 images ``(N, C, H, W)``, labels, sources, class names, and whether cached."""
        classes, entries = scanned or self.scan()
        with _readable(self.root):  # stat() is denied in a folder that may not be searched
            path = self.cache_path(entries) if self.cache else None
        cached = _read_cache(path, len(entries)) if path else None
        if cached is not None:
            return cached["images"], cached["labels"], cached["sources"], classes, True
        pixels = decode_images([p for p, _, _ in entries], self.image_size, self.color_mode)
        images = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
        labels = torch.tensor([label for _, label, _ in entries], dtype=torch.int64)
        sources = torch.tensor([source for _, _, source in entries], dtype=torch.int64)
        if path:
            payload = {"images": images, "labels": labels, "sources": sources, "classes": classes}
            _write_cache(path, payload)
        return images, labels, sources, classes, False

    # -- splits --------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        if self.splits or self.streams:
            return
        started = time.perf_counter()
        scanned = self.scan()
        if not self._fits_in_memory(len(scanned[1])):
            self._set_up_streams(*scanned)
            return
        images, labels, sources, classes, cached = self.load(scanned)
        indices = self.split_indices(labels.numpy(), sources.numpy())
        self.splits = {
            name: (images[idx].float().div_(255.0), labels[idx]) for name, idx in indices.items()
        }
        self.classes = classes
        sizes = ", ".join(f"{name} {len(idx)}" for name, idx in indices.items())
        log.info(
            "image_folder: %d images of %d classes from %s (%s) in %.1fs%s",
            len(labels),
            len(classes),
            self.root,
            sizes,
            time.perf_counter() - started,
            " (cached)" if cached else "",
        )

    @property
    def channels(self) -> int:
        return 1 if self.color_mode == "grayscale" else 3

    def _fits_in_memory(self, count: int) -> bool:
        """Which path to take (``data_path``), said in one log line with the reason."""

        def size() -> tuple[int, str]:
            pixels = count * self.channels * self.image_size[0] * self.image_size[1]
            return pixels * 4, f"{count} images decoded"  # float32

        self.data_path = choose_data_path(
            self.in_memory,
            self.memory_budget,
            size,
            log=log,
            plugin="image_folder",
            kept="decoding into memory",
            streamed=f"streaming from disk with {self.num_workers} worker(s)",
        )
        return self.data_path == "in_memory"

    def _set_up_streams(self, classes: list[str], entries: list[tuple[Path, int, int]]) -> None:
        """The streamed path: the in-memory path's splits, as (files, labels) per split."""
        labels = np.array([label for _, label, _ in entries], dtype=np.int64)
        sources = np.array([source for _, _, source in entries], dtype=np.int64)
        indices = self.split_indices(labels, sources)
        self.streams = {
            name: ([entries[i][0] for i in idx], labels[idx]) for name, idx in indices.items()
        }
        self.classes = classes
        self.encode_shape = (self.channels, *self.image_size)
        sizes = ", ".join(f"{name} {len(idx)}" for name, idx in indices.items())
        log.info(
            "image_folder: %d images of %d classes from %s (%s), streamed",
            len(labels),
            len(classes),
            self.root,
            sizes,
        )

    # -- the streamed path's batches -----------------------------------------------------

    @property
    def fused_batches_are_exact(self) -> bool:
        # streamed: a fused batch would be steps_per_call batches decoded at once
        return self.augmentation is None and self.data_path != "streamed"

    def model_kwargs(self) -> dict[str, Any]:
        if self.data_path != "streamed":
            return super().model_kwargs()
        return {"input_shape": self.encode_shape, "num_classes": len(self.classes)}

    def move_splits_to(self, device: torch.device) -> None:
        if self.data_path != "streamed":  # streamed batches are pinned and copied instead
            super().move_splits_to(device)

    def val_dataloader(self) -> Any:
        if self.data_path != "streamed":
            return super().val_dataloader()
        if not len(self.streams["val"][0]):
            return no_validation_data("images")
        return self._batches("val", shuffle=False)

    def _batches(self, split: str, shuffle: bool) -> Any:
        if self.data_path != "streamed":
            return super()._batches(split, shuffle)
        paths, labels = self.streams[split]
        trainer = getattr(self, "trainer", None)
        on_gpu = (
            trainer.strategy.root_device.type == "cuda"
            if trainer is not None
            else torch.cuda.is_available()
        )
        rank, world_size = distributed_shard(split)
        files = ImageFiles(paths, labels, self.image_size, self.color_mode, decode_image)
        batches = StreamedBatches(
            files,
            batch_size=self.batch_size * self._batches_per_call(split),
            shuffle=shuffle,
            seed=self.seed,
            num_workers=min(self.num_workers, len(paths)),
            pin_memory=on_gpu,
            describe=_streamed_problems,
            rank=rank,
            world_size=world_size,
        )
        self._open_batches.add(batches)
        return batches

    def teardown(self, stage: str) -> None:
        """The end of ``fit``, ``test`` (...): the streamed loaders' workers end here rather
        than whenever the trainer holding them is collected."""
        for batches in list(self._open_batches):
            batches.close()
        super().teardown(stage)

    def split_indices(self, labels: np.ndarray, sources: np.ndarray) -> dict[str, np.ndarray]:
        """Indices of train/val/test: the split folders, the rest split off seeded."""
        given = {
            name: np.flatnonzero(sources == code)
            for name, code in _SOURCES.items()
            if name != "all" and (sources == code).any()
        }
        if not given:  # flat layout: split everything
            return self._split(
                np.arange(len(labels)), labels, self.val_fraction, self.test_fraction
            )
        pool = given["train"]
        if "val" in given and "test" in given:
            return given
        if "val" in given:  # the test split comes off train
            part = self._split(pool, labels, self.test_fraction, 0.0)
            return {"train": part["train"], "val": given["val"], "test": part["val"]}
        test_fraction = 0.0 if "test" in given else self.test_fraction
        part = self._split(pool, labels, self.val_fraction, test_fraction)
        return {"train": part["train"], "val": part["val"], "test": given.get("test", part["test"])}

    def _split(
        self, pool: np.ndarray, labels: np.ndarray, val_fraction: float, test_fraction: float
    ) -> dict[str, np.ndarray]:
        if val_fraction == 0:
            return {"train": pool, "val": pool[:0], "test": pool[:0]}
        # too few images to stratify: stratified_split names the setting to change
        split = stratified_split(labels[pool], val_fraction, test_fraction, self.seed)
        return {name: pool[idx] for name, idx in split.items()}

    # -- what a run keeps: the class names, so predict needs no folder ------------------

    def artifacts(self) -> dict[str, Path]:
        """``classes.json``, the class names by label index (the folder names), logged with
        the run: ``predict`` names its predictions with them once ``root`` is gone."""
        if not self.classes:
            return {}
        folder = Path(tempfile.mkdtemp(prefix="pipelines-image-folder-"))
        path = folder / "classes.json"
        path.write_text(json.dumps(list(self.classes)), encoding="utf-8")
        return {"classes.json": path}

    def use_artifacts(self, files: Mapping[str, Path]) -> None:
        """The class names of the run (its :meth:`artifacts`; older runs have none)."""
        if "classes.json" not in files:
            return
        try:
            classes = json.loads(files["classes.json"].read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigValueError(
                f"The run's class names (artifact data/classes.json) cannot be read ({exc})."
            ) from None
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise ConfigValueError(
                f"The run's artifact data/classes.json is not a list of class names: {classes!r}."
            )
        self.run_classes = classes

    def known_classes(self) -> list[str] | None:
        return self.run_classes


def _read_cache(path: Path, count: int) -> dict[str, Any] | None:
    """The cached tensors, or None when absent or unusable (then the images are decoded)."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        images, labels, sources = payload["images"], payload["labels"], payload["sources"]
        if not len(images) == len(labels) == len(sources) == count:
            raise ValueError(f"it holds {len(images)} images, expected {count}")
    except Exception as exc:  # a truncated or foreign file: decode again, overwrite it
        log.warning("image_folder: ignoring the unusable cache %s (%s)", path, exc)
        return None
    return payload


def _write_cache(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically (temp file + rename), then drop older caches of the same settings."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(payload, path)
        prefix = path.name.rsplit("-", 1)[0]
        for stale in path.parent.glob(f"{prefix}-*.pt"):
            if stale != path:
                stale.unlink(missing_ok=True)
    except OSError as exc:
        log.warning(
            "image_folder: could not write the cache %s (%s); the next run decodes the images "
            "again. Set `data.cache_dir=` to a writable folder, or `data.cache=false`.",
            path,
            exc,
        )


# -- the book's small Dogs vs. Cats subset ---------------------------------------------------

#: Kaggle's file prefix -> the book's class folder
BOOK_CLASSES = {"cat": "cats", "dog": "dogs"}


def make_book_split(
    source_dir: str | Path,
    dest_dir: str | Path,
    train: int = 1000,
    validation: int = 500,
    test: int = 500,
    link: bool = True,
) -> dict[str, int]:
    """Build the book's ``cats_vs_dogs_small`` from Kaggle's flat Dogs vs. Cats ``train/``.

    As the book's code does (1st ed. 5.2, 2nd ed. 8.2), per class: ``cat.0.jpg`` ...
    ``cat.{train-1}.jpg`` (and the dogs) go to ``dest/train/{cats,dogs}``, the next
    ``validation`` to ``dest/validation``, the next ``test`` to ``dest/test``: with the
    defaults 2,000/1,000/1,000 images (the 2nd edition tests on 1,000 per class: ``test=1000``).
    Files are hard-linked when ``link`` and the file system allows, else copied; files already
    in place are kept. ``source_dir`` may also be the folder that holds ``train/``. Returns
    the number of images per split.
    """
    source = Path(source_dir).expanduser().resolve()
    if not (source / "cat.0.jpg").is_file() and (source / "train" / "cat.0.jpg").is_file():
        source = source / "train"
    if not source.is_dir():
        raise DataNotFoundError(
            f"{source} is not a folder. Point it at Kaggle's Dogs vs. Cats train/ folder "
            "(train.zip unzipped: cat.0.jpg ... dog.12499.jpg)."
        )
    counts = {"train": train, "validation": validation, "test": test}
    if any(count < 0 for count in counts.values()) or train < 1 or validation < 1:
        raise ConfigValueError(
            f"make_book_split needs train >= 1, validation >= 1 and test >= 0 images per "
            f"class; got {counts}."
        )
    total = sum(counts.values())
    missing = [
        source / f"{prefix}.{index}.jpg"
        for prefix in BOOK_CLASSES
        for index in range(total)
        if not (source / f"{prefix}.{index}.jpg").is_file()
    ]
    if missing:
        raise DataNotFoundError(
            f"{source} lacks {len(missing)} of the {2 * total} files the split needs (e.g. "
            f"{missing[0].name}). Point it at Kaggle's Dogs vs. Cats train/ folder (train.zip "
            "unzipped: cat.0.jpg ... dog.12499.jpg), or ask for fewer images per class."
        )
    dest = Path(dest_dir).expanduser().resolve()
    start = 0
    for split, count in counts.items():
        for prefix, folder in BOOK_CLASSES.items():
            if count == 0:
                continue
            target = dest / split / folder
            target.mkdir(parents=True, exist_ok=True)
            for index in range(start, start + count):
                name = f"{prefix}.{index}.jpg"
                _place(source / name, target / name, link)
        start += count
    return {split: 2 * count for split, count in counts.items()}


def _place(source: Path, target: Path, link: bool) -> None:
    if target.exists():
        return
    if link:
        try:
            os.link(source, target)
            return
        except OSError:  # another file system, or no hard links there: copy instead
            pass
    shutil.copy2(source, target)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m plugins.data.image_folder",
        description="Tools for the image_folder data plugin.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    book = commands.add_parser(
        "make-book-split",
        help="build the book's cats_vs_dogs_small/{train,validation,test}/{cats,dogs}",
        description=make_book_split.__doc__,
    )
    book.add_argument("source", help="Kaggle's Dogs vs. Cats train/ folder (cat.0.jpg, ...)")
    book.add_argument("dest", help="the folder to create, e.g. data_cache/cats_vs_dogs_small")
    book.add_argument("--train", type=int, default=1000, help="per class (default 1000)")
    book.add_argument("--validation", type=int, default=500, help="per class (default 500)")
    book.add_argument("--test", type=int, default=500, help="per class (default 500)")
    book.add_argument("--copy", action="store_true", help="copy files instead of hard-linking")
    args = parser.parse_args(argv)
    try:
        counts = make_book_split(
            args.source, args.dest, args.train, args.validation, args.test, link=not args.copy
        )
    except PipelineError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    summary = ", ".join(f"{split} {count}" for split, count in counts.items())
    print(f"{Path(args.dest).resolve()}: {summary} images (cats and dogs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
