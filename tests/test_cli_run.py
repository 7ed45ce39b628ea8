"""End to end through the CLI: the default pipeline, overrides, and where runs are tracked."""

from __future__ import annotations

from pathlib import Path

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


def test_crashed_run_is_failed_in_mlflow(workdir: Path) -> None:
    result = run_cli([*FAST, "model.lr=-1"], cwd=workdir)
    assert result.returncode != 0
    (run,) = mlflow_runs(store_uri(workdir))
    assert run.info.status == "FAILED"
    assert run.data.params["model.lr"] == "-1"


def test_terminated_run_is_marked_killed(workdir: Path) -> None:
    import os
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
    assert run.info.status == "KILLED"
    checkpoints = [
        a.path
        for a in MlflowClient(f"sqlite:///{db}").list_artifacts(run.info.run_id, "checkpoints")
    ]
    assert checkpoints, "the best checkpoint so far is kept in the run"
