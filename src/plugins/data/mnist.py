"""MNIST and Fashion-MNIST from idx files (book ch. 2 and 5).

Files a user placed in ``data.root`` -- flat, or in torchvision's ``<Name>/raw`` layout,
gzipped or not -- are validated by format (magic numbers, counts), not by checksum, so a
user's own idx files work. Downloads are verified by checksum before they are used.
"""

from __future__ import annotations

import gzip
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from pipelines.api import (
    REFETCH,
    BatchSize,
    ConfigValueError,
    DataNotFoundError,
    RemoteFile,
    Seed,
    download,
    ensure_file,
    reading_data_file,
)
from plugins.data.augment import AugmentSettings
from plugins.data.vision import (
    InMemoryImageData,
    image_tensors,
    select_classes,
    stratified_split,
)

_IMAGES_MAGIC = 2051  # 0x0803: uint8 data in 3 dimensions (count, rows, cols)
_LABELS_MAGIC = 2049  # 0x0801: uint8 data in 1 dimension (count)
_KINDS = {_IMAGES_MAGIC: "images", _LABELS_MAGIC: "labels"}
IdxKind = Literal["images", "labels"]


def read_idx(path: Path, kind: IdxKind | None = None) -> np.ndarray:
    """An idx image (N, rows, cols) or label (N,) file as a uint8 array, format-checked.

    ``kind`` is what the file's name promises: a labels file that holds images (or the
    reverse) is refused here, naming the file, instead of training on it and failing in
    the test stage.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with reading_data_file(path), opener(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:  # not a damaged file (reading_data_file took those): unreadable
        raise DataNotFoundError(
            f"Cannot read {path}: {exc}. Fix its permissions, or delete it and {REFETCH}."
        ) from exc
    if len(data) < 8:
        raise DataNotFoundError(f"{path} is not an idx file (only {len(data)} bytes).")
    magic, count = (int.from_bytes(data[i : i + 4], "big") for i in (0, 4))
    if magic == _IMAGES_MAGIC:
        rows, cols = (int.from_bytes(data[i : i + 4], "big") for i in (8, 12))
        header, shape = 16, (count, rows, cols)
    elif magic == _LABELS_MAGIC:
        header, shape = 8, (count,)
    else:
        raise DataNotFoundError(
            f"{path} is not an idx image or label file (magic number {magic}, expected "
            f"{_IMAGES_MAGIC} or {_LABELS_MAGIC}). Replace it with the real file."
        )
    if kind is not None and _KINDS[magic] != kind:
        raise DataNotFoundError(
            f"{path} should hold {kind} but holds {_KINDS[magic]} (idx magic number {magic}; "
            f"{kind} have {_IMAGES_MAGIC if kind == 'images' else _LABELS_MAGIC}): the files "
            f"are swapped or misnamed. Put the {kind} file under this name, or delete it and "
            f"{REFETCH}."
        )
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise DataNotFoundError(
            f"{path} is truncated or corrupt: its header announces {expected} bytes of data, "
            f"it holds {len(data) - header}. Delete it and {REFETCH}."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write a uint8 image (N, rows, cols) or label (N,) array as an idx file (.gz if named so).

    The inverse of :func:`read_idx`: turns any digit images into files this plugin reads.
    """
    magic = _IMAGES_MAGIC if array.ndim == 3 else _LABELS_MAGIC
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def checked_classes(
    classes: Sequence[int] | None, names: Sequence[str], dataset: str
) -> list[int] | None:
    """``data.classes`` as a list of distinct labels of ``dataset`` (None: keep them all).

    Unchecked, a label out of 0..9 ended in an IndexError traceback (-1) or a message about
    'data.val_fraction' (10, which selects no image at all), and a repeated label silently
    gave the model a class no sample has. Refused here, before any file is read.
    """
    if classes is None:
        return None
    is_list = isinstance(classes, Sequence) and not isinstance(classes, str)
    values = list(classes) if is_list else None
    if values == []:
        return None
    problem = _classes_problem(values, len(names))
    if problem is None:
        return [int(c) for c in values or ()]
    raise ConfigValueError(
        f"Wrong value for 'data.classes': {classes!r} {problem}. It must list distinct "
        f"{dataset} labels, whole numbers from 0 to {len(names) - 1}{_numbering(names)}, in "
        "the order they are to be numbered: e.g. `data.classes=[0,1,2,3,4]`, or "
        "`data.classes=null` for all of them."
    )


