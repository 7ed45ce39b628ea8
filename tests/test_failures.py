"""Failure paths: diverged training keeps good checkpoints, corrupt downloads are fetched
again, checkpoints that carry code are refused."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest
import torch

from pipelines.context import RunContext
from pipelines.errors import DataNotFoundError, PipelineError, TrainingDiverged
from pipelines.runtime.downloads import RemoteFile, download, ensure_file
from pipelines.tracking.tracker import Tracker


def test_diverged_epoch_is_never_checkpointed(tmp_path: Path, one_thread) -> None:
    """Epoch 3's loss is NaN: the run stops before validating or saving those weights, and
    both the best checkpoint and last.ckpt (what resume starts from) hold finite weights."""
    from plugins.data.vision import DigitsDataModule
    from plugins.models.dense import MLP
    from plugins.stages.fit import Fit

    class DivergesInEpochThree(MLP):
        def _evaluate(self, batch, stage):
            loss = super()._evaluate(batch, stage)
            if stage == "train" and self.current_epoch == 2:
                self.accumulate("train", {"loss": torch.tensor(float("nan"))}, 1)
                return loss * float("nan")
            return loss

    data = DigitsDataModule(batch_size=64)
    data.setup()
    config = {"trainer": {"max_epochs": 5, "enable_progress_bar": False, "accelerator": "cpu"}}
    ctx = RunContext(config=config, tracker=Tracker(), output_dir=tmp_path)
    ctx.datamodule = data
    ctx.model = DivergesInEpochThree(input_shape=(1, 8, 8), num_classes=10)
    with pytest.raises(TrainingDiverged, match=r"epoch 2 \(counted from 0\) is nan"):
        Fit().run(ctx)
    for path in (ctx.artifacts["best_checkpoint"], tmp_path / "checkpoints" / "last.ckpt"):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        assert checkpoint["epoch"] <= 1, path
        assert all(torch.isfinite(w).all() for w in checkpoint["state_dict"].values()), path


def _remote(tmp_path: Path, payload: bytes) -> tuple[RemoteFile, Path, Path]:
    """A good and a truncated copy of ``payload`` behind file:// URLs (no network needed)."""
    good, broken = tmp_path / "mirror-good", tmp_path / "mirror-broken"
    good.mkdir(), broken.mkdir()
    (good / "data.gz").write_bytes(payload)
    (broken / "data.gz").write_bytes(payload[: len(payload) // 2])
    remote = RemoteFile(
        "data.gz",
        urls=((broken / "data.gz").as_uri(), (good / "data.gz").as_uri()),
        sha256=hashlib.sha256(payload).hexdigest(),
    )
    return remote, good, broken


def test_a_truncated_download_is_detected_and_fetched_from_the_next_mirror(tmp_path: Path) -> None:
    payload = gzip.compress(b"pixels" * 5000)
    remote, _, _ = _remote(tmp_path, payload)
    path = download(remote, tmp_path / "cache")
    assert path.read_bytes() == payload
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["data.gz"], "no partial files"


def test_a_corrupt_cached_file_is_fetched_again(tmp_path: Path) -> None:
    payload = gzip.compress(b"labels" * 5000)
    remote, _, _ = _remote(tmp_path, payload)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "data.gz").write_bytes(payload[:100])  # an earlier download cut short
    assert ensure_file(remote, cache).read_bytes() == payload


def test_every_mirror_corrupt_is_one_clear_error(tmp_path: Path) -> None:
    payload = gzip.compress(b"x" * 1000)
    remote, good, _ = _remote(tmp_path, payload)
    (good / "data.gz").write_bytes(b"tampered")
    with pytest.raises(DataNotFoundError, match=r"checksum mismatch.*checksum mismatch"):
        download(remote, tmp_path / "cache")


class _Payload:
    """Unpickling this would run code: it must never be unpickled from a checkpoint."""

    def __reduce__(self):
        return (Path.write_text, (Path(__file__).with_name("PWNED"), "ran"))


def test_checkpoints_that_carry_code_are_refused(tmp_path: Path) -> None:
    from pipelines.training.run_loader import load_checkpoint

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "extra": _Payload()}, path)
    with pytest.raises(PipelineError, match="not plain weights"):
        load_checkpoint(path)
    assert not Path(__file__).with_name("PWNED").exists()
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 3}, good)
    assert load_checkpoint(good)["epoch"] == 3


def test_a_best_checkpoint_named_but_never_written_falls_back_to_the_one_on_disk(
    tmp_path: Path,
) -> None:
    """Ctrl-C between ModelCheckpoint naming its new best and writing it: the run keeps the
    previous best, which is still on disk, rather than failing on a missing file."""
    import os

    from lightning.pytorch.callbacks import ModelCheckpoint

    from pipelines.training.fit import _best_saved_checkpoint

    checkpoint = ModelCheckpoint(dirpath=tmp_path, monitor="val/loss", save_top_k=1)
    previous, newest_last = tmp_path / "best-002.ckpt", tmp_path / "last.ckpt"
    torch.save({"epoch": 2}, previous)  # real checkpoints: a damaged one is passed over
    torch.save({"epoch": 3}, newest_last)
    os.utime(previous, (1, 1))  # older than last.ckpt, which must still not be chosen
    checkpoint.best_model_path = str(tmp_path / "best-003.ckpt")  # named, not written
    checkpoint.best_k_models = {checkpoint.best_model_path: torch.tensor(0.1)}
    assert _best_saved_checkpoint(checkpoint) == str(previous)

    top_two = ModelCheckpoint(dirpath=tmp_path, monitor="val/acc", mode="max", save_top_k=2)
    torch.save({"epoch": 1}, tmp_path / "best-001.ckpt")
    top_two.best_model_path = str(tmp_path / "best-003.ckpt")
    top_two.best_k_models = {
        top_two.best_model_path: torch.tensor(0.99),
        str(tmp_path / "best-001.ckpt"): torch.tensor(0.90),
        str(previous): torch.tensor(0.95),
    }
    assert _best_saved_checkpoint(top_two) == str(previous)

    empty = ModelCheckpoint(dirpath=tmp_path / "none", monitor="val/loss")
    assert _best_saved_checkpoint(empty) == ""
