"""Pretrained word vectors (2nd ed. ch. 11, "using pretrained word embeddings"): GloVe.

:func:`load_word_vectors` reads a GloVe text file (``word v1 v2 ... vD`` per line) or a
word2vec text file (the same after a ``count dim`` first line), plain or gzipped, for one
vocabulary only: the file is streamed and only the vocabulary's lines are parsed, so the
400,000 vectors of ``glove.6B`` are never held in memory. The result is the book's
``embedding_matrix``: one row per token id, row 0 (padding) zeros, words the file lacks
zeros too.

A word may contain spaces (GloVe 840B has a few): the vector is always the last ``D``
fields of the line, the word everything before them.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import nn

from pipelines.api import ConfigValueError, DataNotFoundError, reading_data_file

#: how to replace a damaged word-vector file (they are not downloaded for you)
_REPLACE = "put an intact copy there (GloVe: nlp.stanford.edu/projects/glove)"

log = logging.getLogger(__name__)

GLOVE_URL = "https://nlp.stanford.edu/data/glove.6B.zip"
#: tokens that are never looked up: padding and the out-of-vocabulary id
SPECIAL_TOKENS = ("", "[UNK]")


def load_word_vectors(
    path: str | Path,
    vocabulary: Sequence[str],
    dim: int,
    *,
    vocab_size: int | None = None,
    dim_key: str = "model.embedding_dim",
) -> tuple[np.ndarray, int]:
    """``(matrix, found)``: a float32 ``(vocab_size, dim)`` matrix whose row ``i`` is the
    file's vector of ``vocabulary[i]`` (zeros for padding, ``[UNK]`` and words not in the
    file) and the number of vocabulary words found.

    ``vocab_size`` defaults to ``len(vocabulary)``; a longer vocabulary is cut to it.
    ``dim_key`` names the setting that gave ``dim``, for the dimension-mismatch message.
    """
    rows = len(vocabulary) if vocab_size is None else int(vocab_size)
    wanted: dict[str, int] = {}
    for index, word in enumerate(vocabulary[:rows]):
        if index > 0 and word not in SPECIAL_TOKENS:
            wanted.setdefault(word, index)
    matrix = np.zeros((rows, dim), dtype=np.float32)
    found: set[int] = set()
    source = _checked_path(path)
    # a damaged .gz fails mid-read: named, with the fix, not a zlib/EOF traceback
    with reading_data_file(source, _REPLACE), _open_text(source) as lines:
        file_dim, numbered = _dimension(lines, source)
        if file_dim != dim:
            raise ConfigValueError(
                f"The word vectors in {source} ('model.word_vectors') have {file_dim} "
                f"dimensions but the embedding has {dim} ('{dim_key}'): set `{dim_key}="
                f"{file_dim}` or pick the file of that size (glove.6B comes in 50d, 100d, "
                "200d and 300d)."
            )
        for number, line in numbered:
            text = line.rstrip()
            if not text:
                continue
            spaces = text.count(" ")
            if spaces < dim:
                raise _malformed(source, number, f"fewer than {dim + 1} fields")
            if spaces == dim:
                word, _, vector = text.partition(" ")
            else:  # a word with spaces in it: the vector is the last dim fields
                word, vector = _split_last(text, dim)
            index = wanted.get(word)
            if index is None or index in found:
                continue
            try:
                matrix[index] = np.array(vector.split(" "), dtype=np.float32)
            except ValueError:
                raise _malformed(source, number, "a value that is not a number") from None
            found.add(index)
            if len(found) == len(wanted):
                break  # every word found: the rest of the file is not needed
    return matrix, len(found)


def pretrained_embedding(
    embedding: nn.Embedding,
    path: str | Path,
    vocabulary: Sequence[str] | None,
    *,
    freeze: bool = True,
    dim_key: str = "model.embedding_dim",
) -> int:
    """Fill ``embedding`` with the vectors of ``path`` for ``vocabulary``; freeze it unless
    ``freeze`` is False (frozen: no gradient, left out of the optimizer). Returns the number
    of vocabulary words the file held."""
    if vocabulary is None:
        raise ConfigValueError(
            "'model.word_vectors' needs the data's vocabulary: use text data vectorized into "
            "word ids (`data.vectorize.mode=int`, e.g. `vectorize=sequence`), or set "
            "`model.word_vectors=null`."
        )
    matrix, found = load_word_vectors(
        path,
        vocabulary,
        embedding.embedding_dim,
        vocab_size=embedding.num_embeddings,
        dim_key=dim_key,
    )
    with torch.no_grad():
        embedding.weight.copy_(torch.from_numpy(matrix))
    embedding.weight.requires_grad_(not freeze)
    words = sum(1 for word in vocabulary[: embedding.num_embeddings] if word not in SPECIAL_TOKENS)
    log.info(
        "word vectors: %d of %d vocabulary words found in %s (%s)",
        found,
        words,
        path,
        "frozen" if freeze else "trainable",
    )
    return found


class WordVectorsMixin:
    """For models with a token embedding that can start from pretrained word vectors."""

    #: vocabulary words found in ``word_vectors`` (None: no pretrained vectors)
    embeddings_found: int | None = None

    @classmethod
    def rebuild_arguments(cls, hparams: dict[str, Any], tracking_uri: str | None = None) -> dict:
        """Arguments to rebuild the architecture only: the checkpoint holds the embedding,
        so the word-vector file is not read again (it may be gone). The rebuilt network is
        trainable throughout; whoever reuses it decides what to freeze."""
        return {**hparams, "word_vectors": None}


# -- reading the file --------------------------------------------------------------------------


def _checked_path(path: str | Path) -> Path:
    source = Path(path).expanduser()
    if source.suffix == ".zip":
        raise DataNotFoundError(
            f"'model.word_vectors' names the archive {source}; extract it (`unzip "
            f"{source.name}`) and point `model.word_vectors` at one of its text files, e.g. "
            "glove.6B.100d.txt for `model.embedding_dim=100`."
        )
    if not source.is_file():
        raise DataNotFoundError(
            f"No word-vector file at {source} ('model.word_vectors'). The book uses GloVe: "
            f"download {GLOVE_URL} (822 MB), unzip it and set `model.word_vectors=<folder>/"
            "glove.6B.100d.txt` (the 100-dimensional vectors, `model.embedding_dim=100`); "
            "any GloVe or word2vec text file (.txt or .gz) works, or set "
            "`model.word_vectors=null` to learn the embedding from scratch."
        )
    return source


def _open_text(source: Path) -> IO[str]:
    with source.open("rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    if gzipped:
        return gzip.open(source, "rt", encoding="utf-8", errors="replace")
    return source.open(encoding="utf-8", errors="replace")


def _dimension(lines: Any, source: Path) -> tuple[int, Iterator[tuple[int, str]]]:
    """The vectors' dimension and the numbered lines holding vectors (header skipped)."""
    numbered = enumerate(lines, start=1)
    for number, line in numbered:
        fields = line.split()
        if not fields:
            continue
        if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit():
            return int(fields[1]), numbered  # word2vec: "count dim"
        if len(fields) < 2:
            raise _malformed(source, number, "a word without a vector")
        return len(fields) - 1, _chain(number, line, numbered)
    raise DataNotFoundError(f"The word-vector file {source} ('model.word_vectors') is empty.")


def _chain(number: int, line: str, rest: Iterator[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    yield number, line
    yield from rest


def _split_last(text: str, dim: int) -> tuple[str, str]:
    parts = text.rsplit(" ", dim)
    return parts[0], " ".join(parts[1:])


def _malformed(source: Path, number: int, problem: str) -> ConfigValueError:
    return ConfigValueError(
        f"Line {number} of the word-vector file {source} ('model.word_vectors') is malformed: "
        f"{problem}. Each line must be a word followed by its values, separated by single "
        "spaces (GloVe; word2vec text files may start with a 'count dim' line)."
    )
