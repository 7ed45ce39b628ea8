"""Text datasets: messy labelled files, IMDB folders and archives, Reuters npz and R8, cache."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import FAST, mlflow_runs, run_cli, store_uri
from pipelines.errors import ConfigValueError, DataNotFoundError
from pipelines.runtime.downloads import RemoteFile
from plugins.data.imdb import IMDBDataModule
from plugins.data.reuters import TOPICS, ReutersDataModule, keras_split
from plugins.data.text import TextClassificationDataModule, read_labelled_file
from plugins.data.vectorize import TextVectorizer

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is absent")
POSITIVE = ["great", "wonderful", "loved", "superb", "brilliant", "moving"]
NEGATIVE = ["awful", "boring", "hated", "dull", "terrible", "waste"]


def reviews(count: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """Short reviews whose words give their label away (0 negative, 1 positive)."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(count):
        label = i % 2
        words = rng.choice(POSITIVE if label else NEGATIVE, size=4).tolist()
        texts.append(f"This film was {' and '.join(words)}.")
        labels.append(label)
    return texts, labels


def write_tsv(path: Path, count: int = 60) -> Path:
    texts, labels = reviews(count)
    path.write_text("".join(f"{t}\t{label}\n" for t, label in zip(texts, labels, strict=True)))
    return path


# -- labelled text files ---------------------------------------------------------------


def test_messy_tsv_lines_parse_exactly(tmp_path: Path) -> None:
    path = tmp_path / "messy.txt"
    lines = [
        "A fine film.\t1",
        'He said "wow and left.\t0',  # an unbalanced quote means nothing here
        "The greatest film ever made.   1",  # spaces instead of a TAB
        "Caf\u00e9 \u0085 scene\u0096 was long.\t0",  # NEL and friends stay in the text
        "",
        "With a\ttab inside\t1",
    ]
    path.write_bytes(("\n".join(lines) + "\r\n").encode())
    texts, labels = read_labelled_file(path)
    assert texts == [
        "A fine film.",
        'He said "wow and left.',
        "The greatest film ever made.",
        "Caf\u00e9 \u0085 scene\u0096 was long.",
        "With a\ttab inside",
    ]
    assert labels == ["1", "0", "1", "0", "1"]


