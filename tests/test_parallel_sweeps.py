"""Sweeps past one process: parallel jobs on one store, Optuna search, diverged trials."""

from __future__ import annotations

import importlib.util
import math
import multiprocessing
from pathlib import Path

import pytest

from conftest import mlflow_runs, run_cli, store_uri

needs_optuna = pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None
    or importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is None,
    reason="the sweep extra is not installed: pip install -e .[sweep]",
)
#: one quick epoch of the default mlp on digits per job
QUICK = ["trainer.max_epochs=1"]


def _log_a_run(args: tuple[str, int]) -> None:
    """One job's worth of tracking: a run, 150 params, 30 flushes of 20 metrics (written in
    the background, as training writes them), a tag."""
    uri, index = args
    from pipelines.tracking.store import TrackingSettings
    from pipelines.tracking.tracker import MlflowTracker

    tracker = MlflowTracker(TrackingSettings(uri=uri, experiment="parallel"), f"job{index}")
    tracker.log_params({f"param{k}": k for k in range(150)})
    for step in range(30):
        tracker.log_metrics({f"metric{k}": step * k for k in range(20)}, step=step)
        tracker.flush(wait=False)
    tracker.set_tags({"job": str(index)})
    tracker.finish("FINISHED")


def test_parallel_processes_on_a_fresh_store_lose_nothing(tmp_path: Path) -> None:
    """Without the schema lock, 8 processes on a new store failed with 'duplicate column'."""
    from mlflow import MlflowClient

    uri = store_uri(tmp_path)
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(_log_a_run, [(uri, index) for index in range(8)])
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("parallel").experiment_id])
    assert sorted(r.data.tags["job"] for r in runs) == [str(i) for i in range(8)]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert len(run.data.params) == 150 and len(run.data.metrics) == 20
        assert len(client.get_metric_history(run.info.run_id, "metric7")) == 30


@pytest.mark.slow  # 38 s; the default suite runs an Optuna search in the test below
@needs_optuna
def test_optuna_search_with_parallel_jobs_logs_the_best_trial_to_the_parent(
    workdir: Path,
) -> None:
    args = [
        "-m",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_jobs=2",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        *QUICK,
    ]
    result = run_cli(args, workdir, timeout=600)
    assert result.returncode == 0, result.output
    runs = mlflow_runs(store_uri(workdir))
    (parent,) = [r for r in runs if r.data.tags.get("sweep") == "true"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 5 and len(children) == 4
    best = min(children, key=lambda r: r.data.metrics["best/val_loss"])
    assert parent.data.metrics["best_job/best/val_loss"] == best.data.metrics["best/val_loss"]
    assert parent.data.tags["best_job.run_id"] == best.info.run_id
    for key in ("model.lr", "model.width", "model.dropout"):
        assert parent.data.params[f"best.{key}"] == best.data.params[key]
    # every trial's params and per-epoch metrics made it into the shared store
    assert {len(r.data.params) for r in children} == {len(best.data.params)}
    assert all({"val/loss", "test/acc", "best/val_loss"} <= set(r.data.metrics) for r in children)


def test_a_diverged_job_is_failed_and_the_sweep_goes_on(workdir: Path) -> None:
    """A NaN/inf loss is a result, not a crash: that job stops, FAILED; the sweep exits 0."""
    args = ["-m", "model.optimizer=sgd", "model.lr=0.01,1e30", "trainer.max_epochs=3"]
    result = run_cli(args, workdir)
    assert result.returncode == 0, result.output
    assert "Training diverged" in result.stderr and "Traceback" not in result.stderr
    runs = mlflow_runs(store_uri(workdir))
    by_lr = {r.data.params.get("model.lr"): r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert by_lr["0.01"].info.status == "FINISHED"
    diverged = by_lr["1e+30"]
    assert diverged.info.status == "FAILED"
    assert "Training diverged" in diverged.data.tags["pipelines.failure"]
    # stopped at the end of the first epoch instead of training all three
    from mlflow import MlflowClient

    history = MlflowClient(store_uri(workdir)).get_metric_history(diverged.info.run_id, "val/loss")
    assert len(history) <= 1
    (parent,) = [r for r in runs if r.data.tags.get("sweep") == "true"]
    assert parent.data.tags["best_job.run_id"] == by_lr["0.01"].info.run_id
    assert parent.data.tags["failed_jobs"] == "0"
    assert math.isfinite(parent.data.metrics["best_job/best/val_loss"])


def test_a_diverged_run_says_so_in_one_paragraph(workdir: Path) -> None:
    result = run_cli(["model.optimizer=sgd", "model.lr=1e30", *QUICK], workdir)
    assert result.returncode == 2
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert error.startswith(
        "Error: Training diverged: the training loss of epoch 0 (counted from 0) is nan"
    )
    assert "no epoch had finished" in error and "+trainer.gradient_clip_val=1.0" in error
    assert "model.lr=1e+30" in result.stderr and "Traceback" not in result.stderr
    (run,) = mlflow_runs(store_uri(workdir))
    assert run.info.status == "FAILED"


def _children_of_the_sweep(workdir: Path) -> list:
    runs = mlflow_runs(store_uri(workdir))
    (parent,) = [r for r in runs if r.data.tags.get("sweep") == "true"]
    return [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]


@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None
    or importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None,
    reason="the ray extra is not installed: pip install -e .[ray]",
)
def test_two_job_sweep_on_a_local_ray_cluster(workdir: Path) -> None:
    """Jobs run in Ray workers, not in this process, and still report to the parent."""
    args = ["-m", "hydra/launcher=ray_local", "hydra.launcher.ray.init.num_cpus=2", "seed=1,2"]
    result = run_cli([*args, *QUICK], workdir, timeout=600)
    assert result.returncode == 0, result.output
    children = _children_of_the_sweep(workdir)
    assert sorted(r.data.params["seed"] for r in children) == ["1", "2"]
    assert all(r.info.status == "FINISHED" and "test/acc" in r.data.metrics for r in children)


@pytest.mark.slow  # 31 s of local submitit jobs
@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None,
    reason="the slurm extra is not installed: pip install -e .[slurm]",
)
def test_submitit_jobs_report_to_the_parent_and_the_slurm_preset_composes(
    workdir: Path,
) -> None:
    """submitit's local executor runs jobs as SLURM would: separate processes, pickled."""
    result = run_cli(["-m", "hydra/launcher=submitit_local", "seed=1,2", *QUICK], workdir)
    assert result.returncode == 0, result.output
    children = _children_of_the_sweep(workdir)
    assert sorted(r.data.params["seed"] for r in children) == ["1", "2"]
    assert all(r.info.status == "FINISHED" for r in children)
    result = run_cli(
        ["hydra/launcher=slurm", "--cfg", "hydra", "--package", "hydra.launcher"], workdir
    )
    assert result.returncode == 0, result.output
    assert "SlurmLauncher" in result.stdout and "timeout_min: 240" in result.stdout


