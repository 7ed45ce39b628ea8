"""Text data larger than the memory budget is streamed from disk (issue 23).

``data.in_memory=auto`` vectorizes into memory when the tensors fit ``data.memory_budget``,
else fits the vocabulary on the training texts read in chunks and memory-maps the token
ids: the same vocabulary, the same batches in the same order, so the same metrics;
``evaluate``, ``predict`` and ``pipelines.load`` work on a streamed run, and a bad row is
one paragraph naming the file, as on the in-memory path.
"""

from __future__ import annotations

import csv
import errno
import io
import logging
import os
import random
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import mlflow_runs, run_cli, store_uri
from pipelines.errors import ConfigValueError, DataNotFoundError
from plugins.data import streamed_text
from plugins.data.imdb import IMDBDataModule
from plugins.data.text import TextClassificationDataModule
from plugins.data.vectorize import TextVectorizer, TokenCounts

POSITIVE = ["good", "great", "superb", "lovely"]
NEGATIVE = ["bad", "awful", "poor", "dreadful"]
FILLER = ["phone", "battery", "screen", "case", "charger", "The", "a", "<br />", "it's,"]
#: vectorize settings small enough for quick tests: sequences, the default bags, and more
MODES = {
    "sequence": {"mode": "int", "max_tokens": 12, "sequence_length": 7},
    "multi_hot": {"mode": "multi_hot", "max_tokens": 12},
    "tf_idf_bigrams": {"mode": "tf_idf", "ngrams": 2, "max_tokens": 30},
    "chars": {"mode": "char", "max_tokens": 20, "strip_punctuation": False, "sequence_length": 25},
    "uncapped_counts": {"mode": "count", "max_tokens": None},
}
SPLITS = ("train", "val", "test")


def reviews(count: int, seed: int = 0, labels: tuple[str, ...] = ("0", "1")) -> list[tuple]:
    """``(text, label)``: filler words and one that gives the label away ("1": positive)."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        label = labels[index % len(labels)]
        words = [*rng.choices(FILLER, k=rng.randint(1, 9))]
        words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if label == "1" else NEGATIVE))
        rows.append((" ".join(words), label))
    return rows


def write_tsv(path: Path, count: int = 90, seed: int = 0) -> Path:
    path.write_text("".join(f"{text}\t{label}\n" for text, label in reviews(count, seed)))
    return path


def write_csv(path: Path, count: int = 90, seed: int = 1) -> Path:
    """A CSV with quoted commas and newlines inside texts, and a BOM."""
    with path.open("w", newline="", encoding="utf-8-sig") as stream:
        writer = csv.writer(stream)
        writer.writerow(["id", "text", "label"])
        for index, (text, label) in enumerate(reviews(count, seed)):
            if index % 7 == 0:
                text = f"{text},\n  and more\r\n{text}"
            writer.writerow([index, text, label])
    return path


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 8 texts and pair counts merged all the time: many chunks even here."""
    monkeypatch.setattr(streamed_text, "CHUNK_TEXTS", 8)
    monkeypatch.setattr(TokenCounts, "_MERGE_AT", 4)


def both_paths(**kwargs: Any) -> tuple[Any, Any]:
    """The same data module set up in memory and streamed (other batch sizes: no matter)."""
    cls = kwargs.pop("cls", TextClassificationDataModule)
    in_memory = cls(in_memory=True, **kwargs)
    streamed = cls(in_memory=False, **kwargs)
    in_memory.setup()
    streamed.setup()
    assert in_memory.data_path == "in_memory" and streamed.data_path == "streamed"
    assert not streamed.splits and set(streamed.streams) == set(SPLITS)
    return in_memory, streamed


