"""A text classifier's sample predictions as a table: ``report/sample_predictions.csv``.

The image classifiers' ``sample_predictions.png`` titles each test image with its
prediction; a text has no picture, so a text classifier gets a table instead, one row per
example: ``test_index`` (its place in the test split), ``true`` and ``predicted`` (class
names), ``confidence`` (the predicted class's softmax probability), ``correct`` (``yes``/
``no``, words: the UI's CSV preview types ``true``/``false`` as booleans and shows them as
empty cells) and ``text``.

Why CSV: MLflow 3's artifact viewer previews a ``.csv`` as a table with a header, sortable
by each column (numbers sort as numbers), a cell's full text shown on hover; Markdown
renders but cannot be sorted, JSON shows as source. ``mlflow.log_table`` has a richer view,
but it appends to the file when a run logs it again (a resumed run reports again) and it
goes around the run's tracker, which every other report artifact goes through.

The rows are the most confident mistakes first (the most instructive), up to half of the
``samples`` asked for, then a seeded draw of the other examples (the same ones in every run
on the same data, so runs compare). ``text`` is the original text when the data module
still holds it (:attr:`~plugins.data.text.TextDataModule.test_texts`: a setup that read the
files, not one that loaded the cache), else decoded from the vectorizer's vocabulary (word
ids: lower-cased, punctuation gone, cut at ``sequence_length``; bags: the words present,
rarest first, order lost), else what the tensor holds (token ids), always said as such.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: characters of text per row: a few lines in the UI's hover, a glance in a spreadsheet
MAX_CHARS = 300
#: the columns of ``sample_predictions.csv``, in order
COLUMNS = ("test_index", "true", "predicted", "confidence", "correct", "text")
#: how many ids or words a row names when there is no text to show
_LISTED = 60
_LINE_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)  # IMDB's reviews are full of them

Describe = Callable[[int], str]


def write_sample_table(
    path: Path,
    datamodule: Any,
    model: Any,
    test: tuple[torch.Tensor, torch.Tensor],
    probabilities: torch.Tensor,
    classes: Sequence[str],
    count: int,
) -> Path | None:
    """``count`` test examples of a text classifier as ``path`` (CSV), the counterpart of the
    image classifiers' figure; None (nothing written) when the data is not text."""
    inputs, targets = test
    describe = text_describer(datamodule, model, inputs)
    if describe is None or count <= 0:
        return None
    correct = (probabilities.argmax(dim=1) == targets).numpy()
    chosen = choose_examples(correct, probabilities.amax(dim=1).numpy(), count)
    return write_rows(sample_rows(chosen, targets, probabilities, classes, describe), path)


