"""A text corpus too short for a window says only what lengthens the split that is short:
the validation text is cut off the end, so a larger ``data.val_fraction`` shortens the
training text, and advising it for a short training text (as was done) made it worse."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.errors import ConfigValueError
from plugins.data.text_corpus import TextCorpusDataModule


def too_short(tmp_path: Path, text: str, **settings) -> str:
    path = tmp_path / "corpus.txt"
    path.write_text(text)
    with pytest.raises(ConfigValueError) as error:
        TextCorpusDataModule(path=str(path), **settings).setup("fit")
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_text_too_short_for_any_split_asks_for_a_longer_text_only(tmp_path: Path) -> None:
    """The user's case: 16 characters cannot hold a 61-character window in any split."""
    message = too_short(tmp_path, "short text here\n")
    assert "The train and val texts hold too few characters (train 14, val 2)" in message
    assert "a longer text" in message and "val_fraction" not in message
    assert "max_chars" not in message  # it is not set: nothing was cut


def test_a_short_training_text_is_told_to_shrink_the_other_parts(tmp_path: Path) -> None:
    message = too_short(tmp_path, "a" * 200, sequence_length=60, val_fraction=0.8)
    assert message.startswith("The train text holds too few characters (train 40)")
    assert "a smaller data.val_fraction or data.test_fraction" in message
    assert "larger data.val_fraction" not in message
    assert "data.sequence_length of at most 39" in message


def test_a_short_validation_text_is_told_to_grow_it(tmp_path: Path) -> None:
    message = too_short(tmp_path, "a" * 200, sequence_length=60, val_fraction=0.1)
    assert message.startswith("The val text holds too few characters (val 20)")
    assert "a larger data.val_fraction" in message and "smaller data.val_fraction" not in message


def test_max_chars_is_named_only_when_it_cut_the_text(tmp_path: Path) -> None:
    message = too_short(tmp_path, "a" * 200, sequence_length=60, max_chars=100)
    assert "a larger data.max_chars (it keeps 100 characters)" in message
    assert "val_fraction" not in message  # 100 characters cannot hold two 61-char windows
