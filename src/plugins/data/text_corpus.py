"""A plain-text corpus as next-character windows (book 1st ed. 8.1 / 2nd ed. 12.1).

The book's char-level LSTM reads Nietzsche lower-cased, cuts it into sequences of
``maxlen = 60`` characters every ``step = 3`` characters and asks for the character that
follows each one. :class:`TextCorpusDataModule` does the same for any ``.txt`` file
(``data.path``), or, with ``path`` null, for an offline default: the English text of the
Python documentation topics bundled with the standard library (``pydoc_data.topics``).

Differences from the book, and why:

* The text is split **in time**: the last ``val_fraction`` (and ``test_fraction``) of the
  characters are validation (and test), so no window of one split overlaps another.
* The characters are those of the **training** text, sorted, plus one unknown id (the last
  one, shown as U+FFFD) for characters only the other splits or a seed text use.
* Windows are **gathered per batch** from one int64 tensor of character ids (never the
  book's ``(200000, 60, 57)`` one-hot array); the model embeds or one-hot encodes them.

The data also gives the bar a char model must clear, the **unigram baseline**
(:meth:`TextCorpusDataModule.unigram_bpc`): the cross-entropy, in bits per character, of
the training text's character frequencies (add-one smoothed) on a split's targets.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from pipelines.api import (
    BatchSize,
    ConfigValueError,
    DataNotFoundError,
    FollowsTrainerEpoch,
    RemoteFile,
    Seed,
    SplitLoaders,
    download,
    file_already_there,
    folder_given_error,
    reading_data_file,
)

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
#: the id of characters the training text does not have (always the last id)
UNKNOWN = "\ufffd"


#: what ``data.path`` must name, for the message when it names a folder
_EXPECTED = "a plain-text file, e.g. a .txt"


def pydoc_topics_text() -> str:
    """The English text of Python's bundled documentation topics (sorted keys, joined)."""
    from pydoc_data.topics import topics

    return "".join(topics[key] for key in sorted(topics))


def read_corpus(path: Path) -> str:
    """A text file as the book reads it (universal newlines); UTF-8 (BOM dropped) or Latin-1."""
    try:
        with path.open(encoding="utf-8-sig") as handle:
            return handle.read()
    except UnicodeDecodeError:
        log.warning("%s is not UTF-8; reading it as Latin-1", path)
        with path.open(encoding="latin-1") as handle:
            return handle.read()


def build_charset(text: str) -> list[str]:
    """The sorted distinct characters of ``text``, then :data:`UNKNOWN` (always last)."""
    return [*sorted(set(text) - {UNKNOWN}), UNKNOWN]


def encode(text: str, charset: list[str]) -> np.ndarray:
    """Character ids of ``text`` (int64); characters not in ``charset`` get the unknown id."""
    known = np.array([ord(char) for char in charset[:-1]], dtype=np.int64)  # sorted codes
    codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4").astype(np.int64)
    if not len(known):
        return np.full(len(codes), len(charset) - 1, dtype=np.int64)
    position = np.searchsorted(known, codes).clip(max=len(known) - 1)
    return np.where(known[position] == codes, position, len(charset) - 1).astype(np.int64)


def window_starts(size: int, sequence_length: int, step: int) -> np.ndarray:
    """The book's ``range(0, len(text) - maxlen, step)``: every window with a next char."""
    return np.arange(0, max(size - sequence_length, 0), step, dtype=np.int64)


