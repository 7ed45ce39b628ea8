"""TextVectorizer: vocabulary from training texts, each output mode by hand, save/load."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from pydantic import ValidationError

from plugins.data.vectorize import TextVectorizer, VectorizeSettings

CONF = Path(__file__).resolve().parents[1] / "conf"
# standardized: "the cat sat" / "the dog sat on the mat" / "a cat and a dog"
CORPUS = ["The cat sat.", "The dog sat on the mat!", "A cat<br />and a DOG"]
# counts: the 3; a, cat, dog, sat 2; and, mat, on 1 (ties alphabetical)
VOCABULARY = ["", "[UNK]", "the", "a", "cat", "dog", "sat", "and", "mat", "on"]


def fitted(**settings) -> TextVectorizer:
    return TextVectorizer(VectorizeSettings(**settings)).fit(CORPUS)


def test_vocabulary_by_frequency_with_reserved_ids() -> None:
    assert fitted(max_tokens=20).vocabulary == VOCABULARY


def test_max_tokens_counts_the_reserved_ids() -> None:
    vectorizer = fitted(max_tokens=5)
    assert vectorizer.vocabulary == VOCABULARY[:5]
    assert vectorizer.transform(["the dog"]).tolist() == [[0.0, 1.0, 1.0, 0.0, 0.0]]


def test_min_frequency_drops_rare_words() -> None:
    assert fitted(max_tokens=20, min_frequency=2).vocabulary == VOCABULARY[:7]


def test_words_seen_only_outside_training_are_unknown() -> None:
    vectorizer = fitted(max_tokens=10)
    bag = vectorizer.transform(["unicorn cat unicorn"])
    assert bag.tolist() == [[0, 1, 0, 0, 1, 0, 0, 0, 0, 0]]
    assert "unicorn" not in vectorizer.vocabulary


def test_standardization_lowercase_punctuation_and_html() -> None:
    text = ["Don't<br />STOP, it's <i>GREAT</i>!!"]
    assert TextVectorizer().fit(text).vocabulary[2:] == ["dont", "great", "its", "stop"]
    raw = TextVectorizer({"lowercase": False, "strip_punctuation": False, "strip_html": False})
    assert raw.fit(text).vocabulary[2:] == sorted(["Don't<br", "/>STOP,", "it's", "<i>GREAT</i>!!"])


def test_multi_hot_by_hand() -> None:
    bags = fitted(max_tokens=10).transform(CORPUS)
    assert bags.shape == (3, 10) and bags.dtype == torch.float32
    assert bags.tolist() == [
        [0, 0, 1, 0, 1, 0, 1, 0, 0, 0],
        [0, 0, 1, 0, 0, 1, 1, 0, 1, 1],
        [0, 0, 0, 1, 1, 1, 0, 1, 0, 0],
    ]


def test_count_by_hand() -> None:
    bags = fitted(mode="count", max_tokens=12).transform(CORPUS)
    assert bags.shape == (3, 12), "padded to max_tokens"
    assert bags.tolist() == [
        [0, 0, 1, 0, 1, 0, 1, 0, 0, 0, 0, 0],
        [0, 0, 2, 0, 0, 1, 1, 0, 1, 1, 0, 0],
        [0, 0, 0, 2, 1, 1, 0, 1, 0, 0, 0, 0],
    ]


def test_tf_idf_by_hand() -> None:
    # Keras: count * log(1 + N / (1 + df)); [UNK] gets the mean weight of the learned words
    two, one = math.log(1 + 3 / 3), math.log(1 + 3 / 2)  # df 2 (the, cat, dog, sat) and 1
    idf = [0, (4 * two + 4 * one) / 8, two, one, two, two, two, one, one, one]
    bags = fitted(mode="tf_idf", max_tokens=10).transform(["the dog sat on the mat", "x"])
    expected = [[0, 0, 2 * two, 0, 0, two, two, 0, one, one], [0, idf[1], *[0] * 8]]
    assert torch.allclose(bags, torch.tensor(expected, dtype=torch.float32))


def test_int_sequences_truncate_and_pad_like_keras() -> None:
    vectorizer = fitted(mode="int", max_tokens=10, sequence_length=4)
    ids = vectorizer.transform([*CORPUS, "", "cat unicorn"])
    assert ids.dtype == torch.int64 and ids.shape == (5, 4)
    assert ids.tolist() == [
        [2, 4, 6, 0],
        [2, 5, 6, 9],  # the first 4 words
        [3, 4, 7, 3],
        [0, 0, 0, 0],
        [4, 1, 0, 0],
    ]


def test_fit_encode_equals_fit_then_transform() -> None:
    for mode in ("multi_hot", "tf_idf", "int", "char"):
        vectorizer = TextVectorizer({"mode": mode, "max_tokens": 8, "sequence_length": 6})
        once = vectorizer.tensors(vectorizer.fit_encode(CORPUS))
        assert torch.equal(once, vectorizer.transform(CORPUS)), mode


def test_char_mode() -> None:
    vectorizer = TextVectorizer({"mode": "char", "sequence_length": 5}).fit(["ab", "Ba a"])
    assert vectorizer.vocabulary == ["", "[UNK]", "a", "b", " "]  # a 3, b 2, space 1
    ids = vectorizer.transform(["A bc", "abababab"])
    assert ids.tolist() == [[2, 4, 3, 1, 0], [2, 3, 2, 3, 2]]


def test_bigrams_are_tokens_ranked_with_words() -> None:
    vectorizer = TextVectorizer({"mode": "count", "ngrams": 2, "max_tokens": 20})
    vectorizer.fit(["the cat sat", "the cat ran"])
    # count 2: words first, then the bigram; count 1: words, then bigrams
    expected = ["", "[UNK]", "cat", "the", "the cat", "ran", "sat", "cat ran", "cat sat"]
    assert vectorizer.vocabulary == expected
    bag = vectorizer.transform(["The cat sat down."])[0]
    # the, cat, sat, the cat, cat sat; "down" and "sat down" unknown
    assert bag[:9].tolist() == [0, 2, 1, 1, 1, 0, 1, 0, 1]
    # bigrams never cross texts
    assert vectorizer.transform(["the", "cat"])[:, 4].tolist() == [0, 0]


def test_bigram_cap_keeps_their_words() -> None:
    vectorizer = TextVectorizer({"ngrams": 2, "max_tokens": 5}).fit(["the cat sat", "the cat"])
    assert vectorizer.vocabulary == ["", "[UNK]", "cat", "the", "the cat"]


@pytest.mark.parametrize(
    "settings",
    [
        {"mode": "multi_hot"},
        {"mode": "count", "ngrams": 2},
        {"mode": "tf_idf", "ngrams": 2},
        {"mode": "int", "sequence_length": 7},
        {"mode": "char", "sequence_length": 9},
    ],
)
def test_saved_vectorizer_gives_identical_output(tmp_path: Path, settings: dict) -> None:
    vectorizer = TextVectorizer({"max_tokens": 12, **settings}).fit(CORPUS)
    path = vectorizer.save(tmp_path / "tokenizer.json")
    loaded = TextVectorizer.load(path)
    probe = [*CORPUS, "a brand new mat sat", ""]
    assert loaded.settings == vectorizer.settings
    assert torch.equal(loaded.transform(probe), vectorizer.transform(probe))


def test_file_holds_a_plain_tokenizers_json(tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    vectorizer = fitted(mode="int", max_tokens=10, sequence_length=4)
    payload = json.loads(vectorizer.save(tmp_path / "tokenizer.json").read_text())
    assert payload["pipelines"]["settings"]["mode"] == "int"
    tokenizer = Tokenizer.from_str(json.dumps(payload["tokenizer"]))
    assert tokenizer.encode("The dog sat on the mat").ids == [2, 5, 6, 9]
    assert tokenizer.encode("cat").ids == [4, 0, 0, 0]


def test_settings_are_checked() -> None:
    with pytest.raises(ValidationError, match="extra"):
        VectorizeSettings(mode="multi_hot", max_token=5)
    with pytest.raises(ValidationError, match="ngrams=2"):
        VectorizeSettings(mode="int", ngrams=2)
    with pytest.raises(ValidationError):
        VectorizeSettings(max_tokens=2)


def test_unfitted_vectorizer_says_so() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        TextVectorizer().transform(["a"])


@pytest.mark.parametrize("name", ["multi_hot", "bigrams", "tf_idf", "sequence", "chars"])
def test_vectorize_presets_are_valid_settings(name: str) -> None:
    path = CONF / "vectorize" / f"{name}.yaml"
    assert path.read_text().startswith("# @package data.vectorize")
    VectorizeSettings(**OmegaConf.to_container(OmegaConf.load(path)))


@pytest.mark.parametrize("name", ["imdb", "reuters", "text_classification"])
def test_data_configs_carry_a_full_vectorize_block(name: str) -> None:
    node = OmegaConf.load(CONF / "data" / f"{name}.yaml")
    block = OmegaConf.to_container(node.vectorize)
    assert set(block) == set(VectorizeSettings.model_fields)
    VectorizeSettings(**block)
