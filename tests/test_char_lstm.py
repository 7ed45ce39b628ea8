"""Char-level text generation (book 1st ed. 8.1): the text_corpus data and the char_lstm model."""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from conftest import mlflow_runs, run_cli, store_uri
from pipelines.errors import ConfigValueError, DataNotFoundError
from plugins.data.text_corpus import UNKNOWN, TextCorpusDataModule, pydoc_topics_text
from plugins.models.char_lstm import CharLSTM, reweight
from plugins.models.generative import EpochSamples, Generative
from plugins.stages.generate import SHOWN_CHARACTERS

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
NIETZSCHE = SHARED_DATA / "nietzsche" / "nietzsche.txt"


#: tiny networks run fastest on one thread (conftest's fixture)
pytestmark = pytest.mark.usefixtures("one_thread")


def corpus(tmp_path: Path, text: str, **settings) -> TextCorpusDataModule:
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8", newline="")
    data = TextCorpusDataModule(path=str(path), **settings)
    data.setup("fit")
    return data


def tiny_model(charset: list[str], seed: int = 0, **settings) -> CharLSTM:
    torch.manual_seed(seed)
    options = {"units": 8, "embedding_dim": 5, "num_layers": 2, **settings}
    return CharLSTM(
        input_shape=(4,), num_classes=len(charset), charset=charset, seed_text="abc", **options
    )


# -- data ---------------------------------------------------------------------------------


def test_windows_and_targets_are_the_books(tmp_path: Path) -> None:
    text = "The Quick Brown Fox jumps over"  # 30 chars: 24 train, 6 validation
    data = corpus(tmp_path, text, sequence_length=3, step=2, val_fraction=0.2, batch_size=4)
    train = text.lower()[:24]
    assert data.texts["train"] == train
    sentences = [train[i : i + 3] for i in range(0, len(train) - 3, 2)]  # the book's loop
    next_chars = [train[i + 3] for i in range(0, len(train) - 3, 2)]
    batches = list(data.val_dataloader())
    assert [len(x) for x, _ in batches] == [2]  # val "s over": windows at 0 and 2
    windows, targets = [], []
    for inputs, labels in data._batches("train", shuffle=False):
        assert inputs.dtype == torch.int64 and inputs.shape[1:] == (3,)
        windows += ["".join(data.charset[i] for i in row) for row in inputs.tolist()]
        targets += [data.charset[i] for i in labels.tolist()]
    assert windows == sentences and targets == next_chars
    shuffled = [y for _, ys in data.train_dataloader() for y in ys.tolist()]
    assert sorted(shuffled) == sorted(data.charset.index(c) for c in next_chars)
    assert data.model_kwargs()["input_shape"] == (3,)


def test_split_is_chronological_without_overlap(tmp_path: Path) -> None:
    text = "".join(chr(ord("a") + i % 26) for i in range(100))
    data = corpus(tmp_path, text, sequence_length=4, step=1, val_fraction=0.2, test_fraction=0.1)
    assert [len(data.texts[s]) for s in ("train", "val", "test")] == [70, 20, 10]
    assert data.texts["train"] + data.texts["val"] + data.texts["test"] == text
    # every window and its target lie inside its own split's span of the text
    offsets = {"train": 0, "val": 70, "test": 90}
    for split, size in (("train", 70), ("val", 20), ("test", 10)):
        starts = data.window_starts(split)
        assert starts.min() >= 0 and starts.max() + 4 < size
        span = (offsets[split] + starts.min(), offsets[split] + starts.max() + 4)
        assert offsets[split] <= span[0] and span[1] < offsets[split] + size
    assert len(data.test_dataloader()) == 1


def test_charset_is_the_training_texts_plus_unknown(tmp_path: Path) -> None:
    data = corpus(tmp_path, "abcabcabcabcXYZ!", sequence_length=2, step=1, val_fraction=0.25)
    assert data.charset == ["a", "b", "c", UNKNOWN]  # "xyz!" only in validation
    assert data.ids["val"].tolist() == [3, 3, 3, 3]
    kwargs = data.model_kwargs()
    assert kwargs["num_classes"] == kwargs["vocab_size"] == 4
    assert kwargs["charset"] == data.charset and kwargs["seed_text"] == "ab"


