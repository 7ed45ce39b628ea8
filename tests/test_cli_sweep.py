"""Multirun sweeps: one MLflow parent run, one child per job, failures recorded not lost."""

from __future__ import annotations

from pathlib import Path

from conftest import mlflow_runs, run_cli, store_uri


def _by_role(runs: list) -> tuple[list, list]:
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def test_sweep_groups_jobs_under_one_parent(workdir: Path) -> None:
    result = run_cli(["-m", "model=mlp,convnet", "trainer.max_epochs=1"], cwd=workdir)
    assert result.returncode == 0, result.output
    parents, children = _by_role(mlflow_runs(store_uri(workdir)))
    assert len(parents) == 1 and len(children) == 2
    (parent,) = parents
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name.startswith("sweep-")
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    assert sorted(c.data.params["model.name"] for c in children) == ["convnet", "mlp"]
    assert all(c.info.status == "FINISHED" for c in children)
    # the sweep ends with where its answer is: the parent run and the best job
    best = parent.data.tags["best_job.run_id"]
    assert f"Sweep: 2 job(s), 2 finished; parent MLflow run {parent.info.run_id}" in result.stdout
    assert f"Best job     {parent.data.tags['best_job.run_name']} ({best})" in result.stdout
    # the parent trained nothing: given to evaluate, it points at the best job
    result = run_cli([parent.info.run_id], cwd=workdir, module="pipelines.evaluate")
    assert result.returncode == 2 and "Traceback" not in result.output
    assert "is a sweep's parent run" in result.stderr and f"best job is run {best}" in result.stderr


def test_failed_job_is_recorded_and_the_others_kept(workdir: Path) -> None:
    # kernel 9 without padding does not fit the digits' 8x8 images: that job is refused as
    # its model is built, before its run opens; the sweep goes on and says so at the end
    args = ["model=convnet", "model.filters=[8]", "model.padding=valid"]
    result = run_cli(["-m", *args, "model.kernel_size=9,3", "trainer.max_epochs=1"], workdir)
    assert result.returncode != 0
    assert "1 job(s) of the sweep failed" in result.stderr
    assert "model.kernel_size" in result.stderr, "the failure list says why"
    parents, children = _by_role(mlflow_runs(store_uri(workdir)))
    assert len(parents) == 1 and parents[0].info.status == "FAILED"
    status = {c.data.params["model.kernel_size"]: c.info.status for c in children}
    assert status == {"3": "FINISHED"}, "a refused job leaves no run"
    finished = next(c for c in children if c.info.status == "FINISHED")
    assert "test/acc" in finished.data.metrics


def test_overfitting_experiment_logs_a_comparison_figure(workdir: Path) -> None:
    from mlflow import MlflowClient

    result = run_cli(["experiment=overfitting", "trainer.max_epochs=2"], cwd=workdir)
    assert result.returncode == 0, result.output
    uri = store_uri(workdir)
    parents, children = _by_role(mlflow_runs(uri))
    assert len(parents) == 1 and len(children) == 4
    variants = sorted(c.data.tags["overrides"].split()[0] for c in children)
    assert variants == [f"variant={v}" for v in ("dropout", "l2", "original", "smaller")]
    hidden = {c.data.tags["overrides"].split()[0]: c.data.params for c in children}
    assert hidden["variant=smaller"]["model.width"] == "0.125"
    assert hidden["variant=l2"]["model.l2"] == "0.002"
    assert hidden["variant=dropout"]["model.dropout"] == "0.5"
    figures = MlflowClient(uri).list_artifacts(parents[0].info.run_id, "comparison")
    assert [f.path for f in figures] == ["comparison/val_loss_by_job.png"]


def test_ctrl_c_while_a_job_imports_is_one_line_and_exit_130(workdir: Path) -> None:
    """Ctrl-C before a job's run opens (its first seconds import torch and Lightning) was a
    traceback from deep inside torch; it is one line, the shell's code, and no run left
    RUNNING. Sent as the job starts: it lands in Hydra's start of the job or in the job's
    imports, both before its run opens (handled by the command, then by the runner)."""
    import os
    import signal
    import subprocess
    import sys
    import threading

    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.run", "-m", "model.lr=0.1,0.01", "trainer.max_epochs=1"],
        cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    timer = threading.Timer(120, proc.kill)  # a hung sweep fails the test, not the suite
    timer.start()
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if "#0 : " in line:  # Hydra's word that job 0 starts now
            proc.send_signal(signal.SIGINT)
    timer.cancel()
    output = "".join(lines)
    assert proc.wait() == 130, output
    assert "Traceback" not in output, output
    assert lines[-1].startswith("Interrupted (Ctrl-C) "), output
    assert "MLflow run" not in output, "interrupted before job 0's run opened"
    (parent,) = mlflow_runs(store_uri(workdir))
    assert parent.info.status == "KILLED" and parent.data.tags["sweep"] == "true"
