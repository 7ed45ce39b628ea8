"""Pretrained word vectors (GloVe / word2vec text files) in the token embedding (2nd ed. ch. 11)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import mlflow_runs, run_cli, store_uri
from pipelines import registry
from pipelines.errors import ConfigValueError, DataNotFoundError
from plugins.models.word_vectors import load_word_vectors

DIM = 4
#: the file's words and vectors; "zebra" and "nowhere" are in no vocabulary below
VECTORS = {
    "the": [0.1, 0.2, 0.3, 0.4],
    "movie": [-1.0, 0.5, 2.0, -0.25],
    "great": [1.5, -2.5, 0.0, 3.0],
    "zebra": [9.0, 9.0, 9.0, 9.0],
    "awful": [-0.5, -0.5, 0.75, 1.0],
}
#: token ids as the vectorizer gives them: 0 padding, 1 [UNK], then words
VOCABULARY = ["", "[UNK]", "the", "movie", "boring", "great", "plot"]
FOUND = {"the": 2, "movie": 3, "great": 5}
MISSING = (0, 1, 4, 6)  # padding, [UNK], "boring", "plot"
MODELS = ["embedding_dense", "simple_rnn", "lstm", "gru", "conv1d", "transformer"]


def glove_lines(vectors: dict[str, list[float]] = VECTORS) -> list[str]:
    return [f"{word} {' '.join(str(v) for v in vector)}\n" for word, vector in vectors.items()]


def write_glove(path: Path, header: bool = False, gz: bool = False) -> Path:
    lines = glove_lines()
    if header:  # word2vec text format
        lines.insert(0, f"{len(lines)} {DIM}\n")
    text = "".join(lines)
    if gz:
        path.write_bytes(gzip.compress(text.encode("utf-8")))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def build(name: str, glove: Path | None, steps: int = 6, **kwargs):
    key = "embed_dim" if name == "transformer" else "embedding_dim"
    config = {"name": name, key: DIM, "word_vectors": str(glove) if glove else None, **kwargs}
    if name == "transformer":
        config.update(num_heads=2, dense_dim=8)
    context = {
        "input_shape": (steps,),
        "num_classes": 2,
        "vocab_size": len(VOCABULARY) + 2,  # max_tokens above the words learned
        "vocabulary": VOCABULARY,
    }
    return registry.build("model", config, **context)


def embedding_of(model) -> torch.nn.Embedding:
    (embedding,) = [m for m in model.modules() if isinstance(m, torch.nn.Embedding)][:1]
    return embedding


# -- reading the file ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "gz", "name"),
    [(False, False, "g.txt"), (True, False, "w2v.txt"), (False, True, "g.txt.gz")],
    ids=["glove", "word2vec-header", "gzip"],
)
def test_matrix_rows_are_the_files_vectors(tmp_path: Path, header, gz, name) -> None:
    path = write_glove(tmp_path / name, header=header, gz=gz)
    matrix, found = load_word_vectors(path, VOCABULARY, DIM, vocab_size=len(VOCABULARY) + 2)
    assert matrix.dtype == np.float32 and matrix.shape == (len(VOCABULARY) + 2, DIM)
    assert found == len(FOUND)
    for word, index in FOUND.items():
        np.testing.assert_array_equal(matrix[index], np.float32(VECTORS[word]))
    for index in (*MISSING, len(VOCABULARY), len(VOCABULARY) + 1):
        assert not matrix[index].any(), f"row {index} should be zeros"


def test_words_with_spaces_take_the_last_fields(tmp_path: Path) -> None:
    path = tmp_path / "840b.txt"
    path.write_text("the 1 2 3 4\nat name@x.com 5 6 7 8\n. . 0.5 0.5 0.5 0.5\nplot 9 9 9 9\n")
    matrix, found = load_word_vectors(path, ["", "at name@x.com", ". .", "plot"], DIM)
    assert found == 3
    np.testing.assert_array_equal(matrix[1], [5, 6, 7, 8])
    np.testing.assert_array_equal(matrix[2], [0.5] * 4)


def test_dimension_mismatch_names_both_keys(tmp_path: Path) -> None:
    path = write_glove(tmp_path / "g.txt")
    with pytest.raises(ConfigValueError, match=r"4 dimensions.*has 8.*model\.embedding_dim=4"):
        load_word_vectors(path, VOCABULARY, 8)
    with pytest.raises(ConfigValueError, match=r"model\.word_vectors.*model\.embed_dim"):
        build("transformer", path, embed_dim=8)


def test_missing_file_says_where_glove_comes_from(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as error:
        load_word_vectors(tmp_path / "glove.6B.100d.txt", VOCABULARY, DIM)
    message = str(error.value)
    for part in ("nlp.stanford.edu/data/glove.6B.zip", "glove.6B.100d.txt", "model.word_vectors"):
        assert part in message
    with pytest.raises(DataNotFoundError, match="unzip"):
        load_word_vectors(tmp_path / "glove.6B.zip", VOCABULARY, DIM)


def test_malformed_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("the 1 2 3 4\nmovie 1 2\n")
    with pytest.raises(ConfigValueError, match=r"Line 2 .*malformed"):
        load_word_vectors(path, VOCABULARY, DIM)
    path.write_text("the 1 2 3 4\n\nmovie 1 2 x 4\n")
    with pytest.raises(ConfigValueError, match=r"Line 3 .*not a number"):
        load_word_vectors(path, VOCABULARY, DIM)


def test_damaged_gz_is_named_with_the_fix(tmp_path: Path) -> None:
    """A cut-short gzip of vectors ended in an EOFError traceback from inside gzip."""
    whole = write_glove(tmp_path / "glove.txt.gz", gz=True).read_bytes()
    damaged = tmp_path / "damaged.txt.gz"
    damaged.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataNotFoundError) as error:
        load_word_vectors(damaged, VOCABULARY, DIM)
    message = str(error.value)
    assert "damaged.txt.gz is damaged or cut short" in message and "intact copy" in message


# -- models --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_models_start_from_the_vectors(tmp_path: Path, name: str) -> None:
    model = build(name, write_glove(tmp_path / "g.txt"))
    weight = embedding_of(model).weight
    assert model.embeddings_found == len(FOUND)
    for word, index in FOUND.items():
        torch.testing.assert_close(weight[index], torch.tensor(VECTORS[word]))
    assert not weight[list(MISSING)].any()
    assert not weight.requires_grad
    assert "vocabulary" not in model.hparams, "the word list stays out of checkpoints"
    ids = torch.tensor([[2, 3, 5, 4, 0, 0], [6, 1, 0, 0, 0, 0]])
    assert model(ids).shape == (2, 2)


def test_word_vectors_need_word_ids(tmp_path: Path) -> None:
    path = write_glove(tmp_path / "g.txt")
    with pytest.raises(ConfigValueError, match="token ids"):
        registry.build(
            "model",
            {"name": "lstm", "word_vectors": str(path)},
            input_shape=(8, 8),
            num_classes=2,
        )
    with pytest.raises(ConfigValueError, match="vocabulary"):
        registry.build(
            "model",
            {"name": "lstm", "embedding_dim": DIM, "word_vectors": str(path)},
            input_shape=(6,),
            num_classes=2,
            vocab_size=10,
        )


def training_step(model) -> None:
    optimizer = model.configure_optimizers()
    ids = torch.tensor([[2, 3, 5, 4, 6, 0], [5, 5, 2, 0, 0, 0], [3, 6, 4, 2, 0, 0]])
    loss = torch.nn.functional.cross_entropy(model(ids), torch.tensor([0, 1, 0]))
    loss.backward()
    optimizer.step()


def test_frozen_embedding_is_not_trained(tmp_path: Path) -> None:
    model = build("lstm", write_glove(tmp_path / "g.txt"), units=4)
    weight = embedding_of(model).weight
    before = weight.detach().clone()
    optimized = {
        id(p) for group in model.configure_optimizers().param_groups for p in group["params"]
    }
    assert id(weight) not in optimized and optimized, "frozen: not in the optimizer"
    training_step(model)
    assert weight.grad is None
    torch.testing.assert_close(weight, before, rtol=0, atol=0)


def test_trainable_embedding_is_fine_tuned(tmp_path: Path) -> None:
    model = build("embedding_dense", write_glove(tmp_path / "g.txt"), freeze_embeddings=False)
    weight = embedding_of(model).weight
    before = weight.detach().clone()
    assert weight.requires_grad
    training_step(model)
    assert not torch.equal(weight[FOUND["the"]], before[FOUND["the"]])
    assert not weight[0].any(), "the padding row stays zeros"


def test_rebuilt_from_hparams_without_the_file(tmp_path: Path) -> None:
    glove = write_glove(tmp_path / "g.txt")
    model = build("gru", glove, units=4)
    state = model.state_dict()
    hparams = dict(model.hparams)
    glove.unlink()
    factory = registry.load("model", "gru")
    arguments = factory.rebuild_arguments(hparams, tracking_uri=None)
    assert arguments["word_vectors"] is None
    rebuilt = factory(**arguments)
    rebuilt.load_state_dict(state)
    torch.testing.assert_close(embedding_of(rebuilt).weight, embedding_of(model).weight)


# -- end to end ----------------------------------------------------------------------------------


def test_cli_run_with_word_vectors(workdir: Path) -> None:
    rng = np.random.default_rng(0)
    good, bad = ["great", "superb", "loved"], ["awful", "boring", "dull"]
    rows = []
    for i in range(60):
        words = rng.choice(good if i % 2 else bad, size=3).tolist()
        rows.append(f"the movie was {' '.join(words)}\t{i % 2}\n")
    data = workdir / "reviews.tsv"
    data.write_text("".join(rows))
    vectors = {w: rng.normal(size=8).round(4).tolist() for w in [*good, *bad, "the", "cat"]}
    glove = workdir / "glove.8d.txt"
    glove.write_text("".join(glove_lines(vectors)))
    args = [
        "data=text_classification",
        f"data.path={data}",
        "data.vectorize.mode=int",
        "data.vectorize.sequence_length=12",
        "model=embedding_dense",
        "model.embedding_dim=8",
        f"model.word_vectors={glove}",
        "trainer.max_epochs=1",
    ]
    result = run_cli(args, cwd=workdir)
    assert result.returncode == 0, result.output
    (run,) = mlflow_runs(store_uri(workdir))
    params = run.data.params
    assert "data.vocabulary" not in params
    assert params["data.vocabulary_size"] == "11"  # padding, [UNK], "the movie was" + 6
    assert params["model.embeddings_found"] == "7"
    # the run's network comes back from its checkpoint alone
    from pipelines.training.run_loader import load_run_model

    glove.unlink()
    model = load_run_model(f"runs:/{run.info.run_id}", tracking_uri=store_uri(workdir))
    weight = embedding_of(model).weight
    assert int(weight.any(dim=1).sum()) == 7
