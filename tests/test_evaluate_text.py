"""evaluate / predict on a text run: the run's vocabulary and classes, whatever the data.

Also the errors of the commands that read a run (predict on the wrong files or on a
generative model, a store that is not there) and which recorded numbers evaluate shows.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from conftest import mlflow_runs, run_cli, store_uri

POSITIVE = ["good", "great", "superb", "lovely"]
NEGATIVE = ["bad", "awful", "poor", "dreadful"]
#: the training file's filler words, and other data's: many more, and more frequent, so a
#: vocabulary fitted on the other data puts the sentiment words at other ids
PHONE = ["phone", "battery", "screen", "case", "charger"]
FOOD = [f"dish{index}" for index in range(30)]


def write_labelled(
    path: Path, fillers: list[str], labels: list[str], count: int, seed: int, words: int = 4
) -> Path:
    """``count`` lines of ``text<TAB>label`` (the UCI sentiment format): filler words and
    one word that gives the label away (label "1": a positive word, else a negative one)."""
    rng = random.Random(seed)
    lines = []
    for index in range(count):
        label = labels[index % len(labels)]
        cue = rng.choice(POSITIVE if label == "1" else NEGATIVE)
        text = [*rng.choices(fillers, k=words), cue]
        rng.shuffle(text)
        lines.append(f"{' '.join(text)}\t{label}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """bow_dense on a small two-class file (separable by one word per line)."""
    workdir = tmp_path_factory.mktemp("evaluate_text")
    train = write_labelled(workdir / "phones.txt", PHONE, ["0", "1"], 160, seed=0)
    args = [
        "model=bow_dense",
        "data=text_classification",
        f"data.path={train}",
        "data.batch_size=8",
        "model.lr=0.01",
        "trainer.max_epochs=2",
        "pipeline.stages=[prepare,fit,test]",
    ]
    result = run_cli(args, workdir)
    assert result.returncode == 0, result.output
    (run,) = mlflow_runs(store_uri(workdir))
    assert run.data.metrics["test/acc"] >= 0.9, run.data.metrics
    return workdir, run


def evaluated(stdout: str, key: str) -> tuple[float, float | None]:
    """The number evaluate printed for ``key``, and the recorded one beside it."""
    line = next(line for line in stdout.splitlines() if line.strip().startswith(key))
    recorded = line.split("(recorded", 1)[1].strip(" )") if "(recorded" in line else None
    return float(line.split()[1]), None if recorded is None else float(recorded)


def evaluate_on(text_run: tuple[Path, Any], data_file: Path) -> Any:
    """``python -m pipelines.evaluate RUN data.path=DATA_FILE`` in the run's folder."""
    workdir, run = text_run
    args = [run.info.run_id, f"data.path={data_file}"]
    return run_cli(module="pipelines.evaluate", args=args, cwd=workdir)


def test_the_run_records_its_vocabulary_and_classes(text_run) -> None:
    """data/tokenizer.json holds the classes too: evaluate maps labels by name with them."""
    from mlflow import MlflowClient

    from plugins.data.vectorize import TextVectorizer

    workdir, run = text_run
    client = MlflowClient(tracking_uri=store_uri(workdir))
    logged = [item.path for item in client.list_artifacts(run.info.run_id, "data")]
    assert logged == ["data/tokenizer.json"]
    path = client.download_artifacts(run.info.run_id, "data/tokenizer.json", str(workdir))
    assert json.loads(Path(path).read_text())["pipelines"]["classes"] == ["0", "1"]
    assert TextVectorizer.load(path).classes == ["0", "1"]


def test_evaluate_on_other_data_uses_the_runs_vocabulary(text_run, tmp_path: Path) -> None:
    """Fitting a vocabulary on the other file gave chance accuracy (0.5)."""
    other = write_labelled(tmp_path / "food.txt", FOOD, ["0", "1"], 200, seed=1, words=12)
    result = evaluate_on(text_run, other)
    assert result.returncode == 0, result.output
    accuracy, _ = evaluated(result.stdout, "test/acc")
    assert accuracy >= 0.9, result.stdout


