"""Text vectorization (Keras' ``TextVectorization``, book ch. 11) built on ``tokenizers``.

Standardization (lower case, punctuation and HTML tags such as IMDB's ``<br />`` removed) and
splitting run in Hugging Face ``tokenizers`` (Rust, batched, multi-threaded); the vocabulary is
learned from the training texts only; bags of words are built with one tensor scatter.

The vocabulary follows Keras: id 0 is the padding token ``""`` and id 1 is ``[UNK]`` (every
word the training split did not keep), then the learned tokens by descending frequency. Ties
are broken here by putting single words before bigrams, then alphabetically, so a kept
bigram's two words are always kept too (Keras breaks ties by reverse alphabetical order).

Output modes (``mode``):

* ``multi_hot``, ``count``, ``tf_idf``: float32 bags ``(N, max_tokens)``; column 0 (padding)
  is always 0. ``tf_idf`` is Keras' ``count * log(1 + N / (1 + document_frequency))``, with
  the mean weight of the learned tokens for ``[UNK]``. ``ngrams=2`` adds bigrams ("the movie")
  as tokens of their own, ranked with the single words, like Keras' ``ngrams=2``.
* ``int``: int64 ``(N, sequence_length)`` word ids, the first ``sequence_length`` words of
  each text, padded with 0 at the end (Keras truncates and pads the same way).
* ``char``: the same for characters (spaces included), for character-level models.

The fitted vectorizer is saved as one JSON file: ``{"tokenizer": <a tokenizers JSON that
``tokenizers.Tokenizer.from_str`` reads>, "pipelines": {settings, idf weights, classes}}``.
The tokenizers file cannot carry extra keys, hence the wrapper. ``classes`` (present when a
data module set them) are the label names by index of the texts it was fitted for: the one
file a run logs about its data then tells a rebuild both how to encode texts and which
output is which class.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

Mode = Literal["auto", "multi_hot", "count", "tf_idf", "int", "char"]
SEQUENCE_MODES = ("int", "char")
PAD = ""
UNK = "[UNK]"
FORMAT = "pipelines.text_vectorizer/1"
#: Keras' default punctuation (``lower_and_strip_punctuation``), removed without a space
PUNCTUATION = r"""[!"#$%&()*+,\-./:;<=>?@\[\\\]^_`{|}~']"""
#: HTML tags such as IMDB's ``<br />``, replaced by a space
HTML_TAG = r"<\s*/?\s*[A-Za-z][^<>]*>"
_ALL_WORDS = 1 << 30


class VectorizeSettings(BaseModel):
    """What Keras' ``TextVectorization`` is told, with the book's defaults (ch. 11).

    ``max_tokens`` counts the two reserved ids (0 = padding, 1 = ``[UNK]``) as Keras does;
    ``None`` keeps every word seen in training. ``min_frequency`` drops rarer tokens.
    ``sequence_length`` is used by ``int`` and ``char`` modes only.
    """

    model_config = ConfigDict(extra="forbid")

    mode: Mode = "multi_hot"
    max_tokens: int | None = Field(20000, ge=3)
    min_frequency: int = Field(1, ge=1)
    lowercase: bool = True
    strip_punctuation: bool = True
    strip_html: bool = True
    ngrams: Literal[1, 2] = 1
    sequence_length: int = Field(600, ge=1)

    @model_validator(mode="after")
    def _bigrams_need_bags(self) -> VectorizeSettings:
        if self.ngrams == 2 and self.mode in SEQUENCE_MODES:
            raise ValueError(
                f"ngrams=2 works with the bag modes (multi_hot, count, tf_idf), not with "
                f"mode={self.mode!r}; set ngrams=1 or choose a bag mode"
            )
        return self

    def for_model(self, input_kind: str | None) -> VectorizeSettings:
        """``mode: auto`` made concrete for the model that will read the tensors.

        Models that embed token ids (RNNs, 1D convnets, Transformers) declare
        ``input_kind = "tokens"`` and get ``int`` sequences; every other model gets the
        book's multi-hot bags. So ``model=lstm data=imdb`` works with no further override.
        """
        if self.mode != "auto":
            return self
        tokens = input_kind == "tokens" and self.ngrams == 1
        return self.model_copy(update={"mode": "int" if tokens else "multi_hot"})

    @property
    def sequences(self) -> bool:
        """True for ``int``/``char``: id sequences, not bags."""
        return self.mode in SEQUENCE_MODES


@dataclass
class Encoded:
    """Texts as token ids, before they become tensors (what the data cache stores).

    Sequence modes: ``ids`` is ``(N, T)``. Bag modes: ``ids`` and ``rows`` are flat, one
    entry per token (bigrams included), ``rows`` naming each token's text.
    """

    count: int
    ids: np.ndarray
    rows: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"count": self.count, "ids": torch.from_numpy(self.ids)}
        if self.rows is not None:
            payload["rows"] = torch.from_numpy(self.rows)
        return payload

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> Encoded:
        rows = payload.get("rows")
        return cls(
            count=int(payload["count"]),
            ids=payload["ids"].numpy(),
            rows=None if rows is None else rows.numpy(),
        )