def test_a_locked_store_is_retried_with_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """'database is locked' past SQLite's own wait: retried; any other error: raised at once."""
    from pipelines.tracking import store as tracking

    sleeps: list[float] = []
    monkeypatch.setattr(tracking.time, "sleep", sleeps.append)

    class FlakyClient:
        tracking_uri = "sqlite:///x.db"

        def __init__(self) -> None:
            self.calls = 0

        def log_batch(self, run_id: str) -> str:
            self.calls += 1
            if self.calls < 3:
                raise RuntimeError("(sqlite3.OperationalError) database is locked")
            return run_id

        def get_run(self, run_id: str) -> None:
            raise RuntimeError("no such run")

    flaky = FlakyClient()
    client = tracking._RetryingClient(flaky)
    assert client.log_batch("abc") == "abc" and flaky.calls == 3
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0]  # backoff grows
    assert client.tracking_uri == "sqlite:///x.db"
    with pytest.raises(RuntimeError, match="no such run"):
        client.get_run("abc")
    assert len(sleeps) == 2  # not retried


@needs_optuna
def test_a_search_whose_trials_never_log_the_objective_says_why(workdir: Path) -> None:
    """A misspelt objective.metric: every trial ran, then Optuna's "No trials are completed
    yet" ended the search as a traceback. Now one paragraph lists each trial's reason."""
    args = ["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=1", "hydra.sweeper.n_jobs=1",
            "objective.metric=val/accuracy", *QUICK]  # fmt: skip
    result = run_cli(args, workdir, timeout=600)
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output, result.output
    assert "No trial of the hyper-parameter search completed" in result.stderr
    assert result.stderr.count("no objective.metric 'val/accuracy' among its metrics") == 1
    assert "best/val_acc" in result.stderr, "it names the metrics the trials did log"
    (parent,) = [r for r in mlflow_runs(store_uri(workdir)) if r.data.tags.get("sweep")]
    assert parent.info.status == "FAILED"