def assert_same_batches(in_memory: Any, streamed: Any, batch_size: int = 5) -> None:
    assert streamed.vectorizer.to_json() == in_memory.vectorizer.to_json()
    assert streamed.classes == in_memory.classes
    assert streamed.model_kwargs() == in_memory.model_kwargs()
    in_memory.batch_size = streamed.batch_size = batch_size
    for split in SPLITS:
        inputs, labels = in_memory.splits[split]
        batches = list(streamed._batches(split, shuffle=False))
        assert torch.equal(torch.cat([b[0] for b in batches]), inputs), split
        assert torch.equal(torch.cat([b[1] for b in batches]), labels), split
    for epoch in (0, 3):  # the trainer's epoch seeds the shuffle, on both paths
        expected, shuffled = in_memory._batches("train", True), streamed._batches("train", True)
        expected.set_epoch(epoch)
        shuffled.sampler.set_epoch(epoch)
        for (a, la), (b, lb) in zip(expected, shuffled, strict=True):
            assert torch.equal(a, b) and torch.equal(la, lb)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("writer", [write_tsv, write_csv])
def test_both_paths_give_the_same_batches(tmp_path: Path, small_chunks, mode, writer) -> None:
    path = writer(tmp_path / ("reviews.tsv" if writer is write_tsv else "reviews.csv"))
    in_memory, streamed = both_paths(path=str(path), vectorize=MODES[mode], cache_dir=None)
    assert_same_batches(in_memory, streamed)
    assert streamed.test_texts == in_memory.test_texts, "the report's sample texts"