def _numbering(names: Sequence[str]) -> str:
    """`` (0=T-shirt/top, 1=Trouser, ...)``, or nothing where the names are the numbers."""
    if list(names) == [str(i) for i in range(len(names))]:
        return ""
    return " (" + ", ".join(f"{i}={name}" for i, name in enumerate(names)) + ")"


def _classes_problem(values: list | None, count: int) -> str | None:
    """What is wrong with the ``data.classes`` ``values`` (None: nothing), as a clause."""
    if values is None:
        return "is not a list"
    for value in values:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            return f"holds {value!r}, which is not a whole number"
        if not 0 <= value < count:
            return f"holds {value}, which is not one of its labels"
    repeated = sorted({int(v) for v in values if values.count(v) > 1})
    if repeated:
        return f"repeats {', '.join(map(str, repeated))}"
    return None


def _kind(key: str) -> IdxKind:
    """What a :attr:`MNISTDataModule.files` key's file holds: ``train_labels`` -> labels."""
    return "labels" if key.endswith("_labels") else "images"


class MNISTDataModule(InMemoryImageData):
    """The 60,000 + 10,000 handwritten digits; validation is a seeded split of training."""

    folder: ClassVar[str] = "MNIST"
    mirrors: ClassVar[tuple[str, ...]] = (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    )
    files: ClassVar[dict[str, tuple[str, str]]] = {
        "train_images": ("train-images-idx3-ubyte", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        "train_labels": ("train-labels-idx1-ubyte", "d53e105ee54ea40749a09fcbcd1e9432"),
        "test_images": ("t10k-images-idx3-ubyte", "9fb629c4189551a2d022fa330f9573f3"),
        "test_labels": ("t10k-labels-idx1-ubyte", "ec29112dd5afa0611ce80d1b7f02629c"),
    }
    class_names: ClassVar[tuple[str, ...]] = tuple(str(d) for d in range(10))

    def __init__(
        self,
        root: str = "data_cache/mnist",
        download: bool = False,
        batch_size: BatchSize = 128,
        val_fraction: float = 0.1,
        seed: Seed = 0,
        train_limit: int | None = None,
        classes: list[int] | None = None,
        augment: AugmentSettings | None = None,
    ) -> None:
        """``classes`` keeps only those labels (re-indexed 0..k-1, in the order given): e.g.
        a source task on digits 0-4 and a transfer target on 5-9. ``train_limit`` then caps
        the training files' samples (before the validation split)."""
        super().__init__(batch_size=batch_size, seed=seed, augment=augment)
        self.root = Path(root).expanduser().resolve()
        self.download = download
        self.val_fraction = val_fraction
        self.train_limit = train_limit
        self.keep = checked_classes(classes, self.class_names, self.folder)

    def candidates(self, stem: str) -> list[Path]:
        """Where a file may be: flat or torchvision's layout, gzipped or not."""
        folders = (self.root, self.root / self.folder / "raw")
        return [folder / f"{stem}{ext}" for folder in folders for ext in ("", ".gz")]

    def locate(self, stem: str, md5: str) -> Path:
        urls = tuple(f"{mirror}{stem}.gz" for mirror in self.mirrors)
        remote = RemoteFile(f"{stem}.gz", urls, md5=md5)
        for path in self.candidates(stem):
            if path.is_file():
                # the file this module downloads is checked: one cut short is fetched again
                if self.download and path == self.root / remote.filename:
                    return ensure_file(remote, self.root)
                return path
        if self.download:
            return download(remote, self.root)
        looked = ", ".join(str(p) for p in self.candidates(stem))
        raise DataNotFoundError(
            f"The {self.folder} file '{stem}' is missing (looked for {looked}). Either set "
            f"`data.download=true` to fetch it into {self.root}, or put the four idx files "
            f"({', '.join(name for name, _ in self.files.values())}; .gz or not) in that "
            "folder, or point `data.root=` at the folder that holds them."
        )

    def prepare_data(self) -> None:
        for stem, md5 in self.files.values():
            self.locate(stem, md5)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        paths = {key: self.locate(*spec) for key, spec in self.files.items()}
        arrays = {key: read_idx(path, _kind(key)) for key, path in paths.items()}
        for part in ("train", "test"):
            images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
            image_file, label_file = paths[f"{part}_images"], paths[f"{part}_labels"]
            if len(images) != len(labels):
                raise DataNotFoundError(
                    f"The {self.folder} {part} files disagree: {image_file} holds "
                    f"{len(images)} images but {label_file} holds {len(labels)} labels. "
                    "Replace them with a matching pair, or delete both and run again with "
                    "`data.download=true` to fetch them anew."
                )
            if len(labels) and int(labels.max()) >= len(self.class_names):
                raise DataNotFoundError(
                    f"{label_file} holds labels up to {int(labels.max())}, but {self.folder} "
                    f"has {len(self.class_names)} classes (labels 0..{len(self.class_names) - 1})"
                    f": it is not a labels file of {self.folder}. Replace it with the real file, "
                    f"or delete it and {REFETCH}."
                )
        train_images, train_labels = select_classes(
            arrays["train_images"], arrays["train_labels"], self.keep
        )
        test_images, test_labels = select_classes(
            arrays["test_images"], arrays["test_labels"], self.keep
        )
        if self.train_limit:
            train_images = train_images[: self.train_limit]
            train_labels = train_labels[: self.train_limit]
        split = stratified_split(train_labels, self.val_fraction, 0.0, self.seed)
        self.splits = {
            "train": image_tensors(train_images[split["train"]], train_labels[split["train"]]),
            "val": image_tensors(train_images[split["val"]], train_labels[split["val"]]),
            "test": image_tensors(test_images, test_labels),
        }
        self.classes = (
            [self.class_names[c] for c in self.keep] if self.keep else list(self.class_names)
        )

    def known_classes(self) -> list[str] | None:
        return [self.class_names[c] for c in self.keep] if self.keep else list(self.class_names)


class FashionMNISTDataModule(MNISTDataModule):
    """Zalando's Fashion-MNIST: the same format and sizes, ten kinds of clothing."""

    folder: ClassVar[str] = "FashionMNIST"
    mirrors: ClassVar[tuple[str, ...]] = (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    )
    files: ClassVar[dict[str, tuple[str, str]]] = {
        "train_images": ("train-images-idx3-ubyte", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        "train_labels": ("train-labels-idx1-ubyte", "25c81989df183df01b3e8a0aad5dffbe"),
        "test_images": ("t10k-images-idx3-ubyte", "bef4ecab320f06d8554ea6380940ec79"),
        "test_labels": ("t10k-labels-idx1-ubyte", "bb300cfdad3c16e7a12a480ee83fd310"),
    }
    class_names: ClassVar[tuple[str, ...]] = (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    )  # fmt: skip

    def __init__(
        self,
        root: str = "data_cache/fashion_mnist",
        download: bool = False,
        batch_size: BatchSize = 128,
        val_fraction: float = 0.1,
        seed: Seed = 0,
        train_limit: int | None = None,
        classes: list[int] | None = None,
        augment: AugmentSettings | None = None,
    ) -> None:
        super().__init__(
            root, download, batch_size, val_fraction, seed, train_limit, classes, augment
        )