def test_evaluate_on_data_lacking_a_class_keeps_the_label_indices(text_run, tmp_path: Path) -> None:
    """Only positives: numbered by the file alone, "1" became class 0 (accuracy 0)."""
    positives = write_labelled(tmp_path / "positive.txt", PHONE, ["1"], 100, seed=2)
    result = evaluate_on(text_run, positives)
    assert result.returncode == 0, result.output
    accuracy, _ = evaluated(result.stdout, "test/acc")
    assert accuracy >= 0.9, result.stdout


def test_evaluate_on_a_label_the_run_never_saw_names_it(text_run, tmp_path: Path) -> None:
    mixed = write_labelled(tmp_path / "mixed.txt", PHONE, ["0", "1", "neutral"], 90, seed=3)
    result = evaluate_on(text_run, mixed)
    assert result.returncode == 2, result.output
    assert "'neutral'" in result.stderr and "never trained on" in result.stderr
    assert "Traceback" not in result.stderr


def test_evaluate_val_compares_with_the_checkpoints_recorded_metrics(text_run) -> None:
    """The run's last logged val/acc is not the kept checkpoint's: best/val_acc is."""
    from mlflow import MlflowClient

    workdir, run = text_run
    client = MlflowClient(tracking_uri=store_uri(workdir))
    run_id = run.info.run_id
    # a later epoch, worse than the checkpoint kept (the last value is what get_run shows)
    client.log_metric(run_id, "val/acc", 0.125, step=10_000)
    client.log_metric(run_id, "val/loss", 9.5, step=10_000)
    result = run_cli(module="pipelines.evaluate", args=[run_id, "--split", "val"], cwd=workdir)
    assert result.returncode == 0, result.output
    for key, best in (("val/acc", "best/val_acc"), ("val/loss", "best/val_loss")):
        value, recorded = evaluated(result.stdout, key)
        assert recorded == pytest.approx(run.data.metrics[best], abs=1e-4), result.stdout
        assert value == pytest.approx(recorded, abs=1e-4), result.stdout


def test_recorded_metric_per_split() -> None:
    from pipelines.commands.evaluate import recorded_metric

    metrics = {"val/acc": 0.5, "best/val_acc": 0.75, "test/acc": 0.7, "train/acc": 0.9}
    assert recorded_metric(metrics, "val/acc") == 0.75
    assert recorded_metric(metrics, "test/acc") == 0.7
    assert recorded_metric(metrics, "train/acc") is None  # an epoch's mean while training
    assert recorded_metric({"val/acc": 0.5}, "val/acc") is None


