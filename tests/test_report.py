"""The report stage: learning curves, confusion matrix, sample predictions (a figure for
images, a table for texts), the MLflow model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import FAST, mlflow_runs, run_cli, store_uri
from plugins.stages import text_samples
from plugins.stages.report import confusion, learning_curves


@pytest.fixture(scope="module")
def reported_run(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("report")
    args = ["trainer.max_epochs=3", "tracking.register_as=digits-mlp"]
    result = run_cli(args, workdir)
    assert result.returncode == 0, result.output
    (run,) = mlflow_runs(store_uri(workdir))
    return workdir, run


def test_figures_are_artifacts_of_the_run(reported_run) -> None:
    from mlflow import MlflowClient

    workdir, run = reported_run
    client = MlflowClient(store_uri(workdir))
    names = {Path(item.path).name for item in client.list_artifacts(run.info.run_id, "report")}
    assert names == {"learning_curves.png", "confusion_matrix.png", "sample_predictions.png"}
    assert run.info.status == "FINISHED", "logging the model does not end the run early"
    curves = learning_curves(client, run.info.run_id)
    assert list(curves) == ["loss", "acc"]
    assert all(len(values) == 3 for split in curves.values() for values in split.values())


def test_model_is_logged_with_signature_and_registered(reported_run) -> None:
    """``network``: the network alone (pytorch flavor, signature and input example);
    ``model``: the pyfunc model that takes raw inputs, which ``register_as`` registers."""
    import mlflow

    workdir, run = reported_run
    mlflow.set_tracking_uri(store_uri(workdir))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    info = mlflow.models.get_model_info(f"runs:/{run.info.run_id}/network")
    assert info.signature is not None and info.saved_input_example_info is not None
    model = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/network")
    assert model(torch.rand(5, 1, 8, 8)).shape == (5, 10)
    served = mlflow.models.get_model_info(f"runs:/{run.info.run_id}/model")
    assert set(served.flavors) == {"python_function"}
    assert "run_id" not in run.data.params, "the model's settings are no params of the run"
    assert "pipelines.log_model_error" not in run.data.tags
    assert "pipelines.log_network_error" not in run.data.tags
    (version,) = mlflow.MlflowClient().search_model_versions("name='digits-mlp'")
    assert version.run_id == run.info.run_id
    assert served.model_id in version.source, "the registered model is the pyfunc model"
    predicted = mlflow.pyfunc.load_model("models:/digits-mlp/1").predict([_digit_png(workdir)])
    assert list(predicted.columns) == ["prediction", "probability"]
    assert predicted["prediction"][0] in [str(digit) for digit in range(10)]
    # and our own loader takes the registry's name, to rebuild the Lightning module
    from pipelines.training.run_loader import load_run_model

    rebuilt = load_run_model("models:/digits-mlp/1", store_uri(workdir))
    assert type(rebuilt).__name__ == "MLP"


def _digit_png(folder: Path) -> str:
    from PIL import Image
    from sklearn.datasets import load_digits

    pixels = (load_digits().images[0] * 16).clip(0, 255).astype(np.uint8)
    path = folder / "digit.png"
    Image.fromarray(pixels).save(path)
    return str(path)


def test_confusion_counts_true_class_by_row() -> None:
    matrix = confusion(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]


def test_untracked_runs_skip_the_report(workdir: Path) -> None:
    result = run_cli(["tracking=none", "trainer.max_epochs=1"], workdir)
    assert result.returncode == 0, result.output
    assert not (workdir / "mlruns").exists()


def test_on_a_gpu_machine_the_saved_model_is_checked_where_it_was_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """MLflow loads a logged model back to check its input example, on the GPU when one is
    there; the model is exported from the CPU (to load anywhere), so on an H200 that check
    failed with a warning that printed the whole example. Seen on a real GPU; here a GPU is
    only reported, which is all MLflow's choice of device looks at."""
    from types import SimpleNamespace

    from mlflow import MlflowClient

    from plugins.stages.report import log_mlflow_model

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run = client.create_run(
        client.create_experiment("gpu-machine", artifact_location=(tmp_path / "artifacts").as_uri())
    )
    tags: dict[str, str] = {}
    tracker = SimpleNamespace(uri=uri, run_id=run.info.run_id, set_tags=tags.update)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    monkeypatch.delenv("MLFLOW_DEFAULT_PREDICTION_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    capfd.readouterr()
    log_mlflow_model(SimpleNamespace(tracker=tracker), model, torch.rand(2, 4, 4))
    said = capfd.readouterr()
    assert "Failed to validate" not in said.err + said.out and tags == {}
    assert "MLFLOW_DEFAULT_PREDICTION_DEVICE" not in os.environ, "the user's setting is kept"


def test_a_model_compiled_for_training_is_not_compiled_again_for_the_report() -> None:
    """``speed.compile=true`` compiles the model for training; the report's few forward
    passes (other batch sizes, eval mode) would each compile it again, which took an H200
    run from ~6 s of reporting to 82 s. The report runs the model eagerly."""
    from plugins.stages.report import _uncompiled, predict_classes

    graphs: list[object] = []

    def counting_backend(graph_module: Any, example_inputs: Any) -> Any:
        graphs.append(graph_module)
        return graph_module.forward

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    model.compile(backend=counting_backend)
    model(torch.rand(8, 4, 4))
    assert len(graphs) == 1, "the training shape compiled once"
    with _uncompiled():
        predicted = predict_classes(model.eval(), torch.rand(5, 4, 4), batch_size=3)
    assert len(graphs) == 1 and predicted.shape == (5,)


# -- text classifiers: report/sample_predictions.csv ---------------------------------------

CUES = {"pos": ["good", "great", "superb"], "neg": ["bad", "awful", "poor"]}
FILLERS = ["phone", "battery", "screen", "case", "charger", "the"]


def write_reviews(path: Path, count: int, seed: int, contradicting: int = 0) -> list[list[str]]:
    """A CSV of ``count`` one-line reviews (``text,label``) whose one cue word gives the
    label away, but for the first ``contradicting`` ones, whose cue says the other label:
    any model that learned the cues gets those wrong. Returns the rows written."""
    import csv
    import random

    rng = random.Random(seed)
    rows = []
    for index in range(count):
        label = ("pos", "neg")[index % 2]
        cue_label = {"pos": "neg", "neg": "pos"}[label] if index < contradicting else label
        words = [*rng.choices(FILLERS, k=4), rng.choice(CUES[cue_label]), f"item{seed}x{index}"]
        rng.shuffle(words)
        rows.append([" ".join(words).capitalize() + ".", label])
    with path.open("w", encoding="utf-8", newline="") as stream:
        csv.writer(stream).writerows([["text", "label"], *rows])
    return rows


@pytest.fixture(scope="module")
def text_report(tmp_path_factory: pytest.TempPathFactory):
    """bow_dense on a small review file with a separate test file (three mislabelled)."""
    from mlflow import MlflowClient

    workdir = tmp_path_factory.mktemp("text_report")
    write_reviews(workdir / "train.csv", 60, seed=0)
    test_rows = write_reviews(workdir / "test.csv", 10, seed=1, contradicting=3)
    args = [
        "model=bow_dense",
        "data=text_classification",
        f"data.path={workdir / 'train.csv'}",
        f"data.test_path={workdir / 'test.csv'}",
        "data.batch_size=8",
        "model.lr=0.01",
        *FAST,
        "pipeline.stages=[prepare,fit,test,{name:report,log_model:false}]",
    ]
    result = run_cli(args, workdir)
    assert result.returncode == 0, result.output
    (run,) = mlflow_runs(store_uri(workdir))
    client = MlflowClient(store_uri(workdir))
    return client, run, test_rows


def test_a_text_classifier_logs_its_sample_predictions_as_a_table(text_report) -> None:
    """Every test review (10, under the 16 samples) is a row: the original text with the
    file's label, the model's class and confidence; its mistakes are all there, first,
    most confident first. Before, a text run's report had no sample predictions at all."""
    import csv

    client, run, test_rows = text_report
    names = {Path(item.path).name for item in client.list_artifacts(run.info.run_id, "report")}
    assert names == {"learning_curves.png", "confusion_matrix.png", "sample_predictions.csv"}
    path = client.download_artifacts(run.info.run_id, "report/sample_predictions.csv")
    with open(path, encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream)
        assert tuple(reader.fieldnames or ()) == text_samples.COLUMNS
        rows = list(reader)
    assert sorted(int(row["test_index"]) for row in rows) == list(range(len(test_rows)))
    for row in rows:
        text, label = test_rows[int(row["test_index"])]
        assert (row["text"], row["true"]) == (text, label)
        assert row["predicted"] in ("neg", "pos") and 0.5 <= float(row["confidence"]) <= 1
        assert row["correct"] == ("yes" if row["predicted"] == row["true"] else "no")
    wrong = round((1 - run.data.metrics["test/acc"]) * len(test_rows))
    assert wrong >= 1, "three reviews contradict their label: some prediction is wrong"
    marks = [row["correct"] for row in rows]
    assert marks == ["no"] * wrong + ["yes"] * (len(rows) - wrong)
    confidences = [float(row["confidence"]) for row in rows[:wrong]]
    assert confidences == sorted(confidences, reverse=True)


def test_sample_choice_puts_the_most_confident_mistakes_first() -> None:
    correct = np.array([True, False, True, False, False, True, True, True, True, True])
    confidence = np.array([0.9, 0.6, 0.8, 0.99, 0.7, 0.5, 0.9, 0.9, 0.9, 0.9])
    chosen = text_samples.choose_examples(correct, confidence, 4)
    assert chosen[:2].tolist() == [3, 4], "half the rows at most: the two surest mistakes"
    assert len(chosen) == 4 and len(set(chosen.tolist())) == 4
    assert not set(chosen[2:].tolist()) & {3, 4} and chosen[2:].tolist() == sorted(chosen[2:])
    assert chosen.tolist() == text_samples.choose_examples(correct, confidence, 4).tolist()
    # a single row is the surest mistake; no mistakes: ordinary examples only; never more
    # rows than examples, nor any for samples=0
    assert text_samples.choose_examples(correct, confidence, 1).tolist() == [3]
    assert len(text_samples.choose_examples(np.ones(3, dtype=bool), np.ones(3), 2)) == 2
    assert sorted(text_samples.choose_examples(correct, confidence, 50).tolist()) == list(range(10))
    assert text_samples.choose_examples(correct, confidence, 0).tolist() == []


@pytest.mark.parametrize("mode", ["multi_hot", "int", "char"])
def test_texts_are_decoded_from_the_vocabulary_when_the_originals_are_gone(mode: str) -> None:
    """A setup that loaded the data cache has ids, not texts: they are decoded, and a bag
    (word order lost) says so."""
    from types import SimpleNamespace

    from plugins.data.vectorize import TextVectorizer, VectorizeSettings

    vectorizer = TextVectorizer(VectorizeSettings(mode=mode, sequence_length=16))
    vectorizer.fit(["the good film", "the bad film", "the film ends"])
    inputs = vectorizer.transform(["The awful film!", "The good film"])
    datamodule = SimpleNamespace(vectorizer=vectorizer, test_texts=None)
    describe = text_samples.text_describer(datamodule, object(), inputs)
    assert describe is not None
    expected = {
        "multi_hot": "(bag of 3 words, rarest first) the, film, [UNK]",
        "int": "the [UNK] film",
        "char": "the a\ufffdf\ufffdl film",
    }
    assert describe(0) == expected[mode]


def test_original_texts_are_shown_on_one_line_and_shortened() -> None:
    from types import SimpleNamespace

    long_text = "A fine<br /><br />film.\n" + "word " * 200
    datamodule = SimpleNamespace(test_texts=["Short\ttext", long_text])
    describe = text_samples.text_describer(datamodule, object(), torch.zeros(2, 5))
    assert describe is not None and describe(0) == "Short text"
    shown = describe(1)
    assert shown.startswith("A fine film. word word") and shown.endswith("word…")
    assert len(shown) <= text_samples.MAX_CHARS


def test_only_text_data_gets_a_text_table() -> None:
    """A table of features (2-D floats, no vocabulary, no texts) has no text to show; token
    ids without a vocabulary are shown as ids, and said to be."""
    from types import SimpleNamespace

    features = torch.rand(3, 4)
    assert text_samples.text_describer(SimpleNamespace(), object(), features) is None
    tokens_model = SimpleNamespace(input_kind="tokens")
    describe = text_samples.text_describer(
        SimpleNamespace(), tokens_model, torch.tensor([[5, 7, 0, 0]])
    )
    assert describe is not None
    assert describe(0) == "(token ids, no vocabulary to decode them) 5 7"


def test_classes_without_names_cover_what_the_model_can_predict() -> None:
    """A class absent from the test labels can still be predicted: it needs a name."""
    from types import SimpleNamespace

    from plugins.stages.report import class_names

    targets = torch.tensor([0, 2, 1, 2])
    assert class_names(SimpleNamespace(), targets, outputs=5) == ["0", "1", "2", "3", "4"]
    assert class_names(SimpleNamespace(classes=["a", "b"]), targets[:2] % 2, 2) == ["a", "b"]


def test_no_sample_figure_when_no_samples_are_asked_for(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from plugins.stages.report import Report

    class NoCurves:
        def get_run(self, run_id: str) -> Any:
            return SimpleNamespace(data=SimpleNamespace(metrics={}))

    ctx = SimpleNamespace(tracker=SimpleNamespace(client=NoCurves(), run_id="r"))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    test = (torch.rand(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2]))
    for samples, expected in (
        (0, {"confusion_matrix.png"}),
        (4, {"confusion_matrix.png", "sample_predictions.png"}),
    ):
        paths = Report(samples=samples)._figures(ctx, model, SimpleNamespace(), test, tmp_path)
        assert {path.name for path in paths} == expected
