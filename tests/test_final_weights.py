"""A run trained without validation data has its final weights as its model, and
``evaluate`` on a split the run's data does not have says which ones it has.

Both were found by a user: a ``data=housing`` run (``val_fraction`` 0, the book's final
model) logged no checkpoint, so ``evaluate`` and ``predict`` said "logged no checkpoint
(did its fit stage finish an epoch?)" of a run that had finished; and ``evaluate`` of a
``text_corpus`` run (``test_fraction`` 0) ended in ``ValueError: not enough values to
unpack``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import FAST, mlflow_runs, run_cli, store_uri
from pipelines.training.run_loader import BEST_CHECKPOINT_TAG, RecordedRun, model_of


@pytest.fixture(scope="module")
def no_validation_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """The regressor on the bundled diabetes data, with housing's default of no validation."""
    workdir = tmp_path_factory.mktemp("final_weights")
    args = ["data=housing", "model=regressor", "pipeline.stages=[prepare,fit,test]", *FAST]
    result = run_cli(args, workdir)
    assert result.returncode == 0, result.output
    (run,) = mlflow_runs(store_uri(workdir))
    return workdir, run


def printed(stdout: str, key: str) -> float:
    """The number ``evaluate`` printed for ``key``."""
    line = next(line for line in stdout.splitlines() if line.strip().startswith(key))
    return float(line.split()[1])


def test_a_run_without_validation_logs_its_final_weights_as_its_model(
    no_validation_run,
) -> None:
    """The final weights (last.ckpt, epoch 2 of 2) are logged and tagged as the run's
    model, and ``evaluate`` on them gives the numbers the test stage recorded."""
    import torch
    from mlflow import MlflowClient

    workdir, run = no_validation_run
    run_id = run.info.run_id
    assert run.data.tags.get(BEST_CHECKPOINT_TAG) == "checkpoints/last.ckpt", run.data.tags
    client = MlflowClient(store_uri(workdir))
    path = client.download_artifacts(run_id, "checkpoints/last.ckpt", str(workdir))
    assert torch.load(path, map_location="cpu", weights_only=True)["epoch"] == 1
    result = run_cli(module="pipelines.evaluate", args=[run_id], cwd=workdir)
    assert result.returncode == 0, result.output
    for key in ("test/mae", "test/loss"):
        assert printed(result.stdout, key) == pytest.approx(run.data.metrics[key], rel=1e-5)


def test_the_books_mnist_presets_train_on_every_image_as_the_book(workdir: Path) -> None:
    """The book's ch. 2 and ch. 5 code fits on all training images and tests once."""
    from hydra import compose, initialize_config_dir

    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base=None):
        for preset in ("book_mnist_dense", "book_mnist_convnet"):
            assert compose("config", [f"experiment={preset}"]).data.val_fraction == 0
    args = ["experiment=book_mnist_dense", "data=digits", "data.test_fraction=0.2", *FAST]
    result = run_cli(args, workdir)
    assert result.returncode == 0, result.output
    (run,) = mlflow_runs(store_uri(workdir))
    assert run.data.tags.get(BEST_CHECKPOINT_TAG) == "checkpoints/last.ckpt"
    assert not [key for key in run.data.metrics if key.startswith("val/")], run.data.metrics
    assert run.data.metrics["test/acc"] > 0.5


def test_evaluate_on_a_split_the_run_does_not_have_names_those_it_has(
    no_validation_run,
) -> None:
    workdir, run = no_validation_run
    args = [run.info.run_id, "--split", "val"]
    result = run_cli(module="pipelines.evaluate", args=args, cwd=workdir)
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    assert "has no val split" in message and "data.val_fraction=0.0" in message
    assert "`--split test` or `--split train`" in message
    assert f"python -m pipelines.rerun {run.info.run_id} data.val_fraction=0.1" in message


def test_evaluate_of_a_text_run_without_a_test_split(workdir: Path) -> None:
    """text_corpus keeps no test text by default; evaluate's default split is test."""
    path = workdir / "tiny.txt"
    path.write_text("the cat sat on the mat. the dog sat on the log. " * 40, encoding="utf-8")
    args = [
        "pipeline=generative",
        "pipeline.stages=[prepare,fit]",
        "model=char_lstm",
        "data=text_corpus",
        f"data.path={path}",
        "data.sequence_length=20",
        "data.step=5",
        "data.windows_per_epoch=null",
        "model.units=16",
        "model.epoch_length=20",
        "model.length=30",
        "trainer.max_epochs=1",
    ]
    assert run_cli(args, workdir).returncode == 0
    (run,) = mlflow_runs(store_uri(workdir))
    result = run_cli(module="pipelines.evaluate", args=[run.info.run_id], cwd=workdir)
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.stderr and "ValueError" not in result.stderr
    message = " ".join(result.stderr.split())
    assert "has no test split" in message and "data.test_fraction=0.0" in message
    assert "`--split val` or `--split train`" in message
    assert "data.test_fraction=0.1" in message


class _NoArtifacts:
    """A tracking client whose runs logged no artifacts."""

    tracking_uri = "sqlite:///nowhere.db"

    def list_artifacts(self, run_id: str, path: str | None = None) -> list:
        return []


def _record(status: str, metrics: dict[str, float], **tags: str) -> RecordedRun:
    return RecordedRun(
        run_id="abc123",
        run_name="some-run",
        status=status,
        config={"model": {"name": "mlp"}, "pipeline": {"name": tags.pop("pipeline", "classify")}},
        tags=tags,
        metrics=metrics,
        client=_NoArtifacts(),
    )


@pytest.mark.parametrize(
    ("record", "fragments"),
    [
        (
            _record("FINISHED", {"epoch": 1.0, "test/mae": 3.0}),
            ["finished training", "without validation data", "pipelines.rerun abc123"],
        ),
        (
            _record("FAILED", {}),
            ["ended FAILED before its fit stage logged", "pipelines.resume abc123"],
        ),
        (
            _record("RUNNING", {"epoch": 0.0}),
            ["is still running", "once the run has finished"],
        ),
        (
            _record("FINISHED", {}, pipeline="generate", **{"pipelines.source_run": "runs:/x"}),
            ["pipeline 'generate' trained no model", "came from runs:/x"],
        ),
    ],
    ids=["finished-without-validation", "failed", "running", "trains-nothing"],
)
def test_a_run_without_a_checkpoint_is_told_apart_by_how_it_ended(
    record: RecordedRun, fragments: list[str]
) -> None:
    """It always asked "did its fit stage finish an epoch?", also of finished runs."""
    from pipelines.errors import PipelineError

    with pytest.raises(PipelineError) as caught:
        model_of(record)
    message = str(caught.value)
    assert "did its fit stage finish an epoch" not in message
    for fragment in fragments:
        assert fragment in message, message