def choose_examples(
    correct: np.ndarray, confidence: np.ndarray, count: int, seed: int = 0
) -> np.ndarray:
    """Test indices to show: the most confident mistakes first, then ordinary examples.

    Mistakes take up to half of ``count`` (one at least, when there is one): a model is
    understood by where it is confidently wrong, but a table of mistakes alone would hide
    how it usually does. The rest are the first of a seeded permutation of the test split
    that are not shown already, sorted, so that runs on the same data show the same ones.
    """
    count = min(int(count), len(correct))
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    wrong = np.flatnonzero(~np.asarray(correct, dtype=bool))
    wrong = wrong[np.argsort(-np.asarray(confidence)[wrong], kind="stable")]
    wrong = wrong[: max(1, count // 2)]
    order = np.random.default_rng(seed).permutation(len(correct))
    others = np.sort(order[~np.isin(order, wrong)][: count - len(wrong)])
    return np.concatenate([wrong, others]).astype(np.int64)


def sample_rows(
    indices: np.ndarray,
    targets: torch.Tensor,
    probabilities: torch.Tensor,
    classes: Sequence[str],
    describe: Describe,
) -> list[dict[str, Any]]:
    """One row of :data:`COLUMNS` per index of the test split."""
    rows = []
    for index in indices.tolist():
        predicted = int(probabilities[index].argmax())  # as the confusion matrix counts it
        truth = int(targets[index])
        rows.append(
            {
                "test_index": index,
                "true": classes[truth],
                "predicted": classes[predicted],
                "confidence": round(float(probabilities[index, predicted]), 3),
                "correct": "yes" if predicted == truth else "no",
                "text": describe(index),
            }
        )
    return rows


def write_rows(rows: list[dict[str, Any]], path: Path) -> Path:
    """``rows`` as a UTF-8 CSV (no BOM: it would become part of the first column's name)."""
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def text_describer(datamodule: Any, model: Any, inputs: torch.Tensor) -> Describe | None:
    """How to show test example ``i`` as text; None when the data is not text.

    Text data is a data module with the original texts (``test_texts``), a vectorizer or a
    ``vocabulary``, or a model that embeds token ids (``input_kind = "tokens"``); anything
    else with 2-D inputs (a table of features) gets no text column to make up.
    """
    texts = getattr(datamodule, "test_texts", None)
    if texts is not None and len(texts) == len(inputs):
        return lambda index: shorten(str(texts[index]))
    if inputs.ndim != 2:
        return None
    vocabulary, chars = _vocabulary(datamodule)
    token_model = getattr(model, "input_kind", None) == "tokens"
    has_text_parts = hasattr(datamodule, "test_texts") or hasattr(datamodule, "vectorizer")
    if vocabulary is None and not (has_text_parts or token_model):
        return None
    if inputs.is_floating_point():
        return lambda index: decode_bag(inputs[index], vocabulary)
    return lambda index: decode_ids(inputs[index], vocabulary, chars)


def _vocabulary(datamodule: Any) -> tuple[list[str] | None, bool]:
    """The tokens by id (the fitted vectorizer's, else the data module's ``vocabulary``),
    and whether they are characters (joined without spaces)."""
    vectorizer = getattr(datamodule, "vectorizer", None)
    if vectorizer is not None and getattr(vectorizer, "fitted", False):
        return list(vectorizer.vocabulary), vectorizer.settings.mode == "char"
    vocabulary = getattr(datamodule, "vocabulary", None)
    if isinstance(vocabulary, Sequence) and not isinstance(vocabulary, str) and vocabulary:
        return [str(token) for token in vocabulary], False
    return None, False


def decode_ids(row: torch.Tensor, vocabulary: list[str] | None, chars: bool = False) -> str:
    """A sequence of token ids as text; padding (id 0) dropped, ``[UNK]`` kept as such."""
    ids = [int(i) for i in row.tolist() if int(i) != 0]
    if vocabulary is None:
        listed = " ".join(str(i) for i in ids[:_LISTED])
        return shorten(f"(token ids, no vocabulary to decode them) {listed}")
    tokens = [vocabulary[i] if 0 <= i < len(vocabulary) else "[UNK]" for i in ids]
    if chars:
        return shorten("".join("\ufffd" if token == "[UNK]" else token for token in tokens))
    return shorten(" ".join(tokens))


def decode_bag(row: torch.Tensor, vocabulary: list[str] | None) -> str:
    """A bag of words (multi-hot, counts, tf-idf) as the words in it, rarest first.

    A bag has lost the word order; its rarest words (the highest ids: the vocabulary is
    ranked by frequency) say most about a text, where the most frequent ones are "the",
    "a" and "and" of every text alike.
    """
    ids = row.nonzero().flatten().flip(0).tolist()
    ids = [i for i in ids if i != 0]  # padding: never a word
    if vocabulary is None:
        listed = ", ".join(str(i) for i in ids[:_LISTED])
        return shorten(
            f"(bag of {len(ids)} of {len(row)} word ids, no vocabulary to name them) {listed}"
        )
    words = [vocabulary[i] if i < len(vocabulary) else "[UNK]" for i in ids]
    return shorten(f"(bag of {len(words)} words, rarest first) {', '.join(words)}")


def shorten(text: str, limit: int = MAX_CHARS) -> str:
    """``text`` on one line (line breaks and IMDB's ``<br />`` as spaces), cut at a word
    boundary near ``limit`` characters with an ellipsis; a text without spaces is cut
    where it must be."""
    text = " ".join(_LINE_BREAK.sub(" ", text).split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit * 0.8:
        cut = cut[:space]
    return cut.rstrip(" ,") + "…"
