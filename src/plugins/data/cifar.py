"""CIFAR-10 from its "python version" pickled batches (the book's ch. 12 GAN trains on frogs).

The batches are looked for in ``data.root`` -- the extracted ``cifar-10-batches-py/`` folder
(or ``data.root`` pointing at that folder), else ``cifar-10-python.tar.gz``, which is
extracted -- and are validated by format (a dict of uint8 ``(N, 3072)`` pixels and N labels in
0..9), not by checksum, so a user's own batches work. The archive is checked by md5 only when
it is downloaded. Batches are unpickled with a loader that only builds numpy arrays, so a
file in ``data.root`` cannot run code.
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import numpy as np

from pipelines.api import (
    BatchSize,
    ConfigValueError,
    DataNotFoundError,
    RemoteFile,
    Seed,
    ensure_file,
    extract_tar,
)
from plugins.data.augment import AugmentSettings
from plugins.data.vision import (
    InMemoryImageData,
    image_tensors,
    select_classes,
    stratified_split,
)

ARCHIVE = RemoteFile(
    "cifar-10-python.tar.gz",
    ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
    md5="c58f30108f718f92721af3b95e74349a",
)
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
_SHAPE = (3, 32, 32)
_PIXELS = 3 * 32 * 32


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The only callables a CIFAR pickle needs: numpy's array/dtype/scalar rebuilders."""
    array = np.zeros(1, dtype=np.uint8)
    rebuilders = {
        ("multiarray", "_reconstruct"): array.__reduce__()[0],
        ("numeric", "_frombuffer"): array.__reduce_ex__(5)[0],
        ("multiarray", "scalar"): np.int64(0).__reduce__()[0],
    }
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # bytes in protocol-2 pickles
    }
    for (module, name), function in rebuilders.items():
        for package in ("numpy.core", "numpy._core"):  # numpy 1.x and 2.x spell them so
            allowed[(f"{package}.{module}", name)] = function
    return allowed


class _NumpyUnpickler(pickle.Unpickler):
    """``pickle.load(f, encoding="bytes")`` that refuses every global but numpy's own."""

    allowed: ClassVar[dict[tuple[str, str], Any]] = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}") from None


def _unpickle(path: Path) -> Any:
    try:
        with open(path, "rb") as handle:
            return _NumpyUnpickler(handle, encoding="bytes").load()
    except Exception as exc:  # garbage or a truncated file: many exception types, one fix
        raise DataNotFoundError(
            f"Cannot read {path}: it is not a CIFAR-10 python batch ({type(exc).__name__}: "
            f"{exc}). Delete it and fetch it again (`data.download=true`), or replace it with "
            "the file from the original archive."
        ) from exc


def _field(batch: dict, key: str) -> Any:
    """A batch value by its Python 2 (bytes) or Python 3 (str) key."""
    return batch.get(key.encode(), batch.get(key))


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch as uint8 images ``(N, 3, 32, 32)`` and int64 labels ``(N,)``."""
    batch = _unpickle(path)
    data = _field(batch, "data") if isinstance(batch, dict) else None
    labels = _field(batch, "labels") if isinstance(batch, dict) else None
    problem = None
    if data is None or labels is None:
        problem = "it is not a dict with 'data' and 'labels'"
    elif not (isinstance(data, np.ndarray) and data.dtype == np.uint8):
        problem = f"its 'data' is {type(data).__name__} {getattr(data, 'dtype', '')}, not uint8"
    elif data.ndim != 2 or data.shape[1] != _PIXELS:
        problem = f"its 'data' has shape {data.shape}, not (N, {_PIXELS})"
    else:
        labels = np.asarray(labels)
        if labels.shape != (len(data),) or labels.dtype.kind not in "iu":
            problem = f"it holds {len(data)} images but labels of shape {labels.shape}"
        elif len(labels) and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
            problem = f"its labels run from {labels.min()} to {labels.max()}, not 0..9"
    if problem:
        raise DataNotFoundError(
            f"{path} is not a CIFAR-10 batch: {problem}. Delete it and fetch it again "
            "(`data.download=true`), or replace it with the file from the original archive."
        )
    return data.reshape(-1, *_SHAPE), labels.astype(np.int64)


def write_batch(path: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """Write uint8 images ``(N, 3, 32, 32)`` and labels as a batch file this plugin reads.

    The inverse of :func:`read_batch`, in the original files' format (a protocol-2 pickle
    with bytes keys): turns any 32x32 RGB images into CIFAR-10 batches.
    """
    batch = {
        b"data": np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), _PIXELS),
        b"labels": [int(label) for label in labels],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(batch, protocol=2))
    return path


def read_label_names(path: Path) -> list[str]:
    """The class names in ``batches.meta`` (the standard ten when the file is absent)."""
    if not path.is_file():
        return list(CLASS_NAMES)
    meta = _unpickle(path)
    names = _field(meta, "label_names") if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != len(CLASS_NAMES):
        raise DataNotFoundError(
            f"{path} is not a CIFAR-10 meta file (no list of {len(CLASS_NAMES)} "
            "'label_names'). Delete it (the standard names are used) or replace it."
        )
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _wanted(name: str) -> PurePosixPath | None:
    """A batch's name (``data_batch_1`` ...) for a member holding one, else None."""
    base = PurePosixPath(name).name
    return PurePosixPath(base) if base in {*TRAIN_BATCHES, TEST_BATCH, META} else None


