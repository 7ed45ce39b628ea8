"""The engine's checkpoints: ``last.ckpt`` holds every epoch, also one that did not improve
(Lightning 2.6's ``save_last`` leaves the best epoch there), and shares the best file's bytes
when both hold the same step."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from pipelines.training.checkpoint import _hard_link, checkpoint_damage, engine_checkpoints

#: val/loss per epoch: better, better, worse, better
SCRIPTED_VAL_LOSS = (3.0, 2.0, 2.5, 1.0)


class ScriptedValLoss(L.LightningModule):
    """Trains a linear layer; reports the scripted val/loss of each epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        (inputs,) = batch
        return self.layer(inputs).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", SCRIPTED_VAL_LOSS[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class RecordsCheckpointFiles(L.Callback):
    """After every epoch's checkpoints (checked when the next epoch starts, and after fit):
    which epoch last.ckpt holds, and whether it is the best file itself."""

    def __init__(self, best: ModelCheckpoint) -> None:
        self.best = best
        self.seen: list[tuple[int, bool]] = []

    def record(self) -> None:
        last = Path(self.best.dirpath) / "last.ckpt"
        best = Path(self.best.best_model_path)
        epoch = torch.load(last, map_location="cpu", weights_only=True)["epoch"]
        best_epoch = torch.load(best, map_location="cpu", weights_only=True)["epoch"]
        self.seen.append((epoch, os.stat(last).st_ino == os.stat(best).st_ino, best_epoch))

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch > 0:
            self.record()

    def on_fit_end(self, trainer, pl_module) -> None:
        self.record()


def _another_filesystem(than: Path) -> str | None:
    """A writable folder on another filesystem than ``than`` (a tmpfs), if there is one."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != than.stat().st_dev:
        return str(shm)
    return None


@pytest.mark.parametrize("system_temp", ["beside", "another filesystem"])
def test_last_checkpoint_is_every_epoch_and_the_best_file_when_it_improved(
    tmp_path: Path, system_temp: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also where Lightning's writer stages files on another filesystem (a tmpfs /tmp), so
    that moving one into place is a copy: rewriting last.ckpt never touches the best file."""
    if system_temp == "another filesystem":
        elsewhere = _another_filesystem(tmp_path)
        if elsewhere is None:
            pytest.skip("no writable folder on another filesystem (/dev/shm)")
        monkeypatch.setattr(tempfile, "tempdir", elsewhere)
    for leftover in ("last.ckpt.link-99", "last.ckpt.saving-99"):  # from a killed process
        (tmp_path / leftover).write_bytes(b"old")
    checkpoints = engine_checkpoints(tmp_path, monitor="val/loss", mode="min")
    recorder = RecordsCheckpointFiles(best=checkpoints[0])
    data = DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4)
    trainer = L.Trainer(
        max_epochs=len(SCRIPTED_VAL_LOSS),
        callbacks=[*checkpoints, recorder],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        num_sanity_val_steps=0,
    )
    trainer.fit(ScriptedValLoss(), train_dataloaders=data, val_dataloaders=data)

    # epoch 2 did not improve: last.ckpt is its own file of epoch 2, not a link to epoch 1,
    # and the best file still holds epoch 1
    assert recorder.seen == [(0, True, 0), (1, True, 1), (2, False, 1), (3, True, 3)]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["best-003.ckpt", "last.ckpt"]
    state = torch.load(tmp_path / "last.ckpt", map_location="cpu", weights_only=True)
    weights = ScriptedValLoss().state_dict().keys()
    assert state["state_dict"].keys() == weights and "optimizer_states" in state