def test_csv_with_quoted_commas_and_newlines(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text(
        'review,sentiment\n"Good, really\ngood ""film""",positive\nplain text,negative\n'
    )
    texts, labels = read_labelled_file(path, text_column="review", label_column="sentiment")
    assert texts == ['Good, really\ngood "film"', "plain text"]
    assert labels == ["positive", "negative"]
    with pytest.raises(ConfigValueError, match="no column 'text'"):
        read_labelled_file(path)


def test_csv_detected_by_header_without_csv_suffix(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text('text,label\n"a, b",x\n')
    assert read_labelled_file(path) == (["a, b"], ["x"])


@pytest.mark.parametrize(
    ("name", "content", "error", "match"),
    [
        ("lines.txt", "good\t1\nno label here\t\nbad\t0\n", ConfigValueError, "line 2"),
        ("single.txt", "fine\t1\nalone\n", ConfigValueError, "line 2: no label"),
        ("rows.csv", 'text,label\nok,1\n"two\nlines",\n', ConfigValueError, "line 3"),
        ("empty.txt", "\n\n", DataNotFoundError, "holds no labelled texts"),
        ("missing.txt", None, DataNotFoundError, "does not exist"),
    ],
)
def test_bad_files_name_the_problem(
    tmp_path: Path, name: str, content: str | None, error: type, match: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(error, match=match):
        read_labelled_file(path)


def test_labels_words_or_integers_and_test_file(tmp_path: Path) -> None:
    path = tmp_path / "train.txt"
    path.write_text("".join(f"text {i} here\t{[2, 10, 1][i % 3]}\n" for i in range(30)))
    test = tmp_path / "test.txt"
    test.write_text("text a\t10\ntext b\t1\n")
    dm = TextClassificationDataModule(path=str(path), test_path=str(test), val_fraction=0.2)
    dm.setup()
    assert dm.classes == ["1", "2", "10"], "integers sort as numbers"
    assert dm.splits["test"][1].tolist() == [2, 0]
    assert len(dm.splits["train"][1]) == 24 and len(dm.splits["val"][1]) == 6
    test.write_text("text c\tunknown\n")
    with pytest.raises(ConfigValueError, match="unknown"):
        TextClassificationDataModule(path=str(path), test_path=str(test)).setup()


def test_text_classification_splits_and_model_kwargs(tmp_path: Path) -> None:
    dm = TextClassificationDataModule(
        path=str(write_tsv(tmp_path / "r.tsv", 100)),
        vectorize={"mode": "int", "max_tokens": 50, "sequence_length": 12},
        val_fraction=0.2,
        test_fraction=0.1,
    )
    dm.prepare_data()
    dm.setup()
    assert {k: len(v[1]) for k, v in dm.splits.items()} == {"train": 70, "val": 20, "test": 10}
    assert dm.splits["val"][1].sum() == 10, "stratified"
    inputs = dm.splits["train"][0]
    assert inputs.dtype == torch.int64 and inputs.shape == (70, 12)
    kwargs = dm.model_kwargs()
    assert kwargs.pop("vocabulary")[:2] == ["", "[UNK]"], "for pretrained word vectors"
    assert kwargs == {"input_shape": (12,), "num_classes": 2, "vocab_size": 50}
    batch = next(iter(dm.train_dataloader()))
    assert batch[0].shape == (32, 12) and batch[1].dtype == torch.int64


@pytest.mark.parametrize(("input_kind", "dtype"), [("tokens", torch.int64), (None, torch.float32)])
def test_auto_mode_follows_the_model(tmp_path: Path, input_kind, dtype) -> None:
    """``mode: auto``: token ids for models that embed them, multi-hot bags for the rest."""
    model_class = type("Model", (), {"input_kind": input_kind})
    data = TextClassificationDataModule(
        path=str(write_tsv(tmp_path / "reviews.tsv")),
        vectorize={"mode": "auto", "max_tokens": 50, "sequence_length": 12},
    )
    data.adapt_to_model(model_class)
    data.setup()
    inputs = data.splits["train"][0]
    assert inputs.dtype == dtype
    assert inputs.shape[1:] == ((12,) if input_kind else (50,))
    assert ("vocab_size" in data.model_kwargs()) is (input_kind == "tokens")


def test_rare_class_falls_back_to_a_seeded_random_split(tmp_path: Path) -> None:
    path = tmp_path / "rare.txt"
    path.write_text("a good film\t1\n" * 9 + "an odd one\t2\n" + "a bad film\t0\n" * 10)
    args = {"path": str(path), "val_fraction": 0.25, "test_fraction": 0.25}
    first, second = TextClassificationDataModule(**args), TextClassificationDataModule(**args)
    first.setup()
    second.setup()
    assert {k: len(v[1]) for k, v in first.splits.items()} == {"train": 10, "val": 5, "test": 5}
    assert torch.equal(first.splits["val"][1], second.splits["val"][1]), "seeded"
    assert first.classes == ["0", "1", "2"]


def test_vocabulary_learned_on_the_training_split_only(tmp_path: Path) -> None:
    path = tmp_path / "train.txt"
    path.write_text("good movie\t1\nbad movie\t0\n" * 10)
    test = tmp_path / "test.txt"
    test.write_text("zebra movie\t1\n")
    dm = TextClassificationDataModule(path=str(path), test_path=str(test), val_fraction=0.5)
    dm.setup()
    assert "zebra" not in dm.vectorizer.vocabulary
    assert dm.splits["test"][0][0, 1] == 1, "[UNK]"


def test_cache_skips_reading_and_vectorizing(tmp_path: Path, monkeypatch) -> None:
    path = write_tsv(tmp_path / "r.tsv")
    args = {"path": str(path), "cache_dir": str(tmp_path / "cache"), "vectorize": {"mode": "count"}}
    first = TextClassificationDataModule(**args)
    first.setup()
    assert (first.artifacts()["tokenizer.json"]).parent.parent == tmp_path / "cache"

    def fail(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    with monkeypatch.context() as patch:
        patch.setattr(TextVectorizer, "fit", fail)
        patch.setattr(TextVectorizer, "fit_encode", fail)
        patch.setattr(TextClassificationDataModule, "load_texts", fail)
        second = TextClassificationDataModule(**args, batch_size=7)  # batch size: same cache
        second.setup()
    for name in ("train", "val", "test"):
        assert torch.equal(first.splits[name][0], second.splits[name][0])
        assert torch.equal(first.splits[name][1], second.splits[name][1])
    assert second.classes == first.classes
    assert second.artifacts() == first.artifacts()

    changed = TextClassificationDataModule(**{**args, "vectorize": {"mode": "multi_hot"}})
    changed.setup()  # other settings: another entry
    assert changed.artifacts() != first.artifacts()
    path.write_text(path.read_text() + "one more great film\t1\n")
    edited = TextClassificationDataModule(**args)
    edited.setup()  # another file content: another entry
    assert sum(len(labels) for _, labels in edited.splits.values()) == 61


def test_broken_cache_is_rebuilt(tmp_path: Path) -> None:
    args = {"path": str(write_tsv(tmp_path / "r.tsv")), "cache_dir": str(tmp_path / "c")}
    first = TextClassificationDataModule(**args)
    first.setup()
    tensors = first.artifacts()["tokenizer.json"].parent / "tensors.pt"
    tensors.write_bytes(b"garbage")
    again = TextClassificationDataModule(**args)
    again.setup()
    assert torch.equal(again.splits["test"][0], first.splits["test"][0])


@needs_shared
@pytest.mark.parametrize("name", ["amazon_cells", "imdb", "yelp"])
def test_real_sentiment_files(name: str) -> None:
    texts, labels = read_labelled_file(SHARED / "sentiment" / f"{name}_labelled.txt")
    assert len(texts) == 1000 and labels.count("0") == labels.count("1") == 500
    if name == "imdb":
        assert texts[16].endswith("the single greatest film ever made.")
        assert labels[16] == "1"
        assert any("\u0085" in t for t in texts) and any("\u0096" in t for t in texts)
        assert texts[18].count('"') % 2 == 1, "an unbalanced quote, kept on its line"


@needs_shared
def test_real_imdb_small_csv(tmp_path: Path) -> None:
    texts, labels = read_labelled_file(SHARED / "imdb" / "imdb_small.csv")
    assert len(texts) == 2000 and labels.count("1") == 1000 and len(set(texts)) == 2000
    assert min(map(len, texts)) == 65 and max(map(len, texts)) == 10321
    dm = TextClassificationDataModule(
        path=str(SHARED / "imdb" / "imdb_small.csv"), cache_dir=str(tmp_path)
    )
    dm.setup()
    assert {k: len(v[1]) for k, v in dm.splits.items()} == {"train": 1200, "val": 400, "test": 400}
    assert dm.splits["train"][0].shape == (1200, 20000)
    assert "br" not in dm.vectorizer.vocabulary[:200], "<br /> tags are stripped"


# -- IMDB ----------------------------------------------------------------------------------


def fake_aclimdb(root: Path, per_class: int = 6) -> Path:
    folder = root / "aclImdb"
    for part in ("train", "test"):
        for label, words in (("neg", NEGATIVE), ("pos", POSITIVE)):
            (folder / part / label).mkdir(parents=True)
            for i in range(per_class):
                text = f"A {words[i % 6]} film.<br /><br />Truly {words[(i + 1) % 6]}."
                (folder / part / label / f"{i}_{7 + i % 3}.txt").write_text(text)
    (folder / "train" / "unsup").mkdir()
    (folder / "train" / "unsup" / "0_0.txt").write_text("unlabelled")
    return folder


def test_lstm_on_imdb_layout_end_to_end(workdir: Path, tmp_path: Path) -> None:
    """The promised ``python -m pipelines.run model=lstm data=imdb``, on the real layout."""
    fake_aclimdb(tmp_path / "imdb", per_class=10)
    result = run_cli(
        ["model=lstm", "data=imdb", f"data.root={tmp_path / 'imdb'}",
         "data.vectorize.sequence_length=16", "trainer.max_epochs=1", "tracking=none"],
        cwd=workdir,
    )  # fmt: skip
    assert result.returncode == 0, result.output
    assert "lstm on imdb" in result.stdout and "test/acc" in result.stdout


def test_imdb_folder_layout(tmp_path: Path) -> None:
    fake_aclimdb(tmp_path, per_class=10)
    dm = IMDBDataModule(root=str(tmp_path), val_fraction=0.2, vectorize={"max_tokens": 30})
    dm.prepare_data()
    dm.setup()
    assert dm.classes == ["neg", "pos"]
    assert {k: len(v[1]) for k, v in dm.splits.items()} == {"train": 16, "val": 4, "test": 20}
    assert dm.splits["test"][1].tolist() == [0] * 10 + [1] * 10
    assert "unlabelled" not in dm.vectorizer.vocabulary, "unsup/ is ignored"
    assert "br" not in dm.vectorizer.vocabulary
    assert dm.model_kwargs() == {"input_shape": (30,), "num_classes": 2}
    limited = IMDBDataModule(root=str(tmp_path / "aclImdb"), train_limit=10, test_limit=4)
    limited.setup()
    assert len(limited.splits["train"][1]) + len(limited.splits["val"][1]) == 10
    assert sorted(limited.splits["test"][1].tolist()) == [0, 0, 1, 1]


def make_archive(source: Path, archive: Path, evil: bool = True) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "aclImdb", arcname="aclImdb")
        if evil:
            for name in ("../escaped.txt", "/tmp/absolute.txt", "aclImdb/train/pos/../../x.txt"):
                info = tarfile.TarInfo(name)
                info.size = 4
                tar.addfile(info, io.BytesIO(b"evil"))
            link = tarfile.TarInfo("aclImdb/train/pos/link.txt")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(link)
    return archive


def test_imdb_archive_is_extracted_safely(tmp_path: Path) -> None:
    fake_aclimdb(tmp_path / "src")
    root = tmp_path / "deep" / "root"
    root.mkdir(parents=True)
    make_archive(tmp_path / "src", root / "aclImdb_v1.tar.gz")
    dm = IMDBDataModule(root=str(root), val_fraction=0.25)
    dm.setup()
    assert len(dm.splits["test"][1]) == 12 and len(dm.splits["val"][1]) == 3
    extracted = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert len(extracted) == 1 + 24 + 1, "the archive, the 24 labelled reviews, the record"
    assert "aclImdb/.extracted.json" in extracted, "what a complete extraction held"
    assert not (tmp_path / "deep" / "escaped.txt").exists()
    assert not (root / "aclImdb" / "train" / "pos" / "link.txt").exists()
    assert not (root / "aclImdb" / "train" / "unsup").exists()


def _cut_before_last_review(archive: bytes) -> bytes:
    """The tar in ``archive`` (gzipped) ending just before its last review's header: every
    folder is there, a review is missing, and no end-of-archive marker follows."""
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        reviews = [m for m in tar.getmembers() if m.name.endswith(".txt") and "unsup" not in m.name]
    return gzip.compress(gzip.decompress(archive)[: reviews[-1].offset])


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[: len(data) * 3 // 4], id="gz-cut-short"),
        pytest.param(_cut_before_last_review, id="tar-cut-at-a-member"),
        pytest.param(lambda data: data[:-8] + bytes(8), id="bad-gzip-checksum"),
    ],
)
def test_imdb_damaged_archive_leaves_nothing_that_passes_for_the_data(
    tmp_path: Path, damage
) -> None:
    fake_aclimdb(tmp_path / "src")
    root = tmp_path / "root"
    root.mkdir()
    good = make_archive(tmp_path / "src", tmp_path / "good.tar.gz", evil=False)
    archive = root / "aclImdb_v1.tar.gz"
    archive.write_bytes(damage(good.read_bytes()))
    for _ in range(2):  # and the next run is not fooled by what the first left
        with pytest.raises(DataNotFoundError) as err:
            IMDBDataModule(root=str(root)).prepare_data()
        message = str(err.value)
        assert f"{archive} is damaged or cut short" in message and "\n" not in message
        assert "Delete it and run again with `data.download=true`" in message
        assert sorted(p.name for p in root.iterdir()) == ["aclImdb_v1.tar.gz"], "no partial"


def test_imdb_archive_replaces_a_partial_folder(tmp_path: Path) -> None:
    fake_aclimdb(tmp_path / "src")
    root = tmp_path / "root"
    (root / "aclImdb" / "train" / "pos").mkdir(parents=True)  # a half-extracted folder
    make_archive(tmp_path / "src", root / "aclImdb_v1.tar.gz", evil=False)
    folder = IMDBDataModule(root=str(root)).locate()
    assert folder == root / "aclImdb" and len(list(folder.rglob("*.txt"))) == 24
    assert sorted(p.name for p in root.iterdir()) == ["aclImdb", "aclImdb_v1.tar.gz"]


def test_imdb_download_checks_md5(tmp_path: Path, monkeypatch) -> None:
    fake_aclimdb(tmp_path / "src")
    archive = make_archive(tmp_path / "src", tmp_path / "mirror.tar.gz", evil=False)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    remote = RemoteFile("aclImdb_v1.tar.gz", (archive.as_uri(),), md5=md5)
    monkeypatch.setattr(IMDBDataModule, "archive", remote)
    dm = IMDBDataModule(root=str(tmp_path / "cache"), download=True)
    dm.prepare_data()
    assert (tmp_path / "cache" / "aclImdb" / "test" / "neg" / "0_7.txt").is_file()


def test_imdb_missing_says_where_and_how(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as err:
        IMDBDataModule(root=str(tmp_path / "none")).prepare_data()
    message = str(err.value)
    assert str(tmp_path / "none" / "aclImdb") in message
    assert "data.download=true" in message and "aclImdb_v1.tar.gz" in message


# -- Reuters -------------------------------------------------------------------------------


def fake_reuters_npz(root: Path, count: int = 60) -> tuple[np.ndarray, np.ndarray, dict]:
    rng = np.random.default_rng(3)
    words = ["the", "oil", "price", "said", "wheat", "shares", "profit", "bank"]
    word_index = {word: rank for rank, word in enumerate(words, start=1)}
    x = np.empty(count, dtype=object)
    for i in range(count):
        x[i] = [int(w) for w in rng.integers(1, len(words) + 1, size=5 + i % 4)]
    y = np.arange(count) % 3
    root.mkdir(parents=True, exist_ok=True)
    np.savez(root / "reuters.npz", x=x, y=y)
    (root / "reuters_word_index.json").write_text(json.dumps(word_index))
    return x, y, word_index


def test_reuters_npz_decoded_and_split_like_keras(tmp_path: Path) -> None:
    x, y, word_index = fake_reuters_npz(tmp_path)
    dm = ReutersDataModule(root=str(tmp_path), val_fraction=0.2)
    dm.setup()
    assert dm.classes == list(TOPICS[:3])
    sizes = {k: len(v[1]) for k, v in dm.splits.items()}
    assert sizes["train"] + sizes["val"] == int(60 * 0.8) and sizes["test"] == 12
    # Keras 2's load_data: seed the global RNG, shuffle the sequences, keep the last 20%
    legacy = np.arange(60)
    np.random.seed(113)
    np.random.shuffle(legacy)
    train, test = keras_split(60)
    assert train.tolist() == legacy[:48].tolist() and test.tolist() == legacy[48:].tolist()
    assert dm.splits["test"][1].tolist() == y[test].tolist()
    words = {rank: word for word, rank in word_index.items()}
    first = " ".join(words[w] for w in x[test[0]])
    assert torch.equal(dm.splits["test"][0][:1], dm.vectorizer.transform([first]))


def test_reuters_npz_refuses_foreign_pickles(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    tmp_path.mkdir(exist_ok=True)
    np.savez(tmp_path / "reuters.npz", x=np.array([Evil()], dtype=object), y=np.zeros(1))
    (tmp_path / "reuters_word_index.json").write_text("{}")
    with pytest.raises(DataNotFoundError, match=r"builtins\.print"):
        ReutersDataModule(root=str(tmp_path)).setup()


def test_reuters_missing_says_where_and_how(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as err:
        ReutersDataModule(root=str(tmp_path)).prepare_data()
    message = str(err.value)
    assert "reuters.npz" in message and "r8-train-all-terms.txt" in message
    assert "data.download=true" in message and str(tmp_path) in message


@needs_shared
def test_real_r8_files(tmp_path: Path) -> None:
    dm = ReutersDataModule(
        root=str(SHARED / "reuters"),
        cache_dir=str(tmp_path),
        vectorize={"max_tokens": 5000},
    )
    dm.setup()
    assert dm.classes == sorted(["earn", "acq", "crude", "trade", "money-fx", "interest", "ship",
                                 "grain"])  # fmt: skip
    train = torch.cat([dm.splits["train"][1], dm.splits["val"][1]])
    assert len(train) == 5485 and len(dm.splits["test"][1]) == 2189
    assert int((train == dm.classes.index("earn")).sum()) == 2840
    assert int((dm.splits["test"][1] == dm.classes.index("grain")).sum()) == 10
    assert dm.splits["train"][0].shape[1:] == (5000,)


# -- end to end ----------------------------------------------------------------------------


def test_cli_run_logs_the_tokenizer(workdir: Path) -> None:
    path = write_tsv(workdir / "reviews.tsv", 120)
    # the book's ch. 3 IMDB dense net on multi-hot bags (a small vocabulary: a fast run)
    args = ["data=text_classification", f"data.path={path}", "data.vectorize.max_tokens=300"]
    result = run_cli([*args, "model=mlp", "model.hidden_units=[16,16]", *FAST], cwd=workdir)
    assert result.returncode == 0, result.output
    from mlflow import MlflowClient

    uri = store_uri(workdir)
    (run,) = mlflow_runs(uri)
    client = MlflowClient(tracking_uri=uri)
    assert [a.path for a in client.list_artifacts(run.info.run_id, "data")] == [
        "data/tokenizer.json"
    ]
    assert run.data.params["data.input_shape"] == "(300,)"
    assert float(run.data.metrics["test/acc"]) > 0.5
    local = client.download_artifacts(run.info.run_id, "data/tokenizer.json", str(workdir))
    vectorizer = TextVectorizer.load(local)
    assert "wonderful" in vectorizer.vocabulary
