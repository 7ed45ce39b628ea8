"""The engine's checkpoints: the best epoch by the monitored metric, and the newest epoch.

Two callbacks, because ``ModelCheckpoint(save_top_k=1, save_last=True)`` no longer does
what resuming needs: since Lightning 2.6 it writes ``last.ckpt`` only at a step where it
also wrote a top-k checkpoint, so after an epoch that did not improve, ``last.ckpt`` still
holds the best epoch, and a run resumed from it silently goes back in time. Here
:class:`LastCheckpoint` writes ``last.ckpt`` after every epoch, whatever the metric did.

Written once, not twice: in an epoch that improved, the best file and ``last.ckpt`` hold
the same training state, and serialising it twice costs ~7 ms an epoch for the book's MNIST
dense net on this CPU, seconds for a fine-tuned Xception (~170 MB with its optimizer
state). There ``last.ckpt`` becomes a hard link to the best file. A hard link, not
Lightning's ``save_last="link"`` symlink, because it is a file in its own right: when a
better epoch deletes the old best file, ``last.ckpt`` keeps its bytes (a symlink would
dangle). Rewriting ``last.ckpt`` must then never write into the shared file: a full save
is written to a new file beside it and renamed over it. (Lightning's own writer is not
enough: it moves a file from the system's temporary folder into place, which is a copy, in
place, where that folder is on another filesystem.) With another checkpoint IO plugin,
under several processes, or where the filesystem has no hard links, nothing is linked.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from weakref import proxy

from lightning.pytorch.callbacks import ModelCheckpoint

#: suffixes of last.ckpt's temporary names while it is linked or written
_LINKING, _SAVING = ".link-", ".saving-"


def engine_checkpoints(
    dirpath: Path, monitor: str, mode: str, before_publishing: Callable[[], None] | None = None
) -> list[ModelCheckpoint]:
    """The best checkpoint (``best-NNN.ckpt``, first: it is the one ``fit`` reports) and
    ``last.ckpt`` (what a resume starts from; ``before_publishing`` runs just before it
    appears: the engine waits there for the run's metrics to be in the store)."""
    best = ModelCheckpoint(
        dirpath=dirpath,
        filename="best-{epoch:03d}",
        monitor=monitor,
        mode=mode,
        save_top_k=1,
        auto_insert_metric_name=False,
    )
    return [best, LastCheckpoint(dirpath, best, before_publishing)]


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt`` after every epoch; a hard link to ``best``'s file when that was saved
    at the same step (see the module docstring)."""

    def __init__(
        self,
        dirpath: Path,
        best: ModelCheckpoint,
        before_publishing: Callable[[], None] | None = None,
    ) -> None:
        # no monitor: Lightning saves after every epoch and replaces the previous file
        super().__init__(
            dirpath=dirpath,
            filename=self.CHECKPOINT_NAME_LAST,
            save_top_k=1,
            enable_version_counter=False,
        )
        self.best = best
        # A resume starts from last.ckpt and logs the epochs after it: the metrics of the
        # epochs in it must be in the run's record before it appears, or a kill right after
        # would leave a gap in every curve (they are written in the background)
        self.before_publishing = before_publishing or (lambda: None)

    def _save_checkpoint(self, trainer: Any, filepath: str) -> None:
        if self._best_has_this_step(trainer):
            self.before_publishing()
            if _hard_link(self.best.best_model_path, filepath):
                # what ModelCheckpoint._save_checkpoint records after it saves
                self._last_global_step_saved = trainer.global_step
                self._last_checkpoint_saved = filepath
                if trainer.is_global_zero:
                    for logger in trainer.loggers:
                        logger.after_save_checkpoint(proxy(self))
                return
        # Written beside last.ckpt, then renamed over it. Lightning's writer (fsspec) writes
        # into the system's temporary folder and moves the file into place; where that folder
        # is on another filesystem (a tmpfs /tmp, a container's), the move is a copy into
        # last.ckpt, in place, which would write through a hard link into the best file.
        staged = f"{filepath}{_SAVING}{os.getpid()}"
        super()._save_checkpoint(trainer, staged)
        if trainer.is_global_zero:
            self.before_publishing()
            os.replace(staged, filepath)
        self._last_checkpoint_saved = filepath

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        # what a process killed between writing and renaming left behind: a leftover link
        # would keep an old best checkpoint's bytes on disk for good
        if trainer.is_global_zero and self.dirpath and Path(self.dirpath).is_dir():
            last = f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"
            for suffix in (_LINKING, _SAVING):
                for leftover in Path(self.dirpath).glob(f"{last}{suffix}*"):
                    leftover.unlink(missing_ok=True)

    def _best_has_this_step(self, trainer: Any) -> bool:
        """Whether the best file was written at this step by the rename-writing checkpoint
        IO, in the only process."""
        from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

        best = self.best
        return (
            trainer.world_size == 1
            and type(trainer.strategy.checkpoint_io) is TorchCheckpointIO
            and bool(best.best_model_path)
            and best._last_checkpoint_saved == best.best_model_path
            and best._last_global_step_saved == trainer.global_step
            and Path(best.best_model_path).is_file()
        )


def _hard_link(source: str, target: str) -> bool:
    """Make ``target`` a hard link to ``source``, replacing ``target`` atomically (a crash
    leaves the old ``target`` or the new one, never none); False where links are refused."""
    temporary = f"{target}{_LINKING}{os.getpid()}"
    try:
        os.link(source, temporary)
    except OSError:  # no hard links on this filesystem
        return False
    try:
        os.replace(temporary, target)
    except OSError:
        Path(temporary).unlink(missing_ok=True)
        return False
    return True


def resumable_checkpoint(folder: Path) -> Path | None:
    """The newest intact checkpoint in ``folder`` to resume from: ``last.ckpt``, else the
    newest ``best-NNN.ckpt`` (None if there is none).

    A checkpoint cut short (a full disk, a copy interrupted) is skipped here, in a second,
    instead of failing the resume with a 47-line traceback from torch's zip reader while an
    intact best checkpoint sits beside it.
    """
    import logging

    candidates = [folder / "last.ckpt", *sorted(folder.glob("best-*.ckpt"), reverse=True)]
    for path in candidates:
        if not path.is_file():
            continue
        damage = checkpoint_damage(path)
        if damage is None:
            return path
        logging.getLogger(__name__).warning(
            "%s is damaged (%s); resuming from an older checkpoint if there is one", path, damage
        )
    return None


def epochs_done(path: Path) -> str:
    """How far a checkpoint got, in words: "after epoch 3 of training" (its ``epoch`` is
    counted from 0), or "epoch unknown". Memory-mapped: only that number is read."""
    import torch

    try:
        epoch = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("epoch")
    except Exception:  # what reads it next reports a checkpoint it cannot read
        return "epoch unknown"
    return f"after epoch {int(epoch) + 1} of training" if epoch is not None else "epoch unknown"


def checkpoint_damage(path: str | Path) -> str | None:
    """Why the checkpoint at ``path`` cannot be read back (None if it is intact).

    torch saves a checkpoint as a zip archive: one cut short has no central directory and
    one garbled fails a member's CRC, both found here from the file's bytes alone, without
    unpickling anything. torch's own reader skips the CRCs, so a garbled file would load.

    The answer is remembered for the file as it is on disk (device, inode, size, mtime):
    one file is asked about several times in a row (the fit stage picks the best intact
    checkpoint, then the test stage loads it; ``evaluate`` words its own message, then
    loads), and each check reads the whole file, ~0.2 s for a fine-tuned Xception. A file
    rewritten or cut short since has another size or mtime, so it is checked again.
    """
    try:
        stat = os.stat(path)
    except OSError as error:
        return str(error) or type(error).__name__
    identity = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    return _zip_damage(os.path.abspath(path), identity)


@functools.lru_cache(maxsize=64)
def _zip_damage(path: str, identity: tuple[int, int, int, int]) -> str | None:
    """The zip check behind :func:`checkpoint_damage`, once per ``identity`` of a file."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            bad_member = archive.testzip()
    except (OSError, zipfile.BadZipFile) as error:
        return str(error) or type(error).__name__
    return None if bad_member is None else f"{bad_member} fails its checksum"