def test_a_test_file_and_the_cache(tmp_path: Path, small_chunks, monkeypatch) -> None:
    """``data.test_path``; the streamed entry is cached next to the in-memory one and read
    back without reading or fitting anything."""
    args = {
        "path": str(write_tsv(tmp_path / "train.tsv", 70)),
        "test_path": str(write_tsv(tmp_path / "test.tsv", 23, seed=5)),
        "vectorize": MODES["sequence"],
        "cache_dir": str(tmp_path / "cache"),
    }
    in_memory, streamed = both_paths(**args)
    assert_same_batches(in_memory, streamed)
    folder = streamed.artifacts()["tokenizer.json"].parent
    assert folder.name == streamed_text.STREAMED and folder.parent.parent == tmp_path / "cache"
    assert (folder.parent / "tensors.pt").is_file(), "one cache entry, both forms"

    def fail(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(TextVectorizer, "full_tokenizer", fail)
    monkeypatch.setattr(TextClassificationDataModule, "stream_texts", fail)
    again = TextClassificationDataModule(in_memory=False, **args)
    again.setup()
    assert again.test_texts is None  # ids only, as the in-memory cache
    assert_same_batches(in_memory, again)


def test_a_runs_vectorizer_encodes_streamed_data(tmp_path: Path) -> None:
    """evaluate/predict rebuild a run's data with its tokenizer.json: streamed, as in
    memory, other data is encoded with the run's vocabulary and classes."""
    train = write_tsv(tmp_path / "train.tsv", 60)
    run = TextClassificationDataModule(path=str(train), vectorize=MODES["multi_hot"])
    run.setup()
    other = tmp_path / "other.tsv"
    other.write_text("".join(f"{text} zebra zebra\t1\n" for text, _ in reviews(30, seed=9)))
    rebuilt = {}
    for in_memory in (True, False):
        data = TextClassificationDataModule(path=str(other), in_memory=in_memory)
        data.use_artifacts({"tokenizer.json": run.artifacts()["tokenizer.json"]})
        data.setup()
        rebuilt[in_memory] = data
    assert "zebra" not in rebuilt[False].vectorizer.vocabulary
    assert rebuilt[False].classes == ["0", "1"]
    assert_same_batches(rebuilt[True], rebuilt[False])


def test_imdb_folders_stream_the_same(tmp_path: Path, small_chunks) -> None:
    rows = iter(reviews(48, seed=3))
    for part in ("train", "test"):
        for label in ("neg", "pos"):
            (tmp_path / "aclImdb" / part / label).mkdir(parents=True)
    for index, (text, label) in enumerate(rows):
        part = "train" if index < 32 else "test"
        folder = tmp_path / "aclImdb" / part / ("pos" if label == "1" else "neg")
        (folder / f"{index}_7.txt").write_text(text)
    args = {"root": str(tmp_path), "train_limit": 24, "vectorize": MODES["tf_idf_bigrams"]}
    in_memory, streamed = both_paths(cls=IMDBDataModule, **args)
    assert {name: streamed.streams[name].count for name in SPLITS} == {
        "train": 19,
        "val": 5,
        "test": 16,
    }
    assert_same_batches(in_memory, streamed)
    assert streamed.count_texts() == 40


def test_auto_compares_the_tensors_with_the_budget(tmp_path: Path, caplog) -> None:
    path = write_tsv(tmp_path / "reviews.tsv", 100)
    caplog.set_level(logging.INFO, logger="plugins.data.streamed_text")
    sequences = {"mode": "int", "sequence_length": 50}
    # 100 texts x 50 ids x 8 bytes = 40 KB: streamed under 39 KB, in memory from 41 KB
    for budget, path_taken in (("39KB", "streamed"), (41_000, "in_memory")):
        data = TextClassificationDataModule(
            path=str(path), vectorize=sequences, memory_budget=budget
        )
        data.setup()
        assert data.data_path == path_taken
    lines = [r.getMessage() for r in caplog.records if "data.memory_budget" in r.getMessage()]
    assert lines == [
        "text_classification: about 100 texts vectorized (50 int64 ids each) would take 40 KB, "
        "above data.memory_budget 39 KB: streaming token ids from disk",
        "text_classification: about 100 texts vectorized (50 int64 ids each) would take 40 KB, "
        "within data.memory_budget 41 KB: vectorizing into memory",
    ]
    # bags: texts x max_tokens x 4 bytes; the default budget, a quarter of the free memory
    bags = TextClassificationDataModule(path=str(path), vectorize={"max_tokens": 1000})
    bags.setup()
    assert bags.data_path == "in_memory"
    said = "about 100 texts vectorized (float32 bags of 1000 tokens) would take 400 KB, within"
    assert any(said in record.getMessage() for record in caplog.records)
    with pytest.raises(ConfigValueError, match=r"data\.in_memory must be auto, true or false"):
        TextClassificationDataModule(path=str(path), in_memory="sometimes")
    with pytest.raises(ConfigValueError, match=r"data\.memory_budget"):
        TextClassificationDataModule(path=str(path), memory_budget="lots")


def test_a_bad_row_while_streaming_is_the_in_memory_paragraph(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "reviews.tsv", 30)
    path.write_text(path.read_text() + "a review with no label\t\n")
    messages = []
    for in_memory in (True, False):
        with pytest.raises(ConfigValueError) as raised:
            TextClassificationDataModule(path=str(path), in_memory=in_memory).setup()
        messages.append(str(raised.value))
    assert messages[0] == messages[1] and f"{path}, line 31: no label" in messages[1]
    bad_csv = tmp_path / "reviews.csv"
    bad_csv.write_text('text,label\n"fine",1\n"a row cut short\n')
    with pytest.raises(ConfigValueError, match=r"reviews.csv, line 3: the row has no 'label'"):
        TextClassificationDataModule(path=str(bad_csv), in_memory=False).setup()
    with pytest.raises(DataNotFoundError, match="does not exist"):
        TextClassificationDataModule(path=str(tmp_path / "nothing.csv"), in_memory=False).setup()


def test_an_unreadable_review_while_streaming_names_it(tmp_path: Path, monkeypatch) -> None:
    """(Root ignores permissions: the refusal is imitated, as in test_unreadable_data.)"""
    for part in ("train", "test"):
        for label, word in (("neg", "awful"), ("pos", "great")):
            (tmp_path / "aclImdb" / part / label).mkdir(parents=True)
            for index in range(5):
                (tmp_path / "aclImdb" / part / label / f"{index}_1.txt").write_text(
                    f"{word} {index}"
                )
    denied = (tmp_path / "aclImdb" / "train" / "pos" / "3_1.txt").resolve()
    real_open = io.open

    def guarded_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, str | os.PathLike) and Path(file).resolve() == denied:
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(io, "open", guarded_open)
    with pytest.raises(DataNotFoundError, match=re.escape(f"Cannot read {denied}: permission")):
        IMDBDataModule(root=str(tmp_path), in_memory=False, cache_dir=None).setup()


