"""Reuters newswire topics (book ch. 3/4): Keras' ``reuters.npz``, or the R8 text files.

``format: npz`` -- Keras' 11,228 newswires over 46 topics, ``reuters.npz`` (word-index
sequences) and ``reuters_word_index.json`` in ``data.root`` (``data.download=true`` fetches
both, checked by their Keras checksums). The sequences are decoded back to text with the
word index and split 8,982 / 2,246 exactly as ``keras.datasets.reuters.load_data`` does
(``numpy.random.RandomState(113)`` shuffle, the last 20% for test), then vectorized like
any text (the book's multi-hot of the top 10,000 words is ``data.vectorize.max_tokens``).
The npz's ragged arrays are pickles: they are read by an unpickler that only builds numpy
arrays, so a file in ``data.root`` cannot run code.

``format: r8`` -- Cardoso-Cachopo's R8 subset of Reuters-21578 (8 topics, 5,485 / 2,189
documents): ``r8-train-all-terms.txt`` and ``r8-test-all-terms.txt``, lines of
``label<TAB>text``. ``auto`` picks whichever files are in ``data.root`` (npz first).
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from pipelines.api import BatchSize, ConfigValueError, DataNotFoundError, RemoteFile, Seed, download
from plugins.data.text import TextDataModule, Texts, class_names, encode_labels, read_text
from plugins.data.vectorize import VectorizeSettings

_KERAS = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
#: checksums as keras.datasets.reuters declares them (sha256 of the npz, md5 of the json)
NPZ = RemoteFile("reuters.npz", (f"{_KERAS}reuters.npz",), sha256=(
    "d6586e694ee56d7a4e65172e12b3e987c03096cb01eab99753921ef915959916"
))  # fmt: skip
WORD_INDEX = RemoteFile(
    "reuters_word_index.json",
    (f"{_KERAS}reuters_word_index.json",),
    md5="4d44cc38712099c9e383dc6e5f11a921",
)
R8_FILES = {"train": "r8-train-all-terms.txt", "test": "r8-test-all-terms.txt"}
#: keras.datasets.reuters.load_data's defaults, which the book uses
KERAS_SEED = 113
KERAS_TEST_SPLIT = 0.2
#: the 46 topics by label (keras.datasets.reuters.get_label_names)
TOPICS = (
    "cocoa", "grain", "veg-oil", "earn", "acq", "wheat", "copper", "housing",
    "money-supply", "coffee", "sugar", "trade", "reserves", "ship", "cotton", "carcass",
    "crude", "nat-gas", "cpi", "money-fx", "interest", "gnp", "meal-feed", "alum",
    "oilseed", "gold", "tin", "strategic-metal", "livestock", "retail", "ipi", "iron-steel",
    "rubber", "heat", "jobs", "lei", "bop", "zinc", "orange", "pet-chem", "dlr", "gas",
    "silver", "wpi", "hog", "lead",
)  # fmt: skip

Format = Literal["auto", "npz", "r8"]


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The callables an object array's pickle needs: numpy's array and dtype rebuilders."""
    array = np.zeros(1, dtype=np.uint8)
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray}
    allowed[("numpy", "dtype")] = np.dtype
    for package in ("numpy.core", "numpy._core"):  # numpy 1.x and 2.x spell them so
        allowed[(f"{package}.multiarray", "_reconstruct")] = array.__reduce__()[0]
        allowed[(f"{package}.multiarray", "scalar")] = np.int64(0).__reduce__()[0]
    return allowed


class _NumpyUnpickler(pickle.Unpickler):
    allowed: ClassVar[dict[tuple[str, str], Any]] = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}") from None


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz``; object arrays unpickled with numpy's rebuilders only."""
    arrays = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if not member.endswith(".npy"):
                    continue
                stream = io.BytesIO(archive.read(member))
                version = np.lib.format.read_magic(stream)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
                if dtype.hasobject:
                    array = _NumpyUnpickler(stream).load()
                else:
                    stream.seek(0)
                    array = np.lib.format.read_array(stream, allow_pickle=False)
                arrays[member[: -len(".npy")]] = np.asarray(array).reshape(shape)
    except Exception as exc:  # garbage, truncation, a foreign pickle: one fix for all
        raise DataNotFoundError(
            f"Cannot read {path}: it is not Keras' reuters.npz ({type(exc).__name__}: {exc}). "
            "Delete it and fetch it again (`data.download=true`)."
        ) from exc
    return arrays


def keras_split(count: int, seed: int = KERAS_SEED, test_split: float = KERAS_TEST_SPLIT):
    """Indices of ``keras.datasets.reuters.load_data``'s train and test parts, in order."""
    order = np.arange(count)
    np.random.RandomState(seed).shuffle(order)
    cut = int(count * (1 - test_split))
    return order[:cut], order[cut:]


def decode(sequence: Any, words: dict[int, str]) -> str:
    """A raw npz sequence (word ranks, 1 = most frequent) as text; unknown ranks dropped."""
    return " ".join(words[w] for w in (int(x) for x in sequence) if w in words)


