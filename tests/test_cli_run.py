"""End to end through the CLI: the default pipeline, overrides, and where runs are tracked."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from conftest import FAST, mlflow_runs, run_cli, store_uri


def test_default_run_trains_to_95_percent_and_tracks_everything(workdir: Path) -> None:
    result = run_cli([], cwd=workdir)
    assert result.returncode == 0, result.output
    assert "test/acc" in result.stdout and "python -m pipelines.ui" in result.stdout

    uri = store_uri(workdir)
    (run,) = mlflow_runs(uri)
    assert run.info.status == "FINISHED"
    assert run.info.run_name.startswith("mlp-digits-")
    params = run.data.params
    assert params["model.name"] == "mlp"
    assert params["data.name"] == "digits"
    assert params["pipeline.name"] == "classify"
    assert params["trainer.max_epochs"] == "20"
    assert params["seed"] == "42"
    assert run.data.tags["model"] == "mlp"
    assert run.data.tags["data"] == "digits"
    assert run.data.tags["pipeline"] == "classify"
    metrics = run.data.metrics
    assert metrics["test/acc"] >= 0.95
    assert "test/loss" in metrics
    for stage in ("prepare", "fit", "test", "report"):  # where the run's time went
        assert metrics[f"time/{stage}_seconds"] > 0, stage
        assert metrics[f"time/{stage}_cpu_seconds"] > 0, stage

    client = MlflowClient(tracking_uri=uri)
    for name in ("train/loss", "val/loss", "val/acc"):
        history = client.get_metric_history(run.info.run_id, name)
        assert len(history) == 20, f"{name}: one value per epoch expected"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "checkpoints"} <= artifacts
    checkpoints = [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")]
    assert len(checkpoints) == 1 and checkpoints[0].endswith(".ckpt")
    config_text = Path(
        client.download_artifacts(run.info.run_id, "config.yaml", str(workdir))
    ).read_text()
    assert "name: mlp" in config_text and "max_epochs: 20" in config_text


def test_convnet_override_is_recorded(workdir: Path) -> None:
    result = run_cli(["model=convnet", "trainer.max_epochs=3", "model.lr=0.002"], cwd=workdir)
    assert result.returncode == 0, result.output
    (run,) = mlflow_runs(store_uri(workdir))
    assert run.data.params["model.name"] == "convnet"
    assert run.data.params["model.lr"] == "0.002"
    assert run.data.params["trainer.max_epochs"] == "3"
    assert run.info.run_name.startswith("convnet-digits-")
    history = MlflowClient(store_uri(workdir)).get_metric_history(run.info.run_id, "val/loss")
    assert len(history) == 3
    assert run.data.metrics["test/acc"] > 0.5


def test_tracking_uri_from_environment_and_override(workdir: Path, tmp_path: Path) -> None:
    env_uri = f"sqlite:///{tmp_path / 'env-store.db'}"
    result = run_cli(FAST, cwd=workdir, env={"MLFLOW_TRACKING_URI": env_uri})
    assert result.returncode == 0, result.output
    assert len(mlflow_runs(env_uri)) == 1
    assert not (workdir / "mlruns").exists()

    override_uri = f"sqlite:///{tmp_path / 'override-store.db'}"
    result = run_cli(
        [*FAST, f"tracking.uri={override_uri}", "tracking.experiment=mine"],
        cwd=workdir,
        env={"MLFLOW_TRACKING_URI": env_uri},
    )
    assert result.returncode == 0, result.output
    assert len(mlflow_runs(override_uri, experiment="mine")) == 1
    assert len(mlflow_runs(env_uri)) == 1


def test_tracking_none_writes_no_store(workdir: Path) -> None:
    result = run_cli([*FAST, "tracking=none"], cwd=workdir)
    assert result.returncode == 0, result.output
    assert "test/acc" in result.stdout
    assert not (workdir / "mlruns").exists()


#: a run that fails once it is open: its loss diverges in the first epoch, which only
#: training finds (a model that does not fit the data is refused before the run opens)
FAILS_IN_RUN = ["model.optimizer=sgd", "model.lr=1e30"]


def test_crashed_run_is_failed_in_mlflow(workdir: Path) -> None:
    result = run_cli([*FAST, *FAILS_IN_RUN], cwd=workdir)
    assert result.returncode != 0
    (run,) = mlflow_runs(store_uri(workdir))
    assert run.info.status == "FAILED"
    assert run.data.params["model.lr"] == "1e+30"


def test_a_model_that_does_not_fit_the_data_leaves_no_run(workdir: Path) -> None:
    # a 9x9 kernel without padding does not fit the digits' 8x8 images: the dry forward
    # pass finds it as the model is built, before the run and its folder are made
    args = ["model=convnet", "model.padding=valid", "model.kernel_size=9"]
    result = run_cli([*FAST, *args], cwd=workdir)
    assert result.returncode == 2 and "Traceback" not in result.output, result.output
    assert "model.kernel_size" in result.stderr
    assert not (workdir / "mlruns").exists(), "no store: no run was opened"
    assert not (workdir / "outputs").exists(), "the refused run's folder is removed"


def test_terminated_run_is_marked_killed(workdir: Path) -> None:
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.run", "trainer.max_epochs=1000"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    db = workdir / "mlruns" / "mlflow.db"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until training has produced a checkpoint
        if list((workdir / "outputs").rglob("*.ckpt")):
            break
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0, output
    (run,) = mlflow_runs(f"sqlite:///{db}")
    assert run.info.status == "KILLED", output
    assert f"Interrupted: run {run.info.run_id} is marked KILLED" in output, output
    said = output.split("Interrupted:")[1]
    assert f"python -m pipelines.resume {run.info.run_id}" in said
    assert re.search(r"it kept \S+\.ckpt \(after epoch \d+ of training\)", said), said
    checkpoints = [
        a.path
        for a in MlflowClient(f"sqlite:///{db}").list_artifacts(run.info.run_id, "checkpoints")
    ]
    assert checkpoints, "the best checkpoint so far is kept in the run"


# A run whose process sends itself SIGTERM from inside ModelCheckpoint, after it has named
# its new best checkpoint and before that file is written: the riskiest moment to stop.
_SIGTERM_DURING_CHECKPOINT_SAVE = """
import os, signal, sys
from lightning.pytorch import Trainer