def test_predict_uses_the_runs_vocabulary_after_its_file_changed(text_run, tmp_path: Path) -> None:
    """Files to predict on are vectorized as the model was trained, not with a vocabulary
    fitted again on what the run's data file holds today."""
    import os

    workdir, run = text_run
    train = Path(run.data.params["data.path"])
    original, stat = train.read_bytes(), train.stat()
    more = write_labelled(tmp_path / "more.txt", FOOD, ["0", "1"], 200, seed=4, words=12)
    texts = {
        "1": ["a superb charger", "lovely", "great great phone", "good case", "superb screen"],
        "0": ["dreadful screen", "bad", "awful awful case", "poor phone", "dreadful battery"],
    }
    files, expected = [], []
    for label, lines in texts.items():
        for index, line in enumerate(lines):
            files.append(tmp_path / f"{label}-{index}.txt")
            files[-1].write_text(line)
            expected.append(label)
    try:
        train.write_bytes(original + more.read_bytes())  # the file grew since the run
        args = [run.info.run_id, *map(str, files)]
        result = run_cli(module="pipelines.predict", args=args, cwd=workdir)
    finally:
        train.write_bytes(original)
        os.utime(train, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert result.returncode == 0, result.output
    rows = [line.split(",") for line in result.stdout.strip().splitlines()[1:]]
    assert [row[1] for row in rows] == expected, result.stdout


def test_predict_refuses_an_image_given_to_a_text_run(text_run, tmp_path: Path) -> None:
    """An image's bytes were read as text (with replacement characters) and still got a
    confident label; now it is refused in one paragraph that says what the run reads."""
    from PIL import Image

    workdir, run = text_run
    image = tmp_path / "photo.png"
    Image.new("RGB", (8, 8), (200, 30, 30)).save(image)
    text = tmp_path / "review.txt"
    text.write_text("a superb charger")
    result = run_cli(module="pipelines.predict", args=[run.info.run_id, str(text), str(image)],
                     cwd=workdir)  # fmt: skip
    assert result.returncode == 2, result.output
    assert "photo.png is not a text file" in result.stderr and "Traceback" not in result.output
    assert "text files" in result.stderr, "it says what the run's data plugin reads"


# -- the text cache, with a run's vectorizer ----------------------------------------------------


def test_a_runs_vectorizer_never_reads_or_overwrites_a_cache_entry_fitted_on_other_data(
    tmp_path: Path,
) -> None:
    from plugins.data.text import TextClassificationDataModule

    cache = tmp_path / "cache"
    train = write_labelled(tmp_path / "phones.txt", PHONE, ["0", "1"], 60, seed=0)
    # both classes: a file of one class is refused when a datamodule fits on it alone (a
    # classifier needs 2); a rebuild on a file lacking a class has a test of its own
    other = write_labelled(tmp_path / "food.txt", FOOD, ["0", "1"], 40, seed=1, words=12)

    def data(path: Path, artifacts: dict[str, Path] | None = None):
        datamodule = TextClassificationDataModule(path=str(path), cache_dir=str(cache))
        if artifacts is not None:
            datamodule.use_artifacts(artifacts)
        datamodule.setup("fit")
        return datamodule

    run = data(train)
    artifacts = run.artifacts()
    fitted_on_other = data(other)  # writes an entry with the other file's own vocabulary
    assert fitted_on_other.vectorizer.vocabulary != run.vectorizer.vocabulary
    assert fitted_on_other.classes == ["0", "1"]
    for attempt in range(2):  # the second one reads its own cache entry
        rebuilt = data(other, artifacts)
        assert rebuilt.vectorizer.vocabulary == run.vectorizer.vocabulary, attempt
        assert rebuilt.classes == ["0", "1"]
        assert set(rebuilt.splits["train"][1].tolist()) == {0, 1}
        words = rebuilt.splits["train"][0]
        assert words[:, 2 : len(run.vectorizer.vocabulary)].sum(dim=1).min() >= 1  # the cue
    assert data(other).vectorizer.vocabulary == fitted_on_other.vectorizer.vocabulary
    # a faithful rebuild reads the entry the run wrote: no second entry for the same data
    entries = sorted(path.name for path in cache.iterdir())
    data(train, artifacts)
    assert sorted(path.name for path in cache.iterdir()) == entries


def test_an_older_run_without_recorded_classes_keeps_its_vocabulary(tmp_path: Path) -> None:
    """Runs logged tokenizer.json without the classes: those come from the data, as before."""
    from plugins.data.text import TextClassificationDataModule
    from plugins.data.vectorize import TextVectorizer

    train = write_labelled(tmp_path / "phones.txt", PHONE, ["0", "1"], 60, seed=0)
    other = write_labelled(tmp_path / "food.txt", FOOD, ["0", "1"], 40, seed=1, words=12)
    run = TextClassificationDataModule(path=str(train))
    run.setup()
    old = TextVectorizer.from_json(run.vectorizer.to_json())
    old.classes = None
    rebuilt = TextClassificationDataModule(path=str(other))
    rebuilt.use_artifacts({"tokenizer.json": old.save(tmp_path / "old" / "tokenizer.json")})
    rebuilt.setup()
    assert rebuilt.run_classes is None and rebuilt.classes == ["0", "1"]
    assert rebuilt.vectorizer.vocabulary == run.vectorizer.vocabulary


def test_a_data_plugin_that_numbers_its_own_classes_is_mapped_to_the_runs() -> None:
    """Any TextDataModule: a class missing from the data keeps the run's label indices."""
    import numpy as np

    from pipelines.errors import PipelineError
    from plugins.data.text import TextDataModule

    class Reviews(TextDataModule):
        def __init__(self, labels: list[str]) -> None:
            super().__init__(val_fraction=0.0, test_fraction=0.0)
            self.labels = labels

        def input_files(self) -> list[Path]:
            return []

        def load_texts(self):
            self.classes = sorted(set(self.labels))
            index = [self.classes.index(label) for label in self.labels]
            return {"train": ([f"text {label}" for label in self.labels], np.array(index))}

    datamodule = Reviews(["b", "c", "c"])
    datamodule.run_classes = ["a", "b", "c"]
    datamodule.setup()
    assert datamodule.classes == ["a", "b", "c"]
    assert datamodule.splits["train"][1].tolist() == [1, 2, 2]
    unknown = Reviews(["b", "z"])
    unknown.run_classes = ["a", "b", "c"]
    with pytest.raises(PipelineError, match="never trained on: 'z'"):
        unknown.setup()


# -- predict refuses what it cannot do; no run, no store ------------------------------------------


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A VAE, one epoch and narrow: only its checkpoint matters here."""
    workdir = tmp_path_factory.mktemp("evaluate_vae")
    args = [
        "pipeline=generative",
        "pipeline.stages=[prepare,fit]",
        "model=vae",
        "model.filters=[4,8]",
        "model.samples_every_n_epochs=0",
        "trainer.max_epochs=1",
    ]
    result = run_cli(args, workdir)
    assert result.returncode == 0, result.output
    (run,) = mlflow_runs(store_uri(workdir))
    return workdir, run


def test_predict_with_a_generative_run_points_at_the_generate_pipeline(
    vae_run, tmp_path: Path
) -> None:
    """It ended in IndexError: predict took the VAE's reconstructions for class scores."""
    from PIL import Image

    workdir, run = vae_run
    image = tmp_path / "a.png"
    Image.new("L", (8, 8)).save(image)
    result = run_cli(module="pipelines.predict", args=[run.info.run_id, str(image)], cwd=workdir)
    assert result.returncode == 2, result.output
    assert "predict is for classifiers and regressors" in result.stderr
    assert f"pipeline=generate pipeline.stages.0.source=runs:/{run.info.run_id}" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_store_is_reported_not_created(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """evaluate, rerun and resume read runs with fetch_run: it made an empty ./mlruns."""
    from pipelines.errors import PipelineError
    from pipelines.training.run_loader import fetch_run, load_run_model

    monkeypatch.chdir(workdir)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(PipelineError) as caught:
        fetch_run("feedbeef")
    message = str(caught.value)
    assert "No run 'feedbeef'" in message and "--tracking-uri" in message
    assert "tracking.uri" not in message.replace("--tracking-uri", "")
    assert not (workdir / "mlruns").exists()
    # a runs:/ reference inside a run's config: there the store is tracking.uri
    with pytest.raises(PipelineError, match=r"point tracking\.uri"):
        load_run_model("runs:/feedbeef")
    assert not (workdir / "mlruns").exists()


def test_no_run_in_a_store_names_the_commands_option(text_run) -> None:
    from pipelines.errors import PipelineError
    from pipelines.training.run_loader import fetch_run

    workdir, _ = text_run
    with pytest.raises(PipelineError) as caught:
        fetch_run("feedbeef", store_uri(workdir))
    message = str(caught.value)
    assert "No run 'feedbeef'" in message and "--tracking-uri" in message
    assert "tracking.uri" not in message.replace("--tracking-uri", "")


def test_resume_help_describes_the_command() -> None:
    from pipelines.commands.resume import _parser

    description = _parser("resume").description
    assert description.startswith("Continue a stopped run in place, from the last checkpoint")
    assert "its metrics" not in description