def test_unigram_bpc_by_hand(tmp_path: Path) -> None:
    data = corpus(tmp_path, "aaabab", sequence_length=1, step=1, val_fraction=1 / 3)
    assert data.texts == {"train": "aaab", "val": "ab", "test": ""}
    # counts a=3, b=1, unknown=0 of N=4, add-one over V=3: p = 4/7, 2/7, 1/7
    assert data.unigram_bpc("val") == pytest.approx(-math.log2(2 / 7))  # targets: "b"
    train = -(2 * math.log2(4 / 7) + math.log2(2 / 7)) / 3  # targets: "a", "a", "b"
    assert data.unigram_bpc("train") == pytest.approx(train)
    assert data.model_kwargs()["unigram_bpc"] == pytest.approx(-math.log2(2 / 7))


def test_too_short_text_and_bad_settings_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigValueError, match="too few"):
        corpus(tmp_path, "abcdefghij", sequence_length=5, val_fraction=0.2)
    with pytest.raises(ConfigValueError, match="val_fraction"):
        TextCorpusDataModule(val_fraction=0.0)
    with pytest.raises(DataNotFoundError, match="does not exist"):
        TextCorpusDataModule(path=str(tmp_path / "missing.txt")).setup()


def test_an_epoch_of_a_window_subset_says_so_and_null_is_a_full_pass(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = "the cat sat on the mat. " * 40
    with caplog.at_level(logging.INFO, logger="plugins.data.text_corpus"):
        data = corpus(tmp_path, text, sequence_length=10, step=2, windows_per_epoch=8)
    training = len(data.window_starts("train"))
    assert f"an epoch is 8 of the {training} training windows" in caplog.text
    assert "data.windows_per_epoch" in caplog.text
    assert len(data.train_dataloader()) * data.batch_size >= 8
    full = corpus(tmp_path, text, sequence_length=10, step=2, windows_per_epoch=None)
    assert sum(len(batch[0]) for batch in full.train_dataloader()) == training


def test_the_old_name_train_windows_still_builds_a_recorded_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A run recorded before the rename (its config.yaml says ``train_windows``) is rebuilt
    as it was, with a one-line notice."""
    from pipelines import registry

    with caplog.at_level(logging.WARNING, logger="plugins.data.text_corpus"):
        data = registry.build("data", {"name": "text_corpus", "train_windows": 64})
    assert data.windows_per_epoch == 64
    assert "'data.train_windows' is now 'data.windows_per_epoch'" in caplog.text


def test_pydoc_topics_are_the_offline_default() -> None:
    data = TextCorpusDataModule(max_chars=30_000)
    data.setup()
    text = pydoc_topics_text()
    assert len(text) > 300_000
    assert data.texts["train"] == text.lower()[:27_000]
    assert {"e", "t", " ", "\n"} <= set(data.charset) and data.charset[-1] == UNKNOWN
    assert 3.0 < data.unigram_bpc("val") < 6.0


@pytest.mark.skipif(not NIETZSCHE.is_file(), reason="needs ../shared/data/nietzsche")
def test_nietzsche_corpus_as_the_book_reads_it() -> None:
    data = TextCorpusDataModule(path=str(NIETZSCHE), val_fraction=0.1)
    text = data.read_text()
    assert len(text) == 600_893 and len(set(text)) == 57
    assert text.startswith("preface\n\n\nsupposing that truth is a woman")
    data.setup()
    assert len(data.charset) <= 58 and data.charset[-1] == UNKNOWN
    assert len(data.window_starts("train")) == len(range(0, 540_804 - 60, 3))


def test_download_checks_sha256(tmp_path: Path) -> None:
    source = tmp_path / "remote" / "nietzsche.txt"
    source.parent.mkdir()
    source.write_text("supposing that truth is a woman--what then? " * 10, encoding="utf-8")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    target = tmp_path / "cache" / "nietzsche" / "nietzsche.txt"
    settings = {"sequence_length": 10, "download": True, "url": source.as_uri()}
    with pytest.raises(DataNotFoundError, match="checksum mismatch"):
        TextCorpusDataModule(path=str(target), sha256="0" * 64, **settings).setup()
    assert not target.exists()
    data = TextCorpusDataModule(path=str(target), sha256=digest, **settings)
    data.setup()
    assert target.read_bytes() == source.read_bytes()
    assert data.texts["train"].startswith("supposing that truth")


# -- model --------------------------------------------------------------------------------


def test_reweighting_is_the_books_sample_and_zero_is_argmax() -> None:
    preds = np.random.default_rng(0).dirichlet(np.ones(7), size=3)
    log_probs = torch.from_numpy(np.log(preds))
    for temperature in (0.2, 0.5, 1.0, 1.2):
        book = np.exp(np.log(preds) / temperature)  # the book's sample(), before drawing
        book = book / book.sum(axis=1, keepdims=True)
        assert np.allclose(reweight(log_probs, temperature).numpy(), book)
    argmax = torch.nn.functional.one_hot(log_probs.argmax(dim=1), 7).double()
    assert torch.equal(reweight(log_probs, 0.0), argmax)
    assert torch.allclose(reweight(log_probs, 1e-6), argmax, atol=1e-12)
    per_row = reweight(log_probs, torch.tensor([[0.0], [1.0], [0.5]], dtype=torch.float64))
    assert torch.equal(per_row[0], argmax[0]) and torch.allclose(per_row[1], log_probs[1].exp())


def test_each_character_is_drawn_after_the_last_window_as_the_book_does() -> None:
    """The book's loop feeds the last ``maxlen`` characters before each new one: greedy
    generation is the argmax of the model on the last window of the seed and the text so far,
    never a context longer than the windows it was trained on."""
    charset = ["a", "b", "c", "d", UNKNOWN]
    model = tiny_model(charset).eval()
    assert model.window == 4
    with torch.no_grad():
        drawn = model.sample_ids("abc", 15, (0.0,))[0].tolist()
        seed = model.encode("abc").tolist()
        for i, char in enumerate(drawn):
            context = torch.tensor([(seed + drawn[:i])[-model.window :]])
            rerun = model(context)[0].log_softmax(-1)[:-1]  # the unknown id is never drawn
            assert char == int(rerun.argmax())


def test_generate_writes_one_file_per_temperature(tmp_path: Path) -> None:
    charset = ["\n", " ", "a", "b", "é", UNKNOWN]
    model = tiny_model(charset, epoch_length=7)
    assert isinstance(model, Generative)
    files = model.generate(tmp_path / "end", length=50, seed_text="ab a\n", seed=3)
    names = ["temperature-0.2.txt", "temperature-0.5.txt", "temperature-1.0.txt"]
    assert [f.name for f in files] == [*names, "temperature-1.2.txt"]
    texts = [f.read_text(encoding="utf-8") for f in files]  # newline="" on write: exact
    assert [len(f.read_bytes().decode("utf-8")) for f in files] == [50] * 4
    assert all(set(text) <= set(charset[:-1]) for text in texts)
    again = model.generate(tmp_path / "again", length=50, seed_text="ab a\n", seed=3)
    assert [f.read_text(encoding="utf-8") for f in again] == texts
    torch.manual_seed(5)
    (epoch_file,) = model.generate(tmp_path / "epoch", epoch=2, temperatures=[0.5])
    assert epoch_file.name == "temperature-0.5.txt"
    assert len(epoch_file.read_text(encoding="utf-8")) == 7  # epoch_length after an epoch
    torch.manual_seed(5)
    (same,) = model.generate(tmp_path / "same", epoch=2, temperatures=[0.5])
    assert same.read_text(encoding="utf-8") == epoch_file.read_text(encoding="utf-8")
    assert len(model.configure_callbacks()) == 1
    assert isinstance(model.configure_callbacks()[0], EpochSamples)
    assert tiny_model(charset, sample_every=0).configure_callbacks() == []


def test_trained_model_continues_the_seed(tmp_path: Path) -> None:
    text = "abcdefgh" * 40
    data = corpus(tmp_path, text, sequence_length=4, step=1, val_fraction=0.1, batch_size=64)
    torch.manual_seed(0)
    model = CharLSTM(
        **{**data.model_kwargs(), "seed_text": "abcd"}, units=32, embedding_dim=8, lr=0.01
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(8):
        for inputs, targets in data.train_dataloader():
            loss = torch.nn.functional.cross_entropy(model(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    (cold,) = model.generate(tmp_path, temperatures=[0.2], length=20, seed=0)
    assert cold.read_text(encoding="utf-8") == "efghabcdefghabcdefgh"
    (other,) = model.generate(tmp_path, temperatures=[0.2], length=4, seed_text="ABCDEF", seed=0)
    assert other.read_text(encoding="utf-8") == "ghab"  # upper case read as lower case


def test_rebuilt_from_hyperparameters_without_data(tmp_path: Path) -> None:
    data = corpus(tmp_path, "the cat sat on the mat. " * 8, sequence_length=6, val_fraction=0.25)
    model = CharLSTM(**data.model_kwargs(), units=8)
    checkpoint = tmp_path / "model.ckpt"
    torch.save(
        {"hyper_parameters": dict(model.hparams), "state_dict": model.state_dict()}, checkpoint
    )
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    rebuilt = CharLSTM(**saved["hyper_parameters"])
    rebuilt.load_state_dict(saved["state_dict"])
    assert rebuilt.charset == data.charset and rebuilt.seed_text == "the ca"
    assert rebuilt.unigram_bpc == pytest.approx(data.unigram_bpc("val"))
    first = model.generate(tmp_path / "a", length=30, seed=1)
    second = rebuilt.generate(tmp_path / "b", length=30, seed=1)
    assert [f.read_text() for f in first] == [f.read_text() for f in second]


# -- end to end -------------------------------------------------------------------------


def test_cli_trains_samples_and_generates_from_the_run(workdir: Path) -> None:
    text = " ".join(
        f"the {a} {b} sat on the {c}."
        for a in ("cat", "dog", "owl")
        for b in ("big", "red")
        for c in ("mat", "hat", "log", "rug")
    )
    path = workdir / "tiny.txt"
    path.write_text(text * 4, encoding="utf-8")  # about 2,400 characters
    result = run_cli(
        [
            "pipeline=generative",
            "model=char_lstm",
            "data=text_corpus",
            f"data.path={path}",
            "trainer.max_epochs=2",
            "data.sequence_length=20",
            "data.step=5",
            "data.windows_per_epoch=null",
            "model.units=16",
            "model.epoch_length=20",
            "model.length=30",
        ],
        cwd=workdir,
        env={"OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.output
    uri = store_uri(workdir)
    (run,) = mlflow_runs(uri)
    client = MlflowClient(tracking_uri=uri)
    run_id = run.info.run_id
    metrics = run.data.metrics
    assert {"val/bpc", "val/unigram_bpc", "val/loss", "val/acc", "train/loss"} <= set(metrics)
    assert metrics["val/bpc"] == pytest.approx(metrics["val/loss"] / math.log(2))
    assert len(client.get_metric_history(run_id, "val/unigram_bpc")) == 2
    epoch_one = {a.path for a in client.list_artifacts(run_id, "samples/epoch-001")}
    assert "samples/epoch-001/temperature-0.2.txt" in epoch_one
    generated = {a.path for a in client.list_artifacts(run_id, "generate")}
    assert "generate/temperature-1.2.txt" in generated
    sample = client.download_artifacts(run_id, "generate/temperature-1.2.txt", str(workdir))
    assert len(Path(sample).read_text(encoding="utf-8")) == 30

    result = run_cli(
        ["pipeline=generate", f"pipeline.stages.0.source=runs:/{run_id}"],
        cwd=workdir,
        env={"OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.output
    runs = mlflow_runs(uri)
    assert len(runs) == 2
    later = runs[1].info.run_id
    files = {a.path for a in client.list_artifacts(later, "generate")}
    assert {f"generate/temperature-{t}.txt" for t in (0.2, 0.5, 1.0, 1.2)} == files
    # and shows them, one per temperature, as the book does
    for temperature in (0.2, 0.5, 1.0, 1.2):
        text = client.download_artifacts(later, f"generate/temperature-{temperature}.txt")
        shown = Path(text).read_text(encoding="utf-8")[:SHOWN_CHARACTERS]
        assert f"--- temperature-{temperature} (" in result.stdout
        assert shown in result.stdout
    # named after the pipeline: the configured default model (mlp) plays no part
    assert runs[1].info.run_name.startswith("generate-")
    assert "pipelines: generate finished" in result.stdout
    # the summary shows how training went, though a generative pipeline has no test stage
    assert "best/val_bpc" in run.data.metrics

    result = run_cli(
        [
            "pipeline=generate",
            f"pipeline.stages.0.source=runs:/{run_id}",
            "+pipeline.stages.0.lenght=10",
        ],
        cwd=workdir,
        env={"OMP_NUM_THREADS": "1"},
    )
    assert result.returncode != 0
    assert "CharLSTM.generate does not accept the key 'pipeline.stages.0.lenght'" in result.stderr
    assert "Did you mean 'length'?" in result.stderr
    assert "Traceback" not in result.stderr
