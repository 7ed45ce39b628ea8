"""evaluate / predict: a finished run's model, rebuilt from that run's own record."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from conftest import mlflow_runs, run_cli, store_uri


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """An mlp on digits with non-default settings, so today's defaults would not fit it."""
    workdir = tmp_path_factory.mktemp("evaluate")
    args = [
        "model.hidden_units=[64]",
        "model.lr=0.003",
        "data.val_fraction=0.3",
        "trainer.max_epochs=12",
    ]
    assert run_cli(args, workdir).returncode == 0
    (run,) = mlflow_runs(store_uri(workdir))
    return workdir, run


def test_evaluate_rebuilds_the_run_and_reproduces_its_test_metrics(finished_run) -> None:
    workdir, run = finished_run
    result = run_cli(module="pipelines.evaluate", args=[run.info.run_id], cwd=workdir)
    assert result.returncode == 0, result.stderr
    for key in ("test/acc", "test/loss"):
        line = next(line for line in result.stdout.splitlines() if line.strip().startswith(key))
        assert float(line.split()[1]) == pytest.approx(run.data.metrics[key], abs=1e-4)
    val = run_cli(
        module="pipelines.evaluate", args=[run.info.run_id, "--split", "val"], cwd=workdir
    )
    assert val.returncode == 0 and "val/acc" in val.stdout, val.stderr


def test_predict_classifies_image_files(finished_run, tmp_path: Path) -> None:
    from PIL import Image
    from sklearn.datasets import load_digits

    workdir, run = finished_run
    digits = load_digits()
    files = []
    for index in range(6):
        path = tmp_path / f"digit{index}.png"
        Image.fromarray((digits.images[index] / 16 * 255).astype(np.uint8)).save(path)
        files.append(str(path))
    output = tmp_path / "predictions.csv"
    args = [run.info.run_id, *files, "--output", str(output)]
    result = run_cli(module="pipelines.predict", args=args, cwd=workdir)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(output.open()))
    assert [row["file"] for row in rows] == files
    correct = sum(row["prediction"] == str(digits.target[i]) for i, row in enumerate(rows))
    assert correct >= 5, rows
    assert all(0.0 <= float(row["probability"]) <= 1.0 for row in rows)
    assert result.stdout.startswith("file,prediction,probability")


def test_predict_on_a_text_file_says_what_the_image_run_reads(finished_run, tmp_path: Path) -> None:
    """It ended in PIL's UnidentifiedImageError traceback."""
    workdir, run = finished_run
    text = tmp_path / "t.txt"
    text.write_text("not an image\n")
    result = run_cli(module="pipelines.predict", args=[run.info.run_id, str(text)], cwd=workdir)
    assert result.returncode == 2, result.output
    assert "cannot identify image file" in result.stderr and "Image files" in result.stderr
    assert "Traceback" not in result.stderr


def test_predict_output_into_a_missing_folder_is_refused_first(
    finished_run, tmp_path: Path
) -> None:
    """It printed the predictions, then ended in FileNotFoundError."""
    from PIL import Image

    workdir, run = finished_run
    image = tmp_path / "a.png"
    Image.new("L", (8, 8)).save(image)
    out = tmp_path / "missing" / "out.csv"
    result = run_cli(
        module="pipelines.predict",
        args=[run.info.run_id, str(image), "--output", str(out)],
        cwd=workdir,
    )
    assert result.returncode == 2 and "does not exist" in result.stderr, result.output
    assert "Traceback" not in result.output and "prediction" not in result.stdout


def test_data_changes_may_follow_the_options(finished_run, tmp_path: Path) -> None:
    """`predict RUN a.png --output x.csv data.KEY=VALUE` stopped at argparse's
    "unrecognized arguments": the changes had to come before the options."""
    from PIL import Image

    workdir, run = finished_run
    image = tmp_path / "a.png"
    Image.new("L", (8, 8)).save(image)
    out = tmp_path / "out.csv"
    args = [run.info.run_id, str(image), "--output", str(out), "data.batch_size=16"]
    result = run_cli(module="pipelines.predict", args=args, cwd=workdir)
    assert result.returncode == 0, result.output
    assert out.read_text().startswith("file,prediction,probability")


def test_an_unknown_command_says_so_and_suggests_one(tmp_path: Path) -> None:
    result = run_cli(module="pipelines.commands.cli", args=["train"], cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown command 'train'. Did you mean 'run'?" in result.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["pipelines.evaluate", "feedbeef"], "No run 'feedbeef'"),
        (["pipelines.evaluate", "RUN", "model.lr=1"], "Only the data can be changed here"),
        (["pipelines.predict", "RUN", "missing.png"], "No such file: missing.png"),
    ],
)
def test_bad_requests_get_one_paragraph(finished_run, args: list[str], fragment: str) -> None:
    workdir, run = finished_run
    args = [run.info.run_id if arg == "RUN" else arg for arg in args]
    result = run_cli(module=args[0], args=args[1:], cwd=workdir)
    assert result.returncode == 2
    assert fragment in result.stderr and "Traceback" not in result.stderr