# -- end to end ------------------------------------------------------------------------------


def train(workdir: Path, data: Path, extra: str) -> tuple[Any, str]:
    """bow_dense (multi-hot bags, the default vectorizer) on ``data``, in ``workdir``."""
    workdir.mkdir()
    args = ["model=bow_dense", "data=text_classification", f"data.path={data}", extra]
    args += ["data.batch_size=8", "model.lr=0.01", "trainer.max_epochs=2", "seed=3"]
    args += ["pipeline.stages=[prepare,fit,test]"]
    result = run_cli(args, workdir)
    assert result.returncode == 0, result.output
    (run,) = mlflow_runs(store_uri(workdir))
    return run, result.output


@pytest.fixture(scope="module")
def streamed_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any, str]:
    """A file trained streamed: ``data.in_memory=auto`` with a 1 KB budget."""
    base = tmp_path_factory.mktemp("streamed_text")
    data = write_tsv(base / "phones.txt", 160, seed=0)
    run, output = train(base / "streamed", data, "data.memory_budget=1KB")
    return base, data, run, output


def test_a_streamed_run_then_evaluate_and_predict(streamed_run) -> None:
    base, _, run, output = streamed_run
    workdir = base / "streamed"
    assert run.data.tags["pipelines.data_path"] == "streamed"
    assert re.search(
        r"text_classification: about 160 texts vectorized \(float32 bags of 20000 tokens\) "
        r"would take 12.8 MB, above data.memory_budget 1 KB: streaming token ids from disk",
        output,
    ), output
    assert run.data.metrics["test/acc"] >= 0.9
    result = run_cli(module="pipelines.evaluate", args=[run.info.run_id], cwd=workdir)
    assert result.returncode == 0, result.output
    found = re.search(r"test/acc\s+([\d.]+)\s+\(recorded ([\d.]+)\)", result.stdout)
    assert found and found[1] == found[2], result.output
    review = workdir / "review.txt"
    review.write_text("a superb charger")
    result = run_cli(module="pipelines.predict", args=[run.info.run_id, str(review)], cwd=workdir)
    assert result.returncode == 0, result.output
    assert re.search(r"review.txt,1,", result.stdout), result.stdout


@pytest.mark.slow
def test_a_streamed_run_trains_as_one_in_memory(streamed_run) -> None:
    """The same command in memory: the same metrics (the batches are equal, above)."""
    base, data, streamed, _ = streamed_run
    in_memory, _ = train(base / "in_memory", data, "data.in_memory=true")
    assert in_memory.data.tags["pipelines.data_path"] == "in_memory"
    for key in ("test/acc", "test/loss", "val/loss", "train/loss", "best/val_loss"):
        assert streamed.data.metrics[key] == pytest.approx(in_memory.data.metrics[key], abs=1e-5)


def test_a_bad_row_in_a_streamed_run_is_one_paragraph(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\n" + "a fine phone,1\n" * 5 + "no label here,\n")
    args = ["model=bow_dense", "data=text_classification", f"data.path={bad}"]
    result = run_cli([*args, "data.in_memory=false", "tracking=none"], tmp_path)
    assert result.returncode == 2, result.output
    assert f"{bad}, line 7: the row has no 'label' value" in result.stderr
    assert "Traceback" not in result.output
