"""Resume after ``kill -9``, re-run from the record, and what every run records for that."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import default_sigint, mlflow_runs, run_cli, start_until_first_checkpoint, store_uri

#: long enough to be killed mid-training (digits, mlp: ~0.2 s an epoch here)
EPOCHS = 15


def _kill_after_first_checkpoint(cwd: Path, *args: str) -> None:
    """Start a run, and SIGKILL it as soon as its first epoch's checkpoint is on disk."""
    proc = start_until_first_checkpoint(cwd, *args)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def _history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    from mlflow import MlflowClient

    return [(m.step, m.value) for m in MlflowClient(uri).get_metric_history(run_id, key)]


def test_killed_run_resumes_in_the_same_run_as_if_never_stopped(tmp_path: Path) -> None:
    args = [f"trainer.max_epochs={EPOCHS}"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir(), killed.mkdir()
    assert run_cli(args, whole).returncode == 0
    (reference,) = mlflow_runs(store_uri(whole))

    _kill_after_first_checkpoint(killed, *args)
    (stopped,) = mlflow_runs(store_uri(killed))
    assert stopped.info.status == "RUNNING", "kill -9 leaves no chance to mark the run"
    (log,) = (killed / "outputs").rglob("*.log")
    assert f"python -m pipelines.resume {stopped.info.run_id}" in log.read_text(), (
        "the id to resume by is said when the run starts, not only in the final summary"
    )
    before = _history(store_uri(killed), stopped.info.run_id, "val/loss")
    assert 1 <= len(before) < EPOCHS

    resumed = run_cli(module="pipelines.resume", args=[stopped.info.run_id], cwd=killed)
    assert resumed.returncode == 0, resumed.stderr
    said = re.search(r"resuming from (\S+\.ckpt) \(after epoch (\d+) of training\)", resumed.stderr)
    assert said, "resume says the checkpoint and epoch it continues from"
    assert 1 <= int(said[2]) <= len(before) and Path(said[1]).is_file()
    (run,) = mlflow_runs(store_uri(killed))  # no second run
    assert run.info.run_id == stopped.info.run_id and run.info.status == "FINISHED"
    assert run.data.tags["pipelines.resumed"] == "1"
    history = _history(store_uri(killed), run.info.run_id, "val/loss")
    steps = [step for step, _ in history]
    assert steps == sorted(set(steps)) and len(steps) == EPOCHS, "epochs go on, none twice"
    assert history[: len(before)] == before
    # the same shuffles, optimizer state and best checkpoint: the same numbers
    expected = _history(store_uri(whole), reference.info.run_id, "val/loss")
    assert [v for _, v in history] == pytest.approx([v for _, v in expected], rel=1e-5)
    for key in ("test/acc", "test/loss", "best/val_loss"):
        assert run.data.metrics[key] == pytest.approx(reference.data.metrics[key], rel=1e-5)


def test_a_run_resumed_after_ctrl_c_keeps_only_its_final_best_checkpoint(
    workdir: Path,
) -> None:
    """The interrupted run logs its best checkpoint so far (``evaluate`` can use it); once
    resumed, the final best replaces it in the run's artifacts, not beside it."""
    from mlflow import MlflowClient

    from pipelines.training.run_loader import BEST_CHECKPOINT_TAG

    proc = start_until_first_checkpoint(workdir, f"trainer.max_epochs={EPOCHS}")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    uri = store_uri(workdir)
    (stopped,) = mlflow_runs(uri)
    assert stopped.info.status == "KILLED"
    earlier = stopped.data.tags[BEST_CHECKPOINT_TAG]
    client = MlflowClient(uri)
    logged = [item.path for item in client.list_artifacts(stopped.info.run_id, "checkpoints")]
    assert logged == [earlier], "the stopped run logged its best so far"

    resumed = run_cli(module="pipelines.resume", args=[stopped.info.run_id], cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr
    (run,) = mlflow_runs(uri)
    final = run.data.tags[BEST_CHECKPOINT_TAG]
    assert final != earlier, "training went on to a better epoch"
    logged = [item.path for item in client.list_artifacts(run.info.run_id, "checkpoints")]
    assert logged == [final], "no stale best checkpoint beside the final one"


def test_a_store_that_cannot_delete_keeps_the_earlier_checkpoint_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from pipelines.tracking.tracker import Tracker
    from pipelines.training.fit import drop_earlier_checkpoints

    class Undeletable(Tracker):
        """Like MLflow's Databricks, DBFS and FTP artifact stores: no deletion."""

        def artifact_files(self, folder: str) -> list[str]:
            return [f"{folder}/best-001.ckpt", f"{folder}/best-007.ckpt", f"{folder}/notes.txt"]

    class Unlistable(Tracker):
        def artifact_files(self, folder: str) -> list[str]:
            raise OSError("the artifact store is unreachable")

    drop_earlier_checkpoints(Undeletable(), "checkpoints", "checkpoints/best-007.ckpt")
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "keep checkpoints/best-001.ckpt" in warning
    assert "model is checkpoints/best-007.ckpt" in warning
    drop_earlier_checkpoints(Unlistable(), "checkpoints", "checkpoints/best-007.ckpt")


def test_resume_explains_what_cannot_be_resumed(workdir: Path) -> None:
    assert run_cli(["trainer.max_epochs=1"], workdir).returncode == 0
    (run,) = mlflow_runs(store_uri(workdir))
    finished = run_cli(module="pipelines.resume", args=[run.info.run_id], cwd=workdir)
    assert finished.returncode == 2
    assert "finished: there is nothing to resume" in finished.stderr
    assert f"python -m pipelines.rerun {run.info.run_id}" in finished.stderr
    unknown = run_cli(module="pipelines.resume", args=["0123abcd"], cwd=workdir)
    assert unknown.returncode == 2 and "No run '0123abcd'" in unknown.stderr
    assert "Traceback" not in finished.stderr + unknown.stderr


def test_rerun_from_the_record_reaches_the_same_metrics(workdir: Path) -> None:
    """The record (config, seed) alone is enough; today's config files play no part."""
    assert (
        run_cli(["model.hidden_units=[32]", "seed=3", "trainer.max_epochs=3"], workdir).returncode
        == 0
    )
    (original,) = mlflow_runs(store_uri(workdir))
    tags = original.data.tags
    assert tags["versions.torch"] and tags["versions.lightning"] and tags["versions.python"]
    assert tags["pipelines.output_dir"].endswith(tags["pipelines.output_dir"].split("/")[-1])
    if "mlflow.source.git.commit" in tags:  # an editable install in a git checkout
        assert len(tags["mlflow.source.git.commit"]) == 40

    again = run_cli(module="pipelines.rerun", args=[original.info.run_id], cwd=workdir)
    assert again.returncode == 0, again.stderr
    first, second = mlflow_runs(store_uri(workdir))
    assert second.data.tags["pipelines.rerun_of"] == original.info.run_id
    assert second.data.params == first.data.params
    # where its files are, as an absolute path (it printed outputs/runs/..., relative)
    assert f"Outputs       {second.data.tags['pipelines.output_dir']}" in again.stdout
    for key in ("test/acc", "test/loss", "best/val_loss"):
        assert second.data.metrics[key] == pytest.approx(first.data.metrics[key], rel=1e-6)


@pytest.mark.slow
def test_rerun_takes_overrides(workdir: Path) -> None:
    assert run_cli(["model=convnet", "trainer.max_epochs=2"], workdir).returncode == 0
    (original,) = mlflow_runs(store_uri(workdir))
    args = [original.info.run_id, "trainer.max_epochs=1"]
    changed = run_cli(module="pipelines.rerun", args=args, cwd=workdir)
    assert changed.returncode == 0, changed.stderr
    again = mlflow_runs(store_uri(workdir))[-1]
    assert again.data.params["trainer.max_epochs"] == "1"
    assert again.data.params["model.name"] == "convnet"


def test_a_run_still_training_is_not_resumed_a_second_time(workdir: Path) -> None:
    proc = start_until_first_checkpoint(workdir, "trainer.max_epochs=1000")
    try:
        (running,) = mlflow_runs(store_uri(workdir))  # still training: 1000 epochs
        second = run_cli(module="pipelines.resume", args=[running.info.run_id], cwd=workdir)
        assert second.returncode == 2, second.output
        assert "is still running" in second.stderr and "Traceback" not in second.output
        assert proc.poll() is None, "the first process trains on, undisturbed"
        (after,) = mlflow_runs(store_uri(workdir))
        assert after.info.status == "RUNNING" and after.info.end_time is None
    finally:
        proc.kill()
        proc.wait()


def test_rerun_overrides_change_recorded_keys_and_refuse_group_choices() -> None:
    from pipelines.errors import PipelineError
    from pipelines.training.run_loader import RecordedRun

    config = {"trainer": {"max_epochs": 5}, "tracking": {"enabled": True}, "seed": 1}
    record = RecordedRun("id", "name", "FINISHED", config, {}, {}, client=None)
    changed = record.config_with(["+trainer.max_epochs=1", "seed=2"])  # `+` is harmless
    assert changed.trainer.max_epochs == 1 and changed.seed == 2
    with pytest.raises(PipelineError, match=r"tracking\.enabled=false"):
        record.config_with(["tracking=none"])


def test_runs_started_together_each_get_a_folder_of_their_own(workdir: Path) -> None:
    """`cmd & cmd &`: Hydra's folder had a one-second name, so runs started together shared
    it and all but one were refused by its lock ("Run  is still running")."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    command = [sys.executable, "-m", "pipelines.run", "trainer.max_epochs=1"]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    procs = [
        subprocess.Popen([*command, f"seed={seed}"], cwd=workdir, env=env, **pipes)
        for seed in (1, 2)
    ]
    results = [proc.communicate(timeout=300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err for _, err in results]
    runs = mlflow_runs(store_uri(workdir))
    folders = {run.data.tags["pipelines.output_dir"] for run in runs}
    assert len(runs) == 2 and len(folders) == 2


def test_a_new_run_in_a_folder_in_use_is_told_to_take_its_own(tmp_path: Path) -> None:
    import fcntl

    from pipelines.errors import PipelineError
    from pipelines.runtime.run_lock import LOCK_FILE, run_lock

    with open(tmp_path / LOCK_FILE, "a+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        refused = pytest.raises(PipelineError, match=r"in use by another run.*hydra\.run\.dir=")
        with refused, run_lock(tmp_path, None):
            pass


def test_rerun_without_a_run_says_only_the_run_is_required(capsys) -> None:
    from pipelines.commands.resume import main

    with pytest.raises(SystemExit):
        main("rerun", [])
    error = capsys.readouterr().err
    assert "the following arguments are required: run_id" in error
    assert "overrides" not in error.splitlines()[-1], "the overrides are optional"


def test_ctrl_c_ends_the_run_killed_with_the_shells_exit_code(workdir: Path) -> None:
    """Lightning's graceful stop on Ctrl-C exits 1, which scripts read as a failure; the
    shell's code for an interrupted command is 130. The run is KILLED and resumable."""

    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.run", "trainer.max_epochs=1000"],
        cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=default_sigint,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(workdir.glob("outputs/runs/*/*/checkpoints/last.ckpt")):
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint yet"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    (run,) = mlflow_runs(store_uri(workdir))
    assert run.info.status == "KILLED"
    assert f"python -m pipelines.resume {run.info.run_id}" in stderr
