"""Text classification data: texts -> :class:`TextVectorizer` tensors, cached, batched by index.

:class:`TextDataModule` is the shared base (IMDB, Reuters and any labelled text file): a
subclass reads its texts (:meth:`TextDataModule.load_texts`); the base splits off what the
data does not provide (validation, test: seeded and stratified), learns the vocabulary on
the training split only, vectorizes every split (book ch. 11: ``TextVectorization`` adapted
on the training texts) and caches the result in ``cache_dir``, keyed by the data settings
and the input files' sizes and mtimes: the next run loads the ids instead of reading and
tokenizing the texts again. The fitted vectorizer is ``tokenizer.json`` (it also records the
class names by label index), logged with the run; rebuilding the run (``evaluate``,
``predict``) hands it back (:meth:`TextDataModule.use_artifacts`), so any data is encoded
with the run's vocabulary and labels, never with ones fitted anew.

:class:`TextClassificationDataModule` (``data=text_classification data.path=FILE``) reads a
CSV with a header (``text,label`` by default; RFC-4180 quoting, newlines inside quotes) or
lines of ``text<TAB>label`` (the UCI sentiment files), told apart by the file's name and
first line.

Data whose vectorized tensors would not fit ``memory_budget`` is streamed from disk instead
(``in_memory: auto|true|false``; :mod:`plugins.data.streamed_text`): the same splits,
vocabulary and batches, the token ids memory-mapped from the cache folder.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import inspect
import json
import logging
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import lightning as L
import numpy as np
import torch

from pipelines.api import (
    BatchSize,
    ConfigValueError,
    DataNotFoundError,
    Seed,
    TensorSplitLoaders,
    atomic_torch_save,
    folder_given_error,
    reading_data_file,
)
from plugins.data import streamed_text
from plugins.data.memory_budget import InMemory, check_in_memory, memory_budget_bytes
from plugins.data.streamed_text import SPLITS, StreamedTextSplits, TextSource
from plugins.data.vectorize import Encoded, TextVectorizer, VectorizeSettings
from plugins.data.vision import check_split_fractions, stratified_split

log = logging.getLogger(__name__)

#: split name -> (texts, integer labels)
Texts = dict[str, tuple[list[str], np.ndarray]]
#: the same, the texts left on disk (the streamed path): split name -> (source, labels)
TextStreamParts = dict[str, tuple[TextSource, np.ndarray]]
#: 2: the entry's tokenizer.json records the classes (a run logs that file)
_CACHE_VERSION = 2
#: constructor arguments that do not change the prepared tensors
_NOT_IN_CACHE_KEY = ("batch_size", "cache_dir", "in_memory", "memory_budget")


def read_document(path: Path) -> str:
    """A text file's contents; a binary file (an image given to a text model, say) is
    refused rather than read as noise that still gets a confident prediction. Text that
    is not UTF-8 is read with replacement characters, as before."""
    data = path.read_bytes()
    if b"\0" in data[:8192]:  # what git and grep take as "binary"
        raise ValueError(f"{path} is not a text file (it holds binary data)")
    return data.decode("utf-8", errors="replace")


def text_values(values: Any) -> list[str]:
    """The texts of ``values`` (strings, or a DataFrame's ``text`` column), or one paragraph
    saying what a text run takes."""
    import pandas as pd

    if isinstance(values, pd.DataFrame):
        if "text" not in values.columns:
            raise ConfigValueError(
                f"A text run predicts from a DataFrame's 'text' column; this one has "
                f"{', '.join(map(repr, values.columns)) or 'no columns'}. Name the column "
                "of texts 'text', or give a list of strings."
            )
        values = values["text"].tolist()
    elif isinstance(values, (str, bytes)):
        values = [values]
    texts = list(values)
    wrong = next((value for value in texts if not isinstance(value, str)), None)
    if wrong is not None or not texts:
        what = type(wrong).__name__ if wrong is not None else "nothing"
        raise ConfigValueError(
            f"A text run predicts from texts (strings), got {what}: give a list of strings "
            "or a DataFrame with a 'text' column (text files: python -m pipelines.predict)."
        )
    return texts


class TextDataModule(StreamedTextSplits, TensorSplitLoaders, L.LightningDataModule):
    """Texts with integer labels, vectorized once into in-memory tensors.

    Subclasses implement :meth:`load_texts` (and set ``self.classes``) and
    :meth:`input_files`; they may override :meth:`prepare_data` to find or fetch files.
    ``vectorize`` is the :class:`~plugins.data.vectorize.VectorizeSettings` (a config
    group, ``vectorize=sequence`` etc.). ``val_fraction``/``test_fraction`` are of the
    training texts, used only for the splits the data does not provide. ``cache_dir``
    ``None`` turns the cache off.

    ``in_memory``: ``auto`` vectorizes into memory when the tensors fit ``memory_budget``
    (bytes, ``"2GB"``, a fraction of the available memory in (0, 1], or null for a quarter
    of it) and streams from disk otherwise; ``true``/``false`` force a path. Streaming needs
    a subclass that implements :meth:`stream_texts` and :meth:`count_texts` (the path's
    methods: :class:`~plugins.data.streamed_text.StreamedTextSplits`); ``data_path`` says
    which path :meth:`setup` took.
    """

    #: the cache entry's prefix (``<cache_name>-<key>/``)
    cache_name = "text"
    #: what :meth:`encode_inputs` reads (``predict`` names it when a file is not that)
    predict_inputs = "text files (UTF-8 or Latin-1, one document each)"

    def __init__(
        self,
        vectorize: VectorizeSettings | None = None,
        batch_size: BatchSize = 32,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        seed: Seed = 0,
        cache_dir: str | None = None,
        in_memory: InMemory = "auto",
        memory_budget: int | float | str | None = None,
    ) -> None:
        super().__init__()
        self.init_args = _init_args(self, inspect.currentframe())  # the cache key's settings
        if vectorize is None:
            vectorize = VectorizeSettings()
        elif not isinstance(vectorize, VectorizeSettings):
            vectorize = VectorizeSettings(**vectorize)
        check_split_fractions(val_fraction, test_fraction, "texts")
        self.vectorize = vectorize
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        self.cache_dir = Path(cache_dir).expanduser().resolve() if cache_dir else None
        self.in_memory = check_in_memory(in_memory, "vectorizes the texts into memory")
        self.memory_budget = memory_budget_bytes(memory_budget)  # checked before the run
        #: "in_memory" or "streamed", after :meth:`setup` (the run's tag pipelines.data_path)
        self.data_path: str | None = None
        #: streamed: split -> its token ids on disk and labels (``splits`` stays empty)
        self.streams: dict[str, streamed_text.SplitStore] = {}
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.classes: list[str] = []
        self.vectorizer: TextVectorizer | None = None
        self.tokenizer_path: Path | None = None
        #: an earlier run's vectorizer and class names (:meth:`use_artifacts`): used as
        #: they are, never fitted or derived from the data again
        self.fixed_vectorizer: TextVectorizer | None = None
        self.run_classes: list[str] | None = None
        #: the test split's original texts, by row of its tensors, when setup() read the
        #: files (not when it loaded the cache, which holds ids only): the report shows them
        self.test_texts: list[str] | None = None

    # -- what subclasses provide ----------------------------------------------------------

    def load_texts(self) -> Texts:
        """``{"train": (texts, labels), ...}`` ("val"/"test" optional); sets ``classes``."""
        raise NotImplementedError

    def input_files(self) -> list[Path]:
        """The files the texts are read from (their sizes and mtimes key the cache)."""
        raise NotImplementedError

    def stream_texts(self) -> TextStreamParts:
        """:meth:`load_texts` for the streamed path: the labels, and where each part's
        texts are (:class:`~plugins.data.streamed_text.TextSource`), read as they are
        needed; sets ``classes``. A subclass that implements it (and :meth:`count_texts`)
        can stream."""
        raise NotImplementedError

    def count_texts(self) -> int:
        """About how many texts there are (at most a few more), without reading them."""
        raise NotImplementedError

    @property
    def can_stream(self) -> bool:
        return type(self).stream_texts is not TextDataModule.stream_texts

    # -- Lightning ------------------------------------------------------------------------

    def adapt_to_model(self, model_class: type) -> None:
        """Resolve ``vectorize.mode: auto`` from the model's ``input_kind`` (before setup)."""
        self.vectorize = self.vectorize.for_model(getattr(model_class, "input_kind", None))

    def use_artifacts(self, files: Mapping[str, Path]) -> None:
        """Encode with what an earlier run fitted (its :meth:`artifacts`), before setup().

        ``evaluate``/``predict`` rebuild a run's data, perhaps from other files
        (``data.path=...``): a vocabulary learned on those would hand the run's model word
        ids it never learned, and classes derived from them would shift the label indices
        when a class is missing. ``tokenizer.json`` fixes the vectorizer and, where it
        records them, each class name's label index (older runs did not: their classes are
        derived from the data, as they were).
        """
        if "tokenizer.json" not in files:
            return
        try:
            self.fixed_vectorizer = TextVectorizer.load(files["tokenizer.json"])
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigValueError(
                f"The run's fitted vectorizer (artifact data/tokenizer.json) cannot be read "
                f"({exc}), so texts cannot be encoded as the run encoded them."
            ) from None
        self.run_classes = self.fixed_vectorizer.classes

    def prepare_to_encode(self, model: Any) -> bool:
        """Ready :meth:`encode_inputs` and ``classes`` for ``predict`` from the run's
        ``tokenizer.json`` alone (:meth:`use_artifacts`), without reading any texts. False
        (set the data up instead) for a run that did not log it with its class names, or
        whose model was built for another number of classes."""
        if self.fixed_vectorizer is None or not self.run_classes:
            return False
        num_classes = dict(getattr(model, "hparams", None) or {}).get("num_classes")
        if num_classes not in (None, len(self.run_classes)):
            return False
        self.vectorize = self.fixed_vectorizer.settings
        self.vectorizer = self.fixed_vectorizer
        self.classes = list(self.run_classes)
        return True

    def setup(self, stage: str | None = None) -> None:
        if self.splits or self.streams:
            return
        started = time.perf_counter()
        self.vectorize = self.vectorize.for_model(None)  # auto without a model: bags
        if self.fixed_vectorizer is not None:
            if self.vectorize != self.fixed_vectorizer.settings:
                log.warning(
                    "%s: data.vectorize differs from the run's fitted vectorizer; using the "
                    "run's (%s), which its model was trained on",
                    self.cache_name,
                    self.fixed_vectorizer.settings,
                )
            self.vectorize = self.fixed_vectorizer.settings
        if self._streamed():
            self._set_up_streams(started)
            return
        entry, loaded = self._cached()
        if loaded is None:
            vectorizer, encoded, labels = self._prepare()
            if entry:
                self._write_cache(entry, vectorizer, encoded, labels)
        else:
            vectorizer, encoded, labels = loaded
        if entry:
            self.tokenizer_path = entry / "tokenizer.json"
        self.vectorizer = vectorizer
        self.splits = {
            name: (vectorizer.tensors(encoded[name]), torch.from_numpy(labels[name]).long())
            for name in SPLITS
        }
        sizes = ", ".join(f"{name} {len(labels[name])}" for name in SPLITS)
        log.info(
            "%s: %d classes, %s, %s %s in %.1fs%s",
            self.cache_name,
            len(self.classes),
            sizes,
            self.vectorize.mode,
            tuple(self.splits["train"][0].shape[1:]),
            time.perf_counter() - started,
            " (cached)" if loaded is not None else "",
        )

    def encode_inputs(self, paths: list[Path]) -> torch.Tensor:
        """Text files (one document each) vectorized as the training texts were."""
        assert self.vectorizer is not None, "setup() first"
        return self.vectorizer.transform([read_document(Path(path)) for path in paths])

    def encode_values(self, values: Any) -> torch.Tensor:
        """Texts as a person holds them -- a list of strings, or a pandas DataFrame with a
        ``text`` column -- vectorized as the training texts were."""
        assert self.vectorizer is not None, "setup() first"
        texts = text_values(values)
        return self.vectorizer.transform(texts)

    def model_kwargs(self) -> dict[str, Any]:
        """``input_shape`` and ``num_classes``; ``vocab_size`` for id sequences (int, char);
        ``vocabulary`` (the tokens by id) for word ids (int), for pretrained word vectors."""
        kwargs: dict[str, Any] = {
            "input_shape": self._input_shape(),
            "num_classes": len(self.classes),
        }
        if self.vectorize.sequences:
            assert self.vectorizer is not None
            kwargs["vocab_size"] = self.vectorizer.width
        if self.vectorize.mode == "int":
            assert self.vectorizer is not None
            kwargs["vocabulary"] = self.vectorizer.vocabulary
        return kwargs

    def artifacts(self) -> dict[str, Path]:
        """Files worth keeping with the run, what :meth:`use_artifacts` takes back: the
        fitted vectorizer, ``tokenizer.json``, with the class names by label index."""
        if self.vectorizer is None:
            return {}
        if self.tokenizer_path is None or not self.tokenizer_path.is_file():
            folder = Path(tempfile.mkdtemp(prefix="pipelines-text-"))
            self.tokenizer_path = self.vectorizer.save(folder / "tokenizer.json")
        return {"tokenizer.json": self.tokenizer_path}

    # -- reading, splitting, vectorizing --------------------------------------------------

    def _prepare(self) -> tuple[TextVectorizer, dict[str, Encoded], dict[str, np.ndarray]]:
        parts = self.split(self._in_run_classes(self.load_texts()))
        self.test_texts = list(parts["test"][0])
        if not parts["train"][0]:
            raise self._no_training_texts()
        if self.fixed_vectorizer is not None:
            vectorizer = self.fixed_vectorizer
            encoded = {"train": vectorizer.encode(parts["train"][0])}
        else:
            vectorizer = TextVectorizer(self.vectorize)
            encoded = {"train": vectorizer.fit_encode(parts["train"][0])}
            vectorizer.classes = list(self.classes)  # saved with it: a rebuild's labels
        for name in ("val", "test"):
            encoded[name] = vectorizer.encode(parts[name][0])
        labels = {name: np.asarray(parts[name][1], dtype=np.int64) for name in SPLITS}
        return vectorizer, encoded, labels

    def _no_training_texts(self) -> DataNotFoundError:
        return DataNotFoundError(
            f"No training texts for {self.cache_name}: the files hold none. "
            "Check `data.path`/`data.root`."
        )

    def _in_run_classes(self, data: Texts) -> Texts:
        """``data`` with its labels as indices of the run's classes, when they are known.

        :meth:`load_texts` numbers the classes it finds; with another file than the run's,
        a class it lacks would move every later class down one index. Mapping by name
        keeps each class on the output the run's model learned for it.
        """
        if self.run_classes is None or self.classes == self.run_classes:
            return data
        index = {name: i for i, name in enumerate(self.run_classes)}
        used = set()
        for _, labels in data.values():
            used.update(self.classes[i] for i in np.unique(np.asarray(labels, dtype=np.int64)))
        unknown = sorted(used - index.keys())
        if unknown:
            where = f"The {self.cache_name} data"
            raise ConfigValueError(unknown_to_run(where, unknown, self.run_classes))
        lookup = np.array([index.get(name, -1) for name in self.classes], dtype=np.int64)
        self.classes = list(self.run_classes)
        return {
            name: (texts, lookup[np.asarray(labels, dtype=np.int64)])
            for name, (texts, labels) in data.items()
        }

    def split(self, data: Texts) -> Texts:
        """The given splits, plus val/test split off train (seeded, stratified if possible)."""
        rows = self.split_rows({name: labels for name, (_, labels) in data.items()})
        parts: Texts = {}
        for name, (part, index) in rows.items():
            texts, labels = data[part]
            if part != "train":
                parts[name] = (list(texts), np.asarray(labels, dtype=np.int64))
            else:
                labels = np.asarray(labels, dtype=np.int64)
                parts[name] = ([texts[i] for i in index], labels[index])
        return parts

    def split_rows(self, labels: Mapping[str, Any]) -> dict[str, tuple[str, np.ndarray]]:
        """Each split's part of the data (``train`` unless the data gives the split) and
        its rows there, in split order: what :meth:`split` takes, given the labels only."""
        train = np.asarray(labels["train"], dtype=np.int64)
        val_fraction = 0.0 if "val" in labels else self.val_fraction
        test_fraction = 0.0 if "test" in labels else self.test_fraction
        index = split_indices(train, val_fraction, test_fraction, self.seed)
        return {
            name: (name, np.arange(len(labels[name])))
            if name in labels and name != "train"
            else ("train", index[name])
            for name in SPLITS
        }

    # -- the cache ------------------------------------------------------------------------

    def _cached(
        self,
    ) -> tuple[
        Path | None, tuple[TextVectorizer, dict[str, Encoded], dict[str, np.ndarray]] | None
    ]:
        """The cache entry to use and what it holds (None: prepare, then write it there).

        With a run's vectorizer (:meth:`use_artifacts`) the entry's key includes it and the
        run's classes, so an entry fitted on other data is never read or overwritten. The
        entry the run itself wrote (same files, a vectorizer equal to the run's, the same
        classes) is read as it is: a faithful rebuild tokenizes nothing again.
        """
        entry = self._cache_entry()
        if entry is None:
            return None, None
        if self.fixed_vectorizer is not None:
            own = self._cache_entry(fitted=True)
            if own is not None and self._fits_run(own):
                loaded = self._read_cache(own)
                same_classes = self.run_classes is None or self.classes == self.run_classes
                if loaded is not None and same_classes:
                    return own, loaded
        return entry, self._read_cache(entry)

    def _fits_run(self, entry: Path) -> bool:
        """Whether ``entry`` holds a vectorizer equal to the run's."""
        assert self.fixed_vectorizer is not None
        try:
            cached = TextVectorizer.load(entry / "tokenizer.json")
        except (OSError, ValueError, KeyError):
            return False
        return cached.to_json() == self.fixed_vectorizer.to_json()

    def _cache_entry(self, fitted: bool = False) -> Path | None:
        """``cache_dir/<name>-<key>/``: the key hashes the settings and the input files, and
        the run's vectorizer and classes when they are given (unless ``fitted``: the entry a
        run that fits its own vectorizer on these files uses)."""
        if self.cache_dir is None:
            return None
        settings = {
            key: value for key, value in self.init_args.items() if key not in _NOT_IN_CACHE_KEY
        }
        settings["vectorize"] = self.vectorize.model_dump()
        settings["class"] = f"{type(self).__module__}.{type(self).__qualname__}"
        settings["version"] = _CACHE_VERSION
        if not fitted and self.fixed_vectorizer is not None:
            vectorizer = self.fixed_vectorizer.to_json().encode()
            settings["vectorizer"] = hashlib.sha256(vectorizer).hexdigest()
        if not fitted and self.run_classes is not None:
            settings["run_classes"] = list(self.run_classes)
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
        for path in self.input_files():
            stat = path.stat()
            digest.update(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
        return self.cache_dir / f"{self.cache_name}-{digest.hexdigest()[:20]}"

    def _read_cache(
        self, entry: Path
    ) -> tuple[TextVectorizer, dict[str, Encoded], dict[str, np.ndarray]] | None:
        tensors, tokenizer = entry / "tensors.pt", entry / "tokenizer.json"
        if not (tensors.is_file() and tokenizer.is_file()):
            return None
        try:
            payload = torch.load(tensors, map_location="cpu", weights_only=True)
            vectorizer = TextVectorizer.load(tokenizer)
            encoded = {name: Encoded.from_dict(payload["splits"][name]) for name in SPLITS}
            labels = {name: payload["labels"][name].numpy() for name in SPLITS}
            classes = [str(c) for c in payload["classes"]]
            if any(len(labels[name]) != encoded[name].count for name in SPLITS):
                raise ValueError("labels and texts disagree in number")
        except Exception as exc:  # truncated or foreign files: prepare again, overwrite them
            log.warning("%s: ignoring the unusable cache %s (%s)", self.cache_name, entry, exc)
            return None
        self.classes = classes
        return vectorizer, encoded, labels

    def _write_cache(
        self,
        entry: Path,
        vectorizer: TextVectorizer,
        encoded: dict[str, Encoded],
        labels: dict[str, np.ndarray],
    ) -> None:
        """The tokenizer, then the tensors (their presence marks a complete entry)."""
        payload = {
            "version": _CACHE_VERSION,
            "classes": list(self.classes),
            "splits": {name: encoded[name].to_dict() for name in SPLITS},
            "labels": {name: torch.from_numpy(labels[name]) for name in SPLITS},
        }
        try:
            entry.mkdir(parents=True, exist_ok=True)
            vectorizer.save(entry / "tokenizer.json")
            atomic_torch_save(payload, entry / "tensors.pt")
        except OSError as exc:  # a read-only or full disk costs speed, not the run
            log.warning("%s: could not write the cache %s (%s)", self.cache_name, entry, exc)


def _init_args(instance: Any, frame: FrameType | None) -> dict[str, Any]:
    """The arguments of every ``__init__`` of ``instance`` on the stack (the subclass's win).

    Lightning's ``save_hyperparameters`` would do this too, but also write them into every
    checkpoint, where a settings object breaks ``torch.load(weights_only=True)``.
    """
    found: dict[str, Any] = {}
    while frame is not None and frame.f_code.co_name == "__init__":
        if frame.f_locals.get("self") is not instance:
            break
        info = inspect.getargvalues(frame)
        found.update({name: info.locals[name] for name in info.args[1:]})
        frame = frame.f_back
    return found


def split_indices(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Seeded train/val/test indices; stratified unless a class is too small for that."""
    everything = np.arange(len(labels))
    if val_fraction <= 0 and test_fraction <= 0:
        return {"train": everything, "val": everything[:0], "test": everything[:0]}
    try:
        if val_fraction > 0:
            return stratified_split(labels, val_fraction, test_fraction, seed)
        part = stratified_split(labels, test_fraction, 0.0, seed)
        return {"train": part["train"], "val": everything[:0], "test": part["val"]}
    except (ConfigValueError, ValueError) as exc:
        log.warning("split not stratified (%s): a seeded random split instead", exc)
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = round(len(labels) * test_fraction)
    n_val = round(len(labels) * val_fraction)
    return {
        "train": np.sort(order[n_test + n_val :]),
        "val": np.sort(order[n_test : n_test + n_val]),
        "test": np.sort(order[:n_test]),
    }


def class_names(labels: Iterable[str], where: str = "The training data") -> list[str]:
    """The sorted distinct labels (numerically when every label is an integer).

    At least two: with one class a classifier has nothing to tell apart, and a file whose
    rows all had the same label "trained" to a test accuracy of 1.0 without a word.
    ``where`` names the labels' file in the message.
    """
    distinct = set(labels)
    if len(distinct) < 2:
        found = f"only the class {next(iter(distinct))!r}" if distinct else "no labels"
        raise ConfigValueError(
            f"{where} has {found}: a classifier needs at least 2 classes to learn to tell "
            "apart, and with one it scores a perfect accuracy without learning anything. "
            "Add examples of another class, or check that `data.label_column` names the "
            "column that holds the labels (and `data.path` the file you meant)."
        )
    try:
        return sorted(distinct, key=int)
    except ValueError:
        return sorted(distinct)


def encode_labels(
    labels: list[str], classes: list[str], where: str, from_run: bool = False
) -> np.ndarray:
    """``labels`` as indices of ``classes``; an unknown label is an error naming it.
    ``from_run``: ``classes`` are an earlier run's, which the message says."""
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted(set(labels) - index.keys())
    if unknown and from_run:
        raise ConfigValueError(unknown_to_run(where, unknown, classes))
    if unknown:
        raise ConfigValueError(
            f"{where} has labels the training data does not: {', '.join(unknown[:5])}. "
            f"Known labels: {', '.join(classes)}."
        )
    return np.fromiter((index[label] for label in labels), dtype=np.int64, count=len(labels))


def unknown_to_run(where: str, unknown: list[str], classes: list[str]) -> str:
    """The message for labels that the run whose model is rebuilt never trained on."""
    return (
        f"{where} has labels the run's model was never trained on: "
        f"{', '.join(repr(label) for label in unknown[:5])}. It knows only "
        f"{', '.join(repr(label) for label in classes)} (the classes recorded with the run); "
        "use data with those labels only, or train a new run on this data."
    )


# -- labelled text files ------------------------------------------------------------------

FileFormat = Literal["auto", "csv", "tsv"]


def read_text(path: Path) -> str:
    """The file's text: UTF-8 (a BOM is dropped), else Latin-1 (which reads any bytes)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        log.warning("%s is not UTF-8; reading it as Latin-1", path)
        return data.decode("latin-1")


@contextmanager
def _csv_field_limit(limit: int = 1 << 28):
    previous = csv.field_size_limit()
    csv.field_size_limit(max(previous, limit))
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def read_labelled_file(
    path: Path,
    text_column: str = "text",
    label_column: str = "label",
    file_format: FileFormat = "auto",
    *,
    setting: str = "data.path",
) -> tuple[list[str], list[str]]:
    """Texts and (string) labels of a CSV with a header or of ``text<TAB>label`` lines.

    ``auto`` reads a ``.csv`` file, or a file whose first line names both columns, as CSV;
    anything else as lines split on the last tab (or, for a line without one, on the last
    run of whitespace). Lines are split on ``\\n`` only, never on U+0085 and friends, and
    quotes mean nothing in such lines. ``setting`` is the config key that gave ``path``,
    named by the error for a folder or an unreadable file.
    """
    text = _read_labelled_text(path, setting)
    first_line = text.split("\n", 1)[0].rstrip("\r")
    if file_format == "auto":
        header = next(csv.reader([first_line]), [])
        named = {text_column, label_column} <= {h.strip() for h in header}
        file_format = "csv" if path.suffix.lower() == ".csv" or named else "tsv"
    if file_format == "csv":
        texts, labels = _read_csv(path, text, text_column, label_column)
    else:
        texts, labels = _read_lines(path, text, text_column, label_column)
    if not texts:
        raise DataNotFoundError(
            f"{path} holds no labelled texts (read as {file_format.upper()}). Give a file with "
            "at least one `text<TAB>label` line or CSV row."
        )
    return texts, labels


def _read_labelled_text(path: Path, setting: str = "data.path") -> str:
    """``path``'s text, or one paragraph for a missing, unreadable (permission denied) or
    folder ``path``: ``is_file()`` is False for a folder as for a missing file, and a raw
    PermissionError traceback names no fix (``is_file()`` itself raises it when a folder
    above may not be searched)."""
    with reading_data_file(path, "put an intact copy in its place", setting):
        _require_labelled_file(path, setting)
        return read_text(path)


def _require_labelled_file(path: Path, setting: str) -> None:
    """One paragraph for a folder or a missing file where ``setting`` names a labelled
    text file (called where a refused permission is already one paragraph)."""
    if path.is_dir():
        raise folder_given_error(path, setting, _LABELLED_FILE)
    if not path.is_file():
        raise DataNotFoundError(
            f"The labelled text file {path} does not exist. Point `{setting}=` at {_LABELLED_FILE}."
        )


#: what ``data.path`` (and ``data.test_path``) must name
_LABELLED_FILE = "a CSV with a header or a file of `text<TAB>label` lines"


def _read_csv(
    path: Path, text: str, text_column: str, label_column: str
) -> tuple[list[str], list[str]]:
    import io

    return _collect(_csv_rows(path, io.StringIO(text, newline=""), text_column, label_column))


def _read_lines(
    path: Path, text: str, text_column: str, label_column: str
) -> tuple[list[str], list[str]]:
    return _collect(_tsv_rows(path, text.split("\n"), text_column, label_column))


def _collect(rows: Iterable[tuple[str, str]]) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    for text, label in rows:
        texts.append(text)
        labels.append(label)
    return texts, labels


def _csv_rows(
    path: Path, stream: Iterable[str], text_column: str, label_column: str
) -> Iterator[tuple[str, str]]:
    """``(text, label)`` of each CSV row of ``stream`` (opened with ``newline=""``)."""
    with _csv_field_limit():
        reader = csv.reader(stream)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            header = []
        missing = [c for c in (text_column, label_column) if c not in header]
        if missing:
            raise ConfigValueError(
                f"{path} is read as CSV but its header ({', '.join(header) or 'empty'}) has no "
                f"column {', '.join(repr(c) for c in missing)}. Set `data.text_column=` and "
                "`data.label_column=` to its column names (the first line must be a header)."
            )
        t, lab = header.index(text_column), header.index(label_column)
        start = reader.line_num + 1
        for row in reader:
            if not any(field.strip() for field in row):
                start = reader.line_num + 1
                continue
            label = row[lab].strip() if len(row) > lab else ""
            if not label or len(row) <= t:
                raise ConfigValueError(
                    f"{path}, line {start}: the row has no {label_column!r} value "
                    f"({len(row)} fields for a header of {len(header)}). Fix or remove it."
                )
            yield row[t], label
            start = reader.line_num + 1


def _tsv_rows(
    path: Path, lines: Iterable[str], text_column: str, label_column: str
) -> Iterator[tuple[str, str]]:
    """``(text, label)`` of each ``text<TAB>label`` line (``lines`` split on ``\n``)."""
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        if "\t" in line:
            sentence, label = line.rsplit("\t", 1)
        else:
            fields = line.rstrip().rsplit(None, 1)
            sentence, label = fields if len(fields) == 2 else (line, "")
        label = label.strip()
        if number == 1 and (sentence.strip(), label) == (text_column, label_column):
            continue  # a header line
        if not label:
            raise ConfigValueError(
                f"{path}, line {number}: no label after the text (expected `text<TAB>label`, "
                f"got {line[:60]!r}). Add the label or remove the line; a CSV file needs a "
                "header that names `data.text_column` and `data.label_column`."
            )
        yield sentence, label


class LabelledFile:
    """A labelled text file read row by row, never whole: :func:`read_labelled_file` for
    the streamed path, with its encoding, format and errors (a
    :class:`~plugins.data.streamed_text.TextSource`)."""

    def __init__(
        self,
        path: Path,
        text_column: str = "text",
        label_column: str = "label",
        file_format: FileFormat = "auto",
        setting: str = "data.path",
    ) -> None:
        self.path, self.setting = path, setting
        self.text_column, self.label_column = text_column, label_column
        with self._reading():
            _require_labelled_file(path, setting)
            self.encoding = _text_encoding(path)
            with self._open("\n") as stream:
                first_line = stream.readline().rstrip("\n").rstrip("\r")
        if file_format == "auto":
            header = next(csv.reader([first_line]), [])
            named = {text_column, label_column} <= {h.strip() for h in header}
            file_format = "csv" if path.suffix.lower() == ".csv" or named else "tsv"
        self.file_format = file_format

    def _reading(self) -> Any:
        return reading_data_file(self.path, "put an intact copy in its place", self.setting)

    def _open(self, newline: str) -> Any:
        return self.path.open(encoding=self.encoding, newline=newline)

    def rows(self) -> Iterator[tuple[str, str]]:
        """``(text, label)`` of every row, in file order."""
        columns = (self.text_column, self.label_column)
        with self._reading():
            if self.file_format == "csv":
                with self._open("") as stream:
                    yield from _csv_rows(self.path, stream, *columns)
            else:
                with self._open("\n") as stream:
                    lines = (line[:-1] if line.endswith("\n") else line for line in stream)
                    yield from _tsv_rows(self.path, lines, *columns)

    def labels(self) -> list[str]:
        """Every row's label (one pass over the file, its texts dropped as they are read)."""
        labels = [label for _, label in self.rows()]
        if not labels:
            raise DataNotFoundError(
                f"{self.path} holds no labelled texts (read as {self.file_format.upper()}). "
                "Give a file with at least one `text<TAB>label` line or CSV row."
            )
        return labels

    def texts(self, rows: np.ndarray) -> Iterator[str]:
        wanted = iter(rows.tolist())
        row = next(wanted, None)
        if row is None:
            return
        for number, (text, _) in enumerate(self.rows()):
            if number == row:
                yield text
                row = next(wanted, None)
                if row is None:
                    return


def _text_encoding(path: Path) -> str:
    """:func:`read_text`'s choice without holding the file: UTF-8 (a BOM dropped) if every
    block decodes, else Latin-1."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with path.open("rb") as stream:
            while block := stream.read(1 << 24):
                decoder.decode(block)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        log.warning("%s is not UTF-8; reading it as Latin-1", path)
        return "latin-1"
    return "utf-8-sig"


class TextClassificationDataModule(TextDataModule):
    """Any labelled text file (``path``; ``test_path`` optional), the book's ch. 11 recipe.

    Labels may be words or integers; the classes are the sorted distinct labels of ``path``.
    Without ``test_path``, ``test_fraction`` of ``path`` is held out as the test split.
    ``in_memory``/``memory_budget``: see :class:`TextDataModule` (streamed, the file is
    read row by row).
    """

    cache_name = "text_classification"

    def __init__(
        self,
        path: str,
        test_path: str | None = None,
        text_column: str = "text",
        label_column: str = "label",
        file_format: FileFormat = "auto",
        vectorize: VectorizeSettings | None = None,
        batch_size: BatchSize = 32,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        seed: Seed = 0,
        cache_dir: str | None = None,
        in_memory: InMemory = "auto",
        memory_budget: int | float | str | None = None,
    ) -> None:
        super().__init__(
            vectorize=vectorize,
            batch_size=batch_size,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            seed=seed,
            cache_dir=cache_dir,
            in_memory=in_memory,
            memory_budget=memory_budget,
        )
        self.path = Path(path).expanduser().resolve()
        self.test_path = Path(test_path).expanduser().resolve() if test_path else None
        self.text_column = text_column
        self.label_column = label_column
        self.file_format = file_format

    def input_files(self) -> list[Path]:
        files = [(self.path, "data.path")]
        if self.test_path:
            files.append((self.test_path, "data.test_path"))
        for path, setting in files:
            with reading_data_file(path, setting=setting):  # is_file() may be denied too
                present = path.is_file()
            if not present:
                _read_labelled_text(path, setting)  # raises the one-paragraph error
        return [path for path, _ in files]

    def prepare_data(self) -> None:
        self.input_files()

    def load_texts(self) -> Texts:
        columns = (self.text_column, self.label_column, self.file_format)
        texts, labels = read_labelled_file(self.path, *columns)
        data: Texts = {"train": (texts, self._train_labels(labels))}
        if self.test_path:
            test_texts, test_labels = read_labelled_file(
                self.test_path, *columns, setting="data.test_path"
            )
            data["test"] = (test_texts, self._test_labels(test_labels))
        return data

    def _train_labels(self, labels: list[str]) -> np.ndarray:
        """The labels as class indices; sets ``classes`` (a rebuilt run keeps its own:
        another file may lack one, or add one)."""
        from_run = self.run_classes is not None
        self.classes = list(self.run_classes) if from_run else class_names(labels, str(self.path))
        return encode_labels(labels, self.classes, str(self.path), from_run)

    def _test_labels(self, labels: list[str]) -> np.ndarray:
        from_run = self.run_classes is not None
        return encode_labels(labels, self.classes, str(self.test_path), from_run)

    # -- the streamed path: the file read row by row -----------------------------------

    def count_texts(self) -> int:
        """The files' lines: every row, and a header or blank line or two more."""
        count = 0
        settings = ("data.path", "data.test_path")
        for path, setting in zip(self.input_files(), settings, strict=False):  # found, or said
            with reading_data_file(path, setting=setting):
                count += streamed_text.count_lines(path)
        return count

    def stream_texts(self) -> TextStreamParts:
        columns = (self.text_column, self.label_column, self.file_format)
        train = LabelledFile(self.path, *columns)
        data: TextStreamParts = {"train": (train, self._train_labels(train.labels()))}
        if self.test_path:
            test = LabelledFile(self.test_path, *columns, "data.test_path")
            data["test"] = (test, self._test_labels(test.labels()))
        return data
