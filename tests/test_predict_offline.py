"""predict needs only the run's record: its training data may have moved or gone.

Text runs encode files with the logged ``data/tokenizer.json`` (vocabulary and class names);
image runs take the input shape from the model and the class names from the plugin (fixed)
or from the logged ``data/classes.json`` (image_folder). Before, predict set the data up
again, which read the training files: once moved, predict failed with "does not exist".
"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import FAST, mlflow_runs, run_cli, store_uri

COLORS = {"blue": (20, 40, 220), "red": (220, 30, 20)}


def predictions(stdout: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(stdout)))


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """bow_dense trained on a CSV given by a relative path, which is then deleted."""
    workdir = tmp_path_factory.mktemp("predict_offline_text")
    rows = ["text,label"]
    for index in range(40):
        word, label = (("great lovely", "pos"), ("awful poor", "neg"))[index % 2]
        rows.append(f"the food was {word} {index},{label}")
    (workdir / "reviews.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    args = [
        "data=text_classification",
        "data.path=reviews.csv",
        "model=bow_dense",
        "pipeline.stages=[prepare,fit]",
        *FAST,
    ]
    result = run_cli(args, workdir)
    assert result.returncode == 0, result.output
    (run,) = mlflow_runs(store_uri(workdir))
    (workdir / "reviews.csv").unlink()
    return workdir, run.info.run_id


def test_predict_on_text_without_the_training_file(text_run, tmp_path: Path) -> None:
    """Also from another folder: the relative data.path is never looked up."""
    workdir, run_id = text_run
    review = tmp_path / "review.txt"
    review.write_text("the food was great\n", encoding="utf-8")
    args = [run_id, str(review), "--tracking-uri", store_uri(workdir)]
    for cwd in (workdir, tmp_path):
        result = run_cli(module="pipelines.predict", args=args, cwd=cwd)
        assert result.returncode == 0, result.output
        (row,) = predictions(result.stdout)
        assert row["file"] == str(review)
        assert row["prediction"] in ("neg", "pos"), row


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path]:
    """mlp on a tiny folder of two colour classes, which is then moved away."""
    from PIL import Image

    workdir = tmp_path_factory.mktemp("predict_offline_images")
    root = workdir / "shapes"
    rng = np.random.default_rng(0)
    for name, color in COLORS.items():
        (root / name).mkdir(parents=True)
        for index in range(8):
            noise = rng.integers(-20, 21, size=(8, 8, 3))
            pixels = np.clip(np.array(color) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{index}.png")
    args = [
        "data=image_folder",
        f"data.root={root}",
        "data.image_size=8",
        "data.batch_size=4",
        "data.val_fraction=0.25",
        "data.test_fraction=0",
        "model=mlp",
        "pipeline.stages=[prepare,fit]",
        *FAST,
    ]
    result = run_cli(args, workdir)
    assert result.returncode == 0, result.output
    (run,) = mlflow_runs(store_uri(workdir))
    moved = workdir / "moved"
    shutil.move(root, moved)
    return workdir, run.info.run_id, moved


def test_predict_on_images_without_the_training_folder(image_run, tmp_path: Path) -> None:
    """The class names come from data/classes.json; an older run without it needs the data,
    which data.root=... among predict's arguments points at."""
    from mlflow import MlflowClient

    workdir, run_id, moved = image_run
    image = moved / "red" / "0.png"
    result = run_cli(module="pipelines.predict", args=[run_id, str(image)], cwd=workdir)
    assert result.returncode == 0, result.output
    (row,) = predictions(result.stdout)
    assert row["prediction"] in COLORS, row

    # a run from before classes.json: its data is set up, from where data.root points
    client = MlflowClient(tracking_uri=store_uri(workdir))
    logged = [item.path for item in client.list_artifacts(run_id, "data")]
    assert logged == ["data/classes.json"]
    uri = client.get_run(run_id).info.artifact_uri.removeprefix("file://")
    (Path(uri) / "data" / "classes.json").unlink()
    result = run_cli(module="pipelines.predict", args=[run_id, str(image)], cwd=workdir)
    assert result.returncode == 2, result.output
    assert "data.root" in result.stderr and "Traceback" not in result.stderr
    args = [run_id, str(image), f"data.root={moved}"]
    result = run_cli(module="pipelines.predict", args=args, cwd=workdir)
    assert result.returncode == 0, result.output
    (row,) = predictions(result.stdout)
    assert row["file"] == str(image) and row["prediction"] in COLORS, row