def extract(archive: Path, dest: Path) -> Path:
    """Extract the batches of ``archive`` into ``dest/cifar-10-batches-py``; return that folder.

    Only regular files with the batches' names are written, under names chosen here, so an
    archive cannot write outside ``dest`` (no member paths, links or devices are honoured);
    and only once the whole archive has read cleanly and holds all six batches
    (:func:`~pipelines.runtime.downloads.extract_tar`): a damaged or interrupted extraction never
    leaves a folder that passes for the dataset.
    """
    required = (*TRAIN_BATCHES, TEST_BATCH)
    return extract_tar(archive, dest / FOLDER, _wanted, required, "the CIFAR-10 python archive")


class CIFAR10DataModule(InMemoryImageData):
    """50,000 + 10,000 32x32 colour images of ten classes; validation is a seeded split."""

    archive: ClassVar[RemoteFile] = ARCHIVE

    def __init__(
        self,
        root: str = "data_cache/cifar10",
        download: bool = False,
        batch_size: BatchSize = 64,
        val_fraction: float = 0.1,
        seed: Seed = 0,
        train_limit: int | None = None,
        classes: list[int] | None = None,
        augment: AugmentSettings | None = None,
    ) -> None:
        """``classes`` keeps only those labels (re-indexed 0..k-1, in the order given): e.g.
        ``[6]``, the frogs the book's GAN learns to draw. ``train_limit`` then caps the
        training batches' samples (before the validation split)."""
        super().__init__(batch_size=batch_size, seed=seed, augment=augment)
        self.root = Path(root).expanduser().resolve()
        self.download = download
        self.val_fraction = val_fraction
        self.train_limit = train_limit
        self.keep = list(classes) if classes else None
        wrong = [c for c in self.keep or [] if not 0 <= c < len(CLASS_NAMES)]
        if wrong or (self.keep and len(set(self.keep)) != len(self.keep)):
            raise ConfigValueError(
                f"data.classes={self.keep} must list distinct CIFAR-10 labels 0..9 "
                f"({', '.join(f'{i}={n}' for i, n in enumerate(CLASS_NAMES))})."
            )

    def folders(self) -> list[Path]:
        """Where the extracted batches may be: ``root/cifar-10-batches-py`` or root itself."""
        return [self.root / FOLDER, self.root]

    def locate(self) -> Path:
        """The folder holding all six batches: found, extracted, or downloaded and extracted."""
        required = (*TRAIN_BATCHES, TEST_BATCH)
        lacks = ""  # what a partly filled folder lacks, for the error below
        for folder in self.folders():
            missing = [name for name in required if not (folder / name).is_file()]
            if not missing:
                return folder
            if len(missing) < len(required):
                lacks += f" {folder}/ lacks {', '.join(missing)}."
        tarball = self.root / self.archive.filename
        if self.download:
            # checked: a tarball cut short by an interrupted download is fetched again
            tarball = ensure_file(self.archive, self.root)
        elif not tarball.is_file():
            looked = ", ".join(f"{folder}/" for folder in self.folders())
            raise DataNotFoundError(
                f"CIFAR-10 is missing: no folder with {', '.join(required)} (looked in "
                f"{looked}) and no {tarball}.{lacks} Either set `data.download=true` to fetch "
                f"{tarball.name} into {self.root}, or put that file (or its extracted "
                f"{FOLDER}/ folder) there, or point `data.root=` at the folder that "
                "holds them."
            )
        return extract(tarball, self.root)

    def prepare_data(self) -> None:
        self.locate()

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        folder = self.locate()
        train = [read_batch(folder / name) for name in TRAIN_BATCHES]
        train_images, train_labels = select_classes(
            np.concatenate([images for images, _ in train]),
            np.concatenate([labels for _, labels in train]),
            self.keep,
        )
        del train
        test_images, test_labels = select_classes(*read_batch(folder / TEST_BATCH), self.keep)
        if self.train_limit:
            train_images = train_images[: self.train_limit]
            train_labels = train_labels[: self.train_limit]
        split = stratified_split(train_labels, self.val_fraction, 0.0, self.seed)
        self.splits = {
            "train": image_tensors(train_images[split["train"]], train_labels[split["train"]]),
            "val": image_tensors(train_images[split["val"]], train_labels[split["val"]]),
            "test": image_tensors(test_images, test_labels),
        }
        names = read_label_names(folder / META)
        self.classes = [names[c] for c in self.keep] if self.keep else names

    def known_classes(self) -> list[str] | None:
        return [CLASS_NAMES[c] for c in self.keep] if self.keep else list(CLASS_NAMES)