def test_a_hard_link_outlives_the_file_it_was_made_from(tmp_path: Path) -> None:
    """What keeps last.ckpt whole when a better epoch deletes the best file it shares."""
    best, last = tmp_path / "best-001.ckpt", tmp_path / "last.ckpt"
    best.write_bytes(b"epoch 1")
    last.write_bytes(b"epoch 0")
    assert _hard_link(str(best), str(last))
    best.unlink()
    assert last.read_bytes() == b"epoch 1"
    assert [path.name for path in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary left


def test_resume_skips_a_damaged_last_checkpoint_for_the_newest_intact_one(tmp_path: Path) -> None:
    from pipelines.training.checkpoint import resumable_checkpoint

    assert resumable_checkpoint(tmp_path) is None
    for epoch in (0, 1):
        torch.save({"epoch": epoch}, tmp_path / f"best-{epoch:03d}.ckpt")
    torch.save({"epoch": 2}, tmp_path / "last.ckpt")
    assert resumable_checkpoint(tmp_path) == tmp_path / "last.ckpt"
    whole = (tmp_path / "last.ckpt").read_bytes()
    (tmp_path / "last.ckpt").write_bytes(whole[: len(whole) // 2])  # a save cut short
    assert resumable_checkpoint(tmp_path) == tmp_path / "best-001.ckpt"


_DISK_FILLS_UP = """
import errno, os, runpy, sys
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

real, calls = TorchCheckpointIO.save_checkpoint, []

def save_until_the_disk_is_full(self, checkpoint, path, storage_options=None):
    calls.append(path)
    if len(calls) >= 2:  # the first checkpoint fits, the next does not
        if os.environ.get("DISK_FULL_MIDWAY"):  # the file is cut short, as a real disk does
            real(self, checkpoint, path, storage_options)
            os.truncate(path, os.path.getsize(path) // 2)
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    return real(self, checkpoint, path, storage_options)

TorchCheckpointIO.save_checkpoint = save_until_the_disk_is_full
sys.argv = ["pipelines.run", *sys.argv[1:]]
runpy.run_module("pipelines.run", run_name="__main__")
"""


def test_a_full_disk_keeps_the_work_and_says_how_to_continue(tmp_path: Path) -> None:
    """A full disk while saving a checkpoint was a 70-220-line traceback; now one paragraph
    that says what is kept and the resume command, and the run is recorded as FAILED."""
    import subprocess
    import sys

    from conftest import mlflow_runs, store_uri

    script = tmp_path / "disk_fills_up.py"
    script.write_text(_DISK_FILLS_UP)
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI",)}
    result = subprocess.run(
        [sys.executable, str(script), "trainer.max_epochs=2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    (run,) = mlflow_runs(store_uri(tmp_path))
    assert "The disk is full (No space left on device) while writing" in result.stderr
    assert f"python -m pipelines.resume {run.info.run_id}" in result.stderr
    assert run.info.status == "FAILED"
    assert "The disk is full" in run.data.tags["pipelines.failure"]
    assert list(tmp_path.glob("outputs/runs/*/*/checkpoints/*.ckpt")), "the first is kept"


def test_a_checkpoint_cut_short_by_a_full_disk_is_not_the_runs_model(tmp_path: Path) -> None:
    """The disk fills while the second best checkpoint is written, leaving it half written:
    the run records the intact first one as its model, and ``evaluate`` rebuilds it."""
    import subprocess
    import sys

    from conftest import mlflow_runs, run_cli, store_uri
    from pipelines.training.run_loader import BEST_CHECKPOINT_TAG

    script = tmp_path / "disk_fills_up.py"
    script.write_text(_DISK_FILLS_UP)
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI",)}
    env["DISK_FULL_MIDWAY"] = "1"
    # val/loss falls from epoch to epoch at this learning rate, so the second save is a best
    result = subprocess.run(
        [sys.executable, str(script), "trainer.max_epochs=2", "model.lr=0.01"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    (cut_short,) = tmp_path.glob("outputs/runs/*/*/checkpoints/best-001.ckpt")
    assert checkpoint_damage(cut_short), "the second save was cut short"
    (run,) = mlflow_runs(store_uri(tmp_path))
    assert run.data.tags[BEST_CHECKPOINT_TAG] == "checkpoints/best-000.ckpt"
    evaluated = run_cli(module="pipelines.evaluate", args=[run.info.run_id], cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "test/acc" in evaluated.stdout


def test_loading_a_damaged_checkpoint_is_one_paragraph(tmp_path: Path) -> None:
    from pipelines.errors import PipelineError
    from pipelines.training.run_loader import load_checkpoint

    path = tmp_path / "best-003.ckpt"
    torch.save({"state_dict": {"w": torch.ones(64, 64)}}, path)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(PipelineError, match=r"(?s)Cannot load .*best-003\.ckpt: it is damaged"):
        load_checkpoint(path)


def test_a_checkpoint_is_checked_once_until_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fit's pick of the best intact checkpoint and the test stage's load of it read the
    file once, not twice; a file cut short afterwards is checked again and found damaged."""
    import zipfile

    path = tmp_path / "best-000.ckpt"
    torch.save({"state_dict": {"w": torch.ones(64, 64)}}, path)
    reads: list[str] = []
    testzip = zipfile.ZipFile.testzip
    monkeypatch.setattr(
        zipfile.ZipFile, "testzip", lambda archive: reads.append("read") or testzip(archive)
    )
    assert checkpoint_damage(path) is None
    assert checkpoint_damage(str(path)) is None
    assert reads == ["read"]
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    os.utime(path, ns=(1, 1))  # even a same-second rewrite is told apart (by its size)
    assert checkpoint_damage(path)