class ReutersDataModule(TextDataModule):
    """Newswires labelled by topic (46 in Keras' npz, 8 in R8); validation split from train."""

    cache_name = "reuters"
    remote_files: ClassVar[tuple[RemoteFile, ...]] = (NPZ, WORD_INDEX)

    def __init__(
        self,
        root: str = "data_cache/reuters",
        download: bool = False,
        format: Format = "auto",
        vectorize: VectorizeSettings | None = None,
        batch_size: BatchSize = 512,
        val_fraction: float = 0.1,
        seed: Seed = 0,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__(
            vectorize=vectorize,
            batch_size=batch_size,
            val_fraction=val_fraction,
            test_fraction=0.0,
            seed=seed,
            cache_dir=cache_dir,
        )
        self.root = Path(root).expanduser().resolve()
        self.download = download
        self.format = format

    def _have(self, files: list[str]) -> bool:
        return all((self.root / name).is_file() for name in files)

    def resolved_format(self) -> Literal["npz", "r8"]:
        """``npz`` or ``r8``: as configured, else by the files in ``root``; fetches the npz."""
        npz_files = [remote.filename for remote in self.remote_files]
        r8_files = list(R8_FILES.values())
        if self.format == "r8" or (self.format == "auto" and not self._have(npz_files)):
            if self._have(r8_files):
                return "r8"
            if self.format == "r8" or not self.download:
                raise DataNotFoundError(
                    f"The Reuters files are missing from {self.root}: it holds neither "
                    f"{' and '.join(npz_files)} (Keras, 46 topics) nor {' and '.join(r8_files)} "
                    f"(R8, 8 topics). Set `data.download=true` to fetch Keras' files there, "
                    "or put either pair in that folder, or point `data.root=` at the folder "
                    "that holds them."
                )
        for remote in self.remote_files:
            if not (self.root / remote.filename).is_file():
                if not self.download:
                    raise DataNotFoundError(
                        f"{self.root / remote.filename} is missing (data.format=npz needs "
                        f"{' and '.join(npz_files)}). Set `data.download=true` to fetch it, or "
                        "place it there."
                    )
                download(remote, self.root, timeout=120.0)
        return "npz"

    def prepare_data(self) -> None:
        self.resolved_format()

    def input_files(self) -> list[Path]:
        if self.resolved_format() == "r8":
            return [self.root / name for name in R8_FILES.values()]
        return [self.root / remote.filename for remote in self.remote_files]

    def load_texts(self) -> Texts:
        if self.resolved_format() == "r8":
            return self._load_r8()
        return self._load_npz()

    def _load_npz(self) -> Texts:
        arrays = load_npz(self.root / NPZ.filename)
        if "x" not in arrays or "y" not in arrays or len(arrays["x"]) != len(arrays["y"]):
            raise DataNotFoundError(
                f"{self.root / NPZ.filename} is not Keras' reuters.npz (it needs arrays 'x' "
                "and 'y' of the same length). Delete it and fetch it again."
            )
        index_path = self.root / WORD_INDEX.filename
        try:
            word_index = json.loads(index_path.read_text(encoding="utf-8"))
            words = {int(rank): str(word) for word, rank in word_index.items()}
        except (ValueError, AttributeError, OSError) as exc:
            raise DataNotFoundError(
                f"Cannot read {index_path} as Keras' word index (a JSON object of word -> "
                f"rank): {exc}. Delete it and fetch it again (`data.download=true`)."
            ) from exc
        labels = np.asarray(arrays["y"], dtype=np.int64)
        if len(labels) and labels.min() < 0:
            raise DataNotFoundError(f"{self.root / NPZ.filename} has negative topic labels.")
        count = int(labels.max()) + 1 if len(labels) else 0
        self.classes = (
            list(TOPICS[:count]) if count <= len(TOPICS) else [str(i) for i in range(count)]
        )
        train, test = keras_split(len(labels))
        sequences = arrays["x"]
        return {
            "train": ([decode(sequences[i], words) for i in train], labels[train]),
            "test": ([decode(sequences[i], words) for i in test], labels[test]),
        }

    def _load_r8(self) -> Texts:
        parts: dict[str, tuple[list[str], list[str]]] = {}
        for part, name in R8_FILES.items():
            path = self.root / name
            texts, labels = [], []
            for number, line in enumerate(read_text(path).split("\n"), start=1):
                line = line.rstrip("\r")
                if not line.strip():
                    continue
                label, _, text = line.partition("\t")
                if not label.strip() or not _:
                    raise ConfigValueError(
                        f"{path}, line {number}: expected `label<TAB>text`, got {line[:60]!r}. "
                        "Fix or remove the line."
                    )
                texts.append(text)
                labels.append(label.strip())
            parts[part] = (texts, labels)
        self.classes = class_names(parts["train"][1])
        return {
            part: (texts, encode_labels(labels, self.classes, str(self.root / R8_FILES[part])))
            for part, (texts, labels) in parts.items()
        }