class TokenCounts:
    """How often each token of a full tokenizer (:meth:`TextVectorizer.full_tokenizer`)
    occurs, and each pair of adjacent tokens (``ngrams=2``), over texts added in chunks."""

    #: unique pairs held unmerged before the chunks' counts are merged into one table (or,
    #: once that table is larger, as many as it holds: merges stay a constant share)
    _MERGE_AT = 1 << 22

    def __init__(self, full: Any, ngrams: int) -> None:
        self.words = _by_id(full.get_vocab())
        self.unk = full.token_to_id(UNK)
        self.ngrams = ngrams
        self.counts = np.zeros(len(self.words), dtype=np.int64)
        self._pairs: list[tuple[np.ndarray, np.ndarray]] = []
        self._merged = 0  # pairs in the merged table (the list's first entry, once merged)
        self._pending = 0  # pairs of the chunks since

    def add(self, flat: np.ndarray, lengths: np.ndarray) -> None:
        """Count the ids of some texts (``flat``, ``lengths`` as :func:`ragged_ids` gives)."""
        self.counts += np.bincount(flat, minlength=len(self.words))
        if self.ngrams != 2:
            return
        rows = np.repeat(np.arange(len(lengths)), lengths)
        same = rows[:-1] == rows[1:]
        codes = flat[:-1][same] * len(self.words) + flat[1:][same]
        self._pairs.append(np.unique(codes, return_counts=True))
        self._pending += len(self._pairs[-1][0])
        if len(self._pairs) > 1 and self._pending > max(self._MERGE_AT, self._merged):
            self._pairs = [self.pairs()]
            self._merged, self._pending = len(self._pairs[0][0]), 0

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Each pair seen (``first * len(words) + second``, sorted) and its count."""
        if len(self._pairs) == 1:
            return self._pairs[0]
        if not self._pairs:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        codes = np.concatenate([codes for codes, _ in self._pairs])
        counts = np.concatenate([counts for _, counts in self._pairs])
        pairs, inverse = np.unique(codes, return_inverse=True)
        summed = np.bincount(inverse, weights=counts, minlength=len(pairs))
        return pairs, summed.astype(np.int64)


class TextVectorizer:
    """Learns a vocabulary from training texts, then turns any texts into tensors."""

    def __init__(self, settings: VectorizeSettings | Mapping[str, Any] | None = None) -> None:
        if settings is None:
            settings = VectorizeSettings()
        elif not isinstance(settings, VectorizeSettings):
            settings = VectorizeSettings(**settings)
        self.settings = settings
        self.tokenizer: Any = None  # tokenizers.Tokenizer once fitted
        self.idf: np.ndarray | None = None
        #: the label names by index of the texts this vectorizer serves (set by the data
        #: module, saved with it); they play no part in vectorizing
        self.classes: list[str] | None = None
        self._bigram_codes = np.zeros(0, dtype=np.int64)
        self._bigram_ids = np.zeros(0, dtype=np.int64)

    # -- the tokenizers pipeline ------------------------------------------------------

    def _tokenizer(self, vocabulary: dict[str, int] | None) -> Any:
        from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

        s = self.settings
        tokenizer = Tokenizer(models.WordLevel(vocabulary, unk_token=UNK))
        steps = []
        if s.strip_html:
            steps.append(normalizers.Replace(Regex(HTML_TAG), " "))
        if s.lowercase:
            steps.append(normalizers.Lowercase())
        if s.strip_punctuation:
            steps.append(normalizers.Replace(Regex(PUNCTUATION), ""))
        if steps:
            tokenizer.normalizer = normalizers.Sequence(steps)
        if s.mode == "char":
            tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        else:
            tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        if s.sequences and vocabulary is not None:
            tokenizer.enable_truncation(max_length=s.sequence_length)
            tokenizer.enable_padding(
                direction="right", pad_id=0, pad_token=PAD, length=s.sequence_length
            )
        return tokenizer

    @property
    def fitted(self) -> bool:
        return self.tokenizer is not None

    @property
    def vocabulary(self) -> list[str]:
        """Tokens by id: ``["", "[UNK]", most frequent, ...]``."""
        self._require_fit()
        vocab = self.tokenizer.get_vocab()
        words = [""] * len(vocab)
        for word, index in vocab.items():
            words[index] = word
        return words

    @property
    def width(self) -> int:
        """Bag width and the bound of every id: ``max_tokens``, or the vocabulary's size."""
        self._require_fit()
        return self.settings.max_tokens or self.tokenizer.get_vocab_size()

    def _require_fit(self) -> None:
        if self.tokenizer is None:
            raise RuntimeError("TextVectorizer is not fitted: call fit() or load() first")

    # -- learning the vocabulary ------------------------------------------------------

    def fit(self, texts: Sequence[str]) -> TextVectorizer:
        """Learn the vocabulary (and the idf weights) from ``texts``, the training split."""
        self.fit_encode(texts)
        return self

    def fit_encode(self, texts: Sequence[str]) -> Encoded:
        """:meth:`fit`, returning ``encode(texts)`` without tokenizing the texts again."""
        texts = _as_strings(texts)
        # 1. every standardized token of the training texts, by an arbitrary id
        full = self.full_tokenizer(texts, length=len(texts))
        flat, lengths = ragged_ids(full, texts)
        # 2. counts of words (and bigrams), then the vocabulary they rank
        counts = TokenCounts(full, self.settings.ngrams)
        counts.add(flat, lengths)
        remap = self.learn_vocabulary(counts)
        # the training texts in the new vocabulary, from the ids already at hand
        encoded = self._encoded(remap[flat], lengths)
        self.idf = self._idf(encoded) if self.settings.mode == "tf_idf" else None
        return encoded

    # the steps of fit_encode, which a fit on a stream of texts takes one chunk at a time
    # (plugins.data.streamed_text): the same vocabulary, ids and idf weights

    def full_tokenizer(self, texts: Iterable[str | list[str]], length: int | None = None) -> Any:
        """A tokenizer that knows every standardized token of ``texts`` (strings, or lists
        of them), by an arbitrary id: what :meth:`learn_vocabulary` counts in."""
        from tokenizers.trainers import WordLevelTrainer

        full = self._tokenizer(None)
        trainer = WordLevelTrainer(
            vocab_size=_ALL_WORDS, min_frequency=0, show_progress=False, special_tokens=[UNK]
        )
        full.train_from_iterator(texts, trainer, length=length)
        return full

    def learn_vocabulary(self, counts: TokenCounts) -> np.ndarray:
        """Keep the most frequent tokens of ``counts`` as the vocabulary (fitting this
        vectorizer, but for ``idf``); return the remap from the full tokenizer's ids to it.

        Ranked by (-count, words before bigrams, text), so the order the texts came in
        plays no part."""
        s = self.settings
        words, unk_full = counts.words, counts.unk
        word_counts = counts.counts.copy()
        word_counts[unk_full] = 0
        order = sorted(range(len(words)), key=words.__getitem__)
        rank = np.empty(len(words), dtype=np.int64)
        rank[order] = np.arange(len(words))
        candidates = [np.flatnonzero(word_counts >= s.min_frequency)]
        cand_counts = [word_counts[candidates[0]]]
        cand_n = [np.ones(len(candidates[0]), dtype=np.int64)]
        first, second = [rank[candidates[0]]], [np.full(len(candidates[0]), -1)]
        if s.ngrams == 2:
            pairs, pair_counts = counts.pairs()
            keep = pair_counts >= s.min_frequency
            keep &= (pairs // len(words) != unk_full) & (pairs % len(words) != unk_full)
            pairs, pair_counts = pairs[keep], pair_counts[keep]
            candidates.append(pairs)
            cand_counts.append(pair_counts)
            cand_n.append(np.full(len(pairs), 2, dtype=np.int64))
            first.append(rank[pairs // len(words)])
            second.append(rank[pairs % len(words)])
        all_counts = np.concatenate(cand_counts)
        all_n, all_first, all_second = (np.concatenate(x) for x in (cand_n, first, second))
        chosen = np.lexsort((all_second, all_first, all_n, -all_counts))
        if s.max_tokens:
            chosen = chosen[: s.max_tokens - 2]
        keys = np.concatenate(candidates)
        vocabulary = {PAD: 0, UNK: 1}
        remap = np.ones(len(words), dtype=np.int64)  # full ids -> ours; [UNK] if not kept
        for index in chosen:
            key = int(keys[index])
            if all_n[index] == 1:
                token = words[key]
                remap[key] = len(vocabulary)
            else:
                token = f"{words[key // len(words)]} {words[key % len(words)]}"
            vocabulary[token] = len(vocabulary)
        self.tokenizer = self._tokenizer(vocabulary)
        self._index_bigrams()
        self.idf = None
        return remap

    def encode_remapped(self, remap: np.ndarray, flat: np.ndarray, lengths: np.ndarray) -> Encoded:
        """Texts tokenized by the full tokenizer (ragged ``flat`` ids), in this vocabulary:
        what :meth:`fit_encode` returns for them."""
        return self._encoded(remap[flat], lengths)

    def _index_bigrams(self) -> None:
        """Bigram lookup: ``first_id * width + second_id`` (sorted) -> the bigram's id."""
        codes, ids = [], []
        if self.settings.ngrams == 2:
            vocab = self.tokenizer.get_vocab()
            for token, index in vocab.items():
                if " " in token:
                    left, right = token.split(" ", 1)
                    codes.append(vocab[left] * self.width + vocab[right])
                    ids.append(index)
        order = np.argsort(np.asarray(codes, dtype=np.int64), kind="stable")
        self._bigram_codes = np.asarray(codes, dtype=np.int64)[order]
        self._bigram_ids = np.asarray(ids, dtype=np.int64)[order]

    def _idf(self, encoded: Encoded) -> np.ndarray:
        """Keras' ``log(1 + N / (1 + df))``; ``[UNK]`` gets the mean of the learned weights."""
        return self.idf_weights(self.document_frequency(encoded), encoded.count)

    def document_frequency(self, encoded: Encoded) -> np.ndarray:
        """In how many of the ``encoded`` texts each id occurs (summed over chunks of texts,
        it is the whole split's)."""
        width = self.width
        documents = np.unique(encoded.rows * width + encoded.ids)
        return np.bincount(documents % width, minlength=width)

    def idf_weights(self, frequency: np.ndarray, count: int) -> np.ndarray:
        """The idf weights of ``count`` texts with these document frequencies."""
        frequency = frequency.astype(np.float64)
        size = self.tokenizer.get_vocab_size()
        idf = np.zeros(self.width, dtype=np.float64)
        idf[2:size] = np.log(1.0 + count / (1.0 + frequency[2:size]))
        idf[1] = idf[2:size].mean() if size > 2 else 0.0
        return idf.astype(np.float32)

    # -- vectorizing ------------------------------------------------------------------

    def encode(self, texts: Sequence[str]) -> Encoded:
        """Token ids of ``texts`` (the compact form; :meth:`tensors` makes the output)."""
        self._require_fit()
        texts = _as_strings(texts)
        if self.settings.sequences:
            ids = np.array([e.ids for e in _encode_batch(self.tokenizer, texts)], dtype=np.int32)
            return Encoded(len(texts), ids.reshape(len(texts), self.settings.sequence_length))
        return self._encoded(*ragged_ids(self.tokenizer, texts))

    def _encoded(self, flat: np.ndarray, lengths: np.ndarray) -> Encoded:
        """Ragged ids (this vocabulary) as sequences (truncated, padded) or bag entries."""
        count = len(lengths)
        if self.settings.sequences:
            length = self.settings.sequence_length
            ids = np.zeros((count, length), dtype=np.int32)
            starts = np.cumsum(lengths) - lengths
            kept = np.minimum(lengths, length)
            mask = np.arange(length)[None, :] < kept[:, None]
            positions = starts[:, None] + np.arange(length)[None, :]
            ids[mask] = flat[positions[mask]]
            return Encoded(count, ids)
        rows = np.repeat(np.arange(count, dtype=np.int64), lengths)
        if self.settings.ngrams == 2 and len(flat) > 1:
            same = rows[:-1] == rows[1:]
            codes = flat[:-1][same] * self.width + flat[1:][same]
            bigrams = np.ones(len(codes), dtype=np.int64)  # [UNK] unless the pair was kept
            if len(self._bigram_codes):
                where = np.searchsorted(self._bigram_codes, codes)
                where = np.minimum(where, len(self._bigram_codes) - 1)
                found = self._bigram_codes[where] == codes
                bigrams[found] = self._bigram_ids[where[found]]
            flat = np.concatenate([flat, bigrams])
            rows = np.concatenate([rows, rows[:-1][same]])
        return Encoded(count, flat.astype(np.int32), rows.astype(np.int32))

    def tensors(self, encoded: Encoded) -> torch.Tensor:
        """The output tensor: int64 ``(N, T)`` ids, or float32 ``(N, width)`` bags."""
        self._require_fit()
        if self.settings.sequences:
            return torch.from_numpy(encoded.ids).long()
        bags = torch.zeros(encoded.count, self.width, dtype=torch.float32)
        if encoded.rows is None or not len(encoded.ids):
            return bags
        index = (torch.from_numpy(encoded.rows).long(), torch.from_numpy(encoded.ids).long())
        if self.settings.mode == "multi_hot":
            bags.index_put_(index, torch.ones(len(encoded.ids)))
        else:
            bags.index_put_(index, torch.ones(len(encoded.ids)), accumulate=True)
            if self.settings.mode == "tf_idf":
                bags.mul_(torch.from_numpy(self.idf))
        return bags

    def transform(self, texts: Sequence[str]) -> torch.Tensor:
        """``texts`` as the output tensor of the chosen mode."""
        return self.tensors(self.encode(texts))

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        return self.transform(texts)

    # -- saving -------------------------------------------------------------------------

    def to_json(self) -> str:
        self._require_fit()
        payload = {
            "tokenizer": json.loads(self.tokenizer.to_str()),
            "pipelines": {
                "format": FORMAT,
                "settings": self.settings.model_dump(),
                "idf": None if self.idf is None else [float(x) for x in self.idf],
            },
        }
        if self.classes is not None:
            payload["pipelines"]["classes"] = list(self.classes)
        return json.dumps(payload, ensure_ascii=False)

    def save(self, path: str | Path) -> Path:
        """Write the vectorizer as one JSON file, atomically (temp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(self.to_json())
            os.chmod(temporary, 0o644)
            os.replace(temporary, path)
        finally:
            Path(temporary).unlink(missing_ok=True)
        return path

    @classmethod
    def from_json(cls, text: str) -> TextVectorizer:
        from tokenizers import Tokenizer

        payload = json.loads(text)
        extra = payload.get("pipelines") if isinstance(payload, dict) else None
        if not isinstance(extra, dict) or extra.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file (no 'pipelines' section of that format)")
        vectorizer = cls(VectorizeSettings(**extra["settings"]))
        vectorizer.tokenizer = Tokenizer.from_str(json.dumps(payload["tokenizer"]))
        if extra.get("idf") is not None:
            vectorizer.idf = np.asarray(extra["idf"], dtype=np.float32)
        classes = extra.get("classes")
        if classes is not None:
            if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
                raise ValueError(f"'classes' is not a list of class names: {classes!r}")
            vectorizer.classes = classes
        vectorizer._index_bigrams()
        return vectorizer

    @classmethod
    def load(cls, path: str | Path) -> TextVectorizer:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


def _as_strings(texts: Sequence[str]) -> list[str]:
    return [text if isinstance(text, str) else str(text) for text in texts]


def _by_id(vocab: Mapping[str, int]) -> list[str]:
    words = [""] * len(vocab)
    for word, index in vocab.items():
        words[index] = word
    return words


def ragged_ids(tokenizer: Any, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """All texts' ids concatenated (int64) and each text's number of ids."""
    ids = [e.ids for e in _encode_batch(tokenizer, texts)]
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
    return flat, lengths


def _encode_batch(tokenizer: Any, texts: list[str]) -> list[Any]:
    """``encode_batch_fast`` (no character offsets; tokenizers >= 0.20) when there is one."""
    encode = getattr(tokenizer, "encode_batch_fast", None) or tokenizer.encode_batch
    return encode(texts, add_special_tokens=False)