save_checkpoint = Trainer.save_checkpoint
best_saves = []

def save_and_be_killed_midway(self, filepath, *args, **kwargs):
    if os.path.basename(filepath).startswith("best"):
        best_saves.append(filepath)
        if len(best_saves) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
    return save_checkpoint(self, filepath, *args, **kwargs)

Trainer.save_checkpoint = save_and_be_killed_midway
sys.argv = ["pipelines.run", "trainer.max_epochs=1000"]
from pipelines.run import main
main()
"""


def test_sigterm_while_a_checkpoint_is_saved_still_ends_killed_with_it_saved(
    workdir: Path,
) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run(
        [sys.executable, "-c", _SIGTERM_DURING_CHECKPOINT_SAVE],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "Traceback" not in output, output
    (run,) = mlflow_runs(store_uri(workdir))
    assert run.info.status == "KILLED", output
    client = MlflowClient(store_uri(workdir))
    logged = [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")]
    # the checkpoint being written when the signal came was finished and is the one kept
    (name,) = logged
    assert name.startswith("checkpoints/best-")
    (saved,) = (workdir / "outputs").rglob(Path(name).name)
    import torch

    assert "state_dict" in torch.load(saved, weights_only=True)


def test_the_interrupted_message_names_the_checkpoint_kept_or_says_there_is_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Saying "continue it with resume" before the first checkpoint sent users to a resume that
    then found nothing; a transfer stage keeps its checkpoints in a sub-folder."""
    import torch

    from pipelines.lifecycle import _say_how_to_resume

    _say_how_to_resume("abc", tmp_path)
    said = capsys.readouterr().err
    assert "before its first checkpoint" in said and "python -m pipelines.rerun abc" in said
    folder = tmp_path / "checkpoints" / "fine_tuning"
    folder.mkdir(parents=True)
    torch.save({"epoch": 2, "state_dict": {}}, folder / "last.ckpt")
    _say_how_to_resume("abc", tmp_path)
    said = capsys.readouterr().err
    assert f"it kept {folder / 'last.ckpt'} (after epoch 3 of training)" in said
    assert "python -m pipelines.resume abc" in said