class CharWindows(FollowsTrainerEpoch):
    """Batches of ``(ids[s : s + L], ids[s + L])`` gathered by index from one id tensor.

    ``limit`` caps the windows of one pass (a seeded random subset, a new one every epoch
    when shuffling). Shuffling is seeded and changes every epoch (``seed + epoch``), like
    :class:`pipelines.api.TensorBatches`.
    """

    def __init__(
        self,
        ids: torch.Tensor,
        starts: torch.Tensor,
        sequence_length: int,
        *,
        batch_size: BatchSize,
        shuffle: bool = False,
        seed: Seed = 0,
        limit: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.ids = ids
        self.starts = starts
        self.offsets = torch.arange(sequence_length, dtype=torch.int64)
        self.sequence_length = sequence_length
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.limit = limit
        self.epoch = 0

    @property
    def size(self) -> int:
        return len(self.starts) if self.limit is None else min(self.limit, len(self.starts))

    def __len__(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def gather(self, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows ``(B, L)`` of character ids and the ids that follow them ``(B,)``."""
        return self.ids[starts[:, None] + self.offsets], self.ids[starts + self.sequence_length]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        starts = self.starts
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            starts = starts[torch.randperm(len(starts), generator=generator)]
        self.epoch += 1
        starts = starts[: self.size]
        for begin in range(0, len(starts), self.batch_size):
            yield self.gather(starts[begin : begin + self.batch_size])


class TextCorpusDataModule(SplitLoaders, L.LightningDataModule):
    """Next-character classification on a text corpus, cut chronologically.

    ``path``: a text file (UTF-8, else Latin-1); null: the Python documentation topics
    (offline). ``lowercase`` as the book; ``max_chars`` keeps the first characters only
    (quick runs). ``sequence_length``/``step``: the book's ``maxlen``/``step``.
    ``val_fraction``/``test_fraction``: the last parts of the text, in that order.
    ``windows_per_epoch`` makes an epoch that many training windows (a new seeded random
    subset each epoch; null: a full pass over the text, as the book and Lightning count an
    epoch); ``train_windows`` is its old name, still taken with a notice (a run recorded
    with it is rebuilt as it was). ``download: true`` fetches ``url`` into ``path`` when the
    file is missing, checked against ``sha256`` when given.
    """

    def __init__(
        self,
        path: str | None = None,
        sequence_length: int = 60,
        step: int = 3,
        batch_size: BatchSize = 128,
        val_fraction: float = 0.1,
        test_fraction: float = 0.0,
        lowercase: bool = True,
        max_chars: int | None = None,
        windows_per_epoch: int | None = None,
        download: bool = False,
        url: str | None = None,
        sha256: str | None = None,
        seed: Seed = 0,
        train_windows: int | None = None,
    ) -> None:
        super().__init__()
        if train_windows is not None:
            log.warning(
                "'data.train_windows' is now 'data.windows_per_epoch'; taking %s from it.",
                train_windows,
            )
            windows_per_epoch = train_windows
        for key, value in (
            ("sequence_length", sequence_length),
            ("step", step),
            ("batch_size", batch_size),
        ):
            if value < 1:
                raise ConfigValueError(f"'data.{key}' must be at least 1, got {value}.")
        for key, value in (("max_chars", max_chars), ("windows_per_epoch", windows_per_epoch)):
            if value is not None and value < 1:
                raise ConfigValueError(f"'data.{key}' must be at least 1 (or null), got {value}.")
        if not 0.0 < val_fraction < 1.0:
            raise ConfigValueError(
                f"'data.val_fraction' must be above 0 and below 1, got {val_fraction}: the "
                "fit stage keeps the best epoch by val/loss."
            )
        if not 0.0 <= test_fraction < 1.0 or val_fraction + test_fraction >= 1.0:
            raise ConfigValueError(
                f"'data.test_fraction' must be at least 0 and leave training text "
                f"(val_fraction + test_fraction < 1), got {test_fraction}."
            )
        self.path = str(Path(path).expanduser()) if path else None
        self.sequence_length = sequence_length
        self.step = step
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.lowercase = lowercase
        self.max_chars = max_chars
        self.windows_per_epoch = windows_per_epoch
        self.download = download
        self.url = url
        self.sha256 = sha256
        self.seed = seed
        self.charset: list[str] = []
        self.texts: dict[str, str] = {}
        self.ids: dict[str, torch.Tensor] = {}

    # -- reading and splitting ------------------------------------------------------------

    def prepare_data(self) -> None:
        if self.path is None or not self.download:
            return
        target = Path(self.path)
        if file_already_there(target, "data.path", _EXPECTED):
            return
        if not self.url:
            raise DataNotFoundError(
                f"No text file at {self.path} and no 'data.url' to download it from."
            )
        log.info("downloading %s to %s", self.url, target)
        download(RemoteFile(target.name, (self.url,), sha256=self.sha256), target.parent)

    def read_text(self) -> str:
        """The whole corpus (lower-cased if asked), cut to ``max_chars``."""
        if self.path is None:
            text = pydoc_topics_text()
        else:
            path = Path(self.path)
            with reading_data_file(path, setting="data.path"):  # is_file() may be denied too
                text = self._read_corpus_file(path)
        if self.lowercase:
            text = text.lower()
        return text[: self.max_chars] if self.max_chars else text

    def _read_corpus_file(self, path: Path) -> str:
        """``path``'s text, or one paragraph for a folder or a missing file: ``is_file()``
        is False for both, and "does not exist" sends a user hunting a typo in a path that
        is there."""
        if path.is_dir():
            raise folder_given_error(path, "data.path", _EXPECTED)
        if not path.is_file():
            if self.url and not self.download:
                fetch = f"; `data.download=true` fetches it from {self.url}"
            elif not self.download:
                fetch = " (or set `data.download=true` with `data.url`)"
            else:
                fetch = ""
            raise DataNotFoundError(
                f"The text corpus {path} does not exist. Point `data.path=` at a .txt "
                f"file{fetch}, or set `data.path=null` for the bundled Python documentation."
            )
        return read_corpus(path)

    def split_text(self, text: str) -> dict[str, str]:
        """Train, then validation, then test, in the text's order (no shared characters)."""
        size = len(text)
        n_val = round(size * self.val_fraction)
        n_test = round(size * self.test_fraction)
        n_train = size - n_val - n_test
        return {
            "train": text[:n_train],
            "val": text[n_train : n_train + n_val],
            "test": text[n_train + n_val :],
        }

    def setup(self, stage: str | None = None) -> None:
        if self.ids:
            return
        self.prepare_data()
        text = self.read_text()
        self.texts = self.split_text(text)
        self.charset = build_charset(self.texts["train"])
        self.ids = {
            name: torch.from_numpy(encode(text, self.charset)) for name, text in self.texts.items()
        }
        short = [name for name in ("train", "val") if not len(self.window_starts(name))]
        if short:
            raise ConfigValueError(self._too_short(short, len(text)))
        log.info(
            "text corpus: %d characters (%s), %d distinct + unknown, %s windows",
            sum(len(text) for text in self.texts.values()),
            self.path or "pydoc topics",
            len(self.charset) - 1,
            ", ".join(f"{name} {len(self.window_starts(name))}" for name in SPLITS),
        )
        training = len(self.window_starts("train"))
        if self.windows_per_epoch is not None and self.windows_per_epoch < training:
            log.info(
                "text corpus: an epoch is %d of the %d training windows, a new random subset "
                "each epoch (data.windows_per_epoch; null: a full pass over the text)",
                self.windows_per_epoch,
                training,
            )

    def _too_short(self, short: list[str], size: int) -> str:
        """Why the ``short`` splits (of a ``size``-character text) hold no window, offering
        only fixes that lengthen them. The validation and test texts are cut off the *end*
        of the text, so a larger ``val_fraction`` lengthens the validation text but shortens
        the training text: advising it for a short training text made things worse. Where
        the text is too short for a window in both, no split setting is offered at all."""
        need = self.sequence_length + 1
        lengths = ", ".join(f"{name} {len(self.texts[name])}" for name in short)
        fixes = ["a longer text"]
        if self.max_chars is not None and size >= self.max_chars:
            fixes.append(f"a larger data.max_chars (it keeps {self.max_chars} characters)")
        if size >= 2 * need:  # some split of the text holds a window in each part
            if short == ["train"]:
                fixes.append(
                    "a smaller data.val_fraction or data.test_fraction (they take the end of "
                    "the text; the training text is what they leave)"
                )
            elif short == ["val"]:
                fixes.append(
                    "a larger data.val_fraction (the validation text is the end of the text, "
                    "before any test text; a larger one shortens the training text)"
                )
            else:  # only val_fraction lengthens the validation text; test takes the rest
                fixes.append("a larger data.val_fraction with a smaller data.test_fraction")
        longest = min(len(self.texts[name]) for name in ("train", "val")) - 1
        if longest >= 1:
            fixes.append(f"a data.sequence_length of at most {longest}")
        choices = f"{', '.join(fixes[:-1])} or {fixes[-1]}" if len(fixes) > 1 else fixes[0]
        return (
            f"The {' and '.join(short)} {'texts hold' if len(short) > 1 else 'text holds'} too "
            f"few characters ({lengths}) for one window of data.sequence_length="
            f"{self.sequence_length} and the character after it ({need}). Use {choices}."
        )

    def window_starts(self, split: str) -> np.ndarray:
        return window_starts(len(self.texts[split]), self.sequence_length, self.step)

    def targets(self, split: str) -> torch.Tensor:
        """The ids the split's windows predict (the characters right after them)."""
        starts = torch.from_numpy(self.window_starts(split))
        return self.ids[split][starts + self.sequence_length]

    # -- what the model and the stages use ------------------------------------------------

    def unigram_bpc(self, split: str = "val") -> float:
        """The unigram baseline in bits per character on ``split``'s window targets.

        ``-mean(log2 p(c))`` over the characters the split's windows predict (the ones the
        model's ``val/bpc`` is scored on), with ``p(c) = (count(c) + 1) / (N + V)``: the
        counts of the N training characters, add-one smoothed over the V ids (the unknown
        id included).
        """
        train = self.ids["train"]
        size = len(self.charset)
        counts = torch.bincount(train, minlength=size).double()
        log2p = torch.log2((counts + 1.0) / (len(train) + size))
        targets = self.targets(split)
        if not len(targets):
            return float("nan")
        return float(-log2p[targets].mean())

    def model_kwargs(self) -> dict[str, Any]:
        """Windows of ids in, one of the characters out; what a model needs to decode alone.

        ``charset`` (the characters by id) and ``seed_text`` (the first window of the
        training text, where sampling starts by default) go into the model's
        hyper-parameters, so a model rebuilt from a run generates without the data;
        ``unigram_bpc`` (validation) is logged beside the model's ``val/bpc``.
        """
        return {
            "input_shape": (self.sequence_length,),
            "num_classes": len(self.charset),
            "vocab_size": len(self.charset),
            "charset": list(self.charset),
            "seed_text": self.texts["train"][: self.sequence_length],
            "unigram_bpc": self.unigram_bpc("val"),
        }

    def _batches(self, split: str, shuffle: bool) -> CharWindows:
        return CharWindows(
            self.ids[split],
            torch.from_numpy(self.window_starts(split)),
            self.sequence_length,
            batch_size=self.batch_size,
            shuffle=shuffle,
            seed=self.seed,
            limit=self.windows_per_epoch if split == "train" else None,
        )
