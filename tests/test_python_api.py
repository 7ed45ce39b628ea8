"""``pipelines.train`` and ``pipelines.load`` from Python: the CLI's configs, checks,
messages and predictions, in a process that goes on after them (a notebook's kernel)."""

from __future__ import annotations

import csv
import io
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import pipelines
from conftest import FAST, mlflow_runs, run_cli, store_uri
from pipelines.errors import PipelineError


def digit_png(path: Path, pixels: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray((pixels * 255 / 16).astype(np.uint8)).save(path)
    return path


def cli_predictions(
    run_id: str, files: list[Path], cwd: Path, *options: str
) -> list[dict[str, str]]:
    result = run_cli([run_id, *map(str, files), *options], cwd, module="pipelines.predict")
    assert result.returncode == 0, result.output
    return list(csv.DictReader(io.StringIO(result.stdout)))


def as_cli_writes(frame: pd.DataFrame) -> list[dict[str, str]]:
    """The rows as the CLI's CSV has them (every value as text)."""
    return [{key: str(value) for key, value in row.items()} for row in frame.to_dict("records")]


def non_daemon_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if not thread.daemon}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A working directory of its own: runs go to its ./mlruns and ./outputs."""
    folder = tmp_path_factory.mktemp("python_api")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield folder


@pytest.fixture(scope="module")
def digits_runs(work: Path) -> tuple[list[Any], dict[str, Any]]:
    """Two runs on the default digits in this process, and what the process was like
    before and after them."""
    import mlflow

    threads, argv = non_daemon_threads(), list(sys.argv)
    handlers = [signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)]
    results = [pipelines.train(*FAST), pipelines.train(*FAST, "model=convnet")]
    after = {
        "new_threads": non_daemon_threads() - threads,
        "argv_unchanged": sys.argv == argv,
        "cwd": Path.cwd(),
        "active_run": mlflow.active_run(),
        "tracking_variable": os.environ.get("MLFLOW_TRACKING_URI"),
        "handlers_unchanged": handlers
        == [signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)],
    }
    return results, after


def test_two_runs_in_one_process(work: Path, digits_runs) -> None:
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    results, after = digits_runs
    recorded = {run.info.run_id: run for run in mlflow_runs(store_uri(work))}
    assert len(recorded) == 2 and {r.run_id for r in results} == set(recorded)
    for result, model in zip(results, ("MLP", "ConvNet"), strict=True):
        run = recorded[result.run_id]
        assert run.info.status == "FINISHED" and run.info.run_name == result.run_name
        assert {"test/acc", "test/loss", "best/val_loss"} <= set(result.metrics)
        assert result.metrics == {key: run.data.metrics[key] for key in result.metrics}
        assert type(result.model).__name__ == model
        assert len(result.datamodule.classes) == 10
        assert result.output_dir.parent.parent == work / "outputs" / "runs"
        assert (result.output_dir / "checkpoints").is_dir()
        assert result.run_id in repr(result) and "test/acc=" in repr(result)
    assert results[0].output_dir != results[1].output_dir
    assert (
        recorded[results[1].run_id].data.tags["overrides"] == "trainer.max_epochs=2 model=convnet"
    )
    assert after["active_run"] is None and after["tracking_variable"] is None
    assert not after["new_threads"], after["new_threads"]
    assert after["cwd"] == work and after["argv_unchanged"] and after["handlers_unchanged"]
    assert not GlobalHydra.instance().is_initialized() and not HydraConfig.initialized()


def test_a_misspelt_option_raises_the_clis_paragraph(work: Path) -> None:
    with pytest.raises(PipelineError) as err:
        pipelines.train("model=mpl")
    cli = run_cli(["model=mpl"], work)
    assert cli.returncode == 2
    assert cli.stderr.strip() == f"Error: {err.value}"
    assert "Did you mean 'mlp'?" in str(err.value)
    with pytest.raises(PipelineError, match=r"Unknown key 'trainer.max_epoch'.*'max_epochs'"):
        pipelines.train("trainer.max_epoch=2")
    with pytest.raises(PipelineError, match="flags"):
        pipelines.train("-m", "model=mlp,convnet")


def test_digit_images_predict_as_the_cli_does(work: Path, digits_runs) -> None:
    from sklearn.datasets import load_digits

    (result, _), _ = digits_runs
    digits = load_digits()
    files = [digit_png(work / f"digit{i}.png", digits.images[i]) for i in range(4)]
    predictor = pipelines.load(result.run_id)
    from_paths = predictor.predict(files)
    assert as_cli_writes(from_paths) == cli_predictions(result.run_id, files, work)
    from_strings = predictor.predict([str(path) for path in files])
    assert list(from_strings.columns) == ["prediction", "probability"]
    pd.testing.assert_frame_equal(from_strings, from_paths[["prediction", "probability"]])


def test_texts_predict_as_the_cli_does(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = ["text,label"]
    for index in range(40):
        word, label = (("great lovely", "pos"), ("awful poor", "neg"))[index % 2]
        rows.append(f"the food was {word} {index},{label}")
    (work / "reviews.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = pipelines.train(
        "data=text_classification",
        f"data.path={work / 'reviews.csv'}",
        "model=bow_dense",
        "pipeline.stages=[prepare,fit]",
        *FAST,
        progress=True,
    )
    printed = capsys.readouterr().out  # a line per epoch, as in a notebook
    assert "epoch 1  train/acc " in printed and " val/loss " in printed
    assert "epoch 2  " in printed and "epoch 3" not in printed
    texts = ["the food was great", "awful and poor food"]
    files = [work / "a.txt", work / "b.txt"]
    for text, path in zip(texts, files, strict=True):
        path.write_text(text + "\n", encoding="utf-8")
    cli = [
        {"prediction": row["prediction"], "probability": row["probability"]}
        for row in cli_predictions(result.run_id, files, work)
    ]
    predictor = pipelines.load(result.run_id)
    assert as_cli_writes(predictor.predict(texts)) == cli
    assert as_cli_writes(predictor.predict(pd.DataFrame({"text": texts, "id": [1, 2]}))) == cli


def test_table_rows_predict_and_a_missing_column_is_named(work: Path) -> None:
    """In a store given as tracking_uri; its feature columns are the data module's."""
    from sklearn.datasets import load_diabetes

    uri = store_uri(work / "elsewhere")
    result = pipelines.train(
        "data=housing", "model=regressor", "pipeline.stages=[prepare,fit]", *FAST, tracking_uri=uri
    )
    assert result.tracking_uri == uri and len(mlflow_runs(uri)) == 1
    columns = list(result.datamodule.feature_names)
    rows = pd.DataFrame(load_diabetes().data[:3], columns=columns)
    rows.to_csv(work / "rows.csv", index=False)
    predictor = pipelines.load(result.run_id, tracking_uri=uri)
    predicted = predictor.predict(rows)
    assert list(predicted.columns) == ["prediction"] and len(predicted) == 3
    cli = cli_predictions(result.run_id, [work / "rows.csv"], work, "--tracking-uri", uri)
    assert [float(row["prediction"]) for row in cli] == list(predicted["prediction"])
    with pytest.raises(PipelineError, match=f"'{columns[-1]}'"):
        predictor.predict(rows[columns[:-1]])


def test_the_callers_own_hydra_state_is_put_back(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir

    from pipelines.python_api import compose_config

    (tmp_path / "mine.yaml").write_text("answer: 42\n")
    with initialize_config_dir(str(tmp_path), version_base="1.3"):
        assert compose_config(["model=convnet"]).model.name == "convnet"
        assert compose("mine").answer == 42


def test_installed_plugins_configs_are_composed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin's config folder (the ``pipelines.configs`` entry point) is on the compose
    API's search path too, through src/hydra_plugins."""
    from pipelines import config
    from pipelines.python_api import compose_config

    package = tmp_path / "api_extra_configs"
    (package / "model").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    mlp = (config.config_dir() / "model" / "mlp.yaml").read_text()
    (package / "model" / "wide_mlp.yaml").write_text(mlp)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(config, "plugin_config_packages", lambda: ["api_extra_configs"])
    assert compose_config(["model=wide_mlp"]).model.name == "mlp"
