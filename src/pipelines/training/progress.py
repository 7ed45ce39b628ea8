"""The progress bar a person watching a run sees: Lightning's rich bar, counting batches.

Under ``speed.steps_per_call`` Lightning's loop runs once per 32 batches, and its bar would
count those calls: 14 per epoch for the book's MNIST dense net instead of the 422 batches a
person expects from the batch size, and the same for validation. This bar counts the
batches the model steps on, from the batch iterables that say how many they hand over per
call (``TensorBatches.batches_per_call``); any other iterable is counted as Lightning counts.

It also redraws at most ten times a second. Lightning's bar redraws after every batch, and
Rich renders the whole display each time: ~1 ms a batch on this CPU. A 5-epoch fit of a
small digits net at one step per call took 1.38x the CPU time of no bar with Lightning's,
1.11x with this one (benchmarks/progress_bar.py; what remains is Rich's own display).
"""

from __future__ import annotations

import time
from typing import Any

from lightning.pytorch.callbacks import Callback, RichProgressBar


class BatchProgressBar(RichProgressBar):
    """``RichProgressBar`` whose training and validation bars count unfused batches, and
    that redraws at most every ``REDRAW_SECONDS`` (and after an epoch's last batch)."""

    #: a person reads no faster; the last batch of a loop is always drawn
    REDRAW_SECONDS = 0.1
    _last_redraw = 0.0

    @property
    def total_train_batches(self) -> int | float:
        return _unfused_total(self.trainer.train_dataloader, super().total_train_batches)

    @property
    def total_val_batches_current_dataloader(self) -> int | float:
        calls = super().total_val_batches_current_dataloader
        return _unfused_total(self._current_val_loader(), calls)

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # Lightning's bar shows batch_idx + 1 batches done
        total = self.total_train_batches
        done = _batches_done(trainer.train_dataloader, batch_idx, total)
        if self._redraw_due(done, total):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, done - 1)

    def on_validation_batch_end(
        self,
        trainer: Any,
        pl_module: Any,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        total = self.total_val_batches_current_dataloader
        done = _batches_done(self._current_val_loader(), batch_idx, total)
        if self._redraw_due(done, total):
            super().on_validation_batch_end(
                trainer, pl_module, outputs, batch, done - 1, dataloader_idx
            )

    def _redraw_due(self, done: int, total: int | float) -> bool:
        now = time.monotonic()
        if done < total and now - self._last_redraw < self.REDRAW_SECONDS:
            return False
        self._last_redraw = now
        return True

    def _current_val_loader(self) -> Any:
        loaders = self.trainer.val_dataloaders
        if isinstance(loaders, (list, tuple)):
            index = self._current_eval_dataloader_idx or 0
            return loaders[index] if index < len(loaders) else None
        return loaders


def _per_call(loader: Any) -> int:
    return int(getattr(loader, "batches_per_call", 1) or 1)


def _unfused_total(loader: Any, calls: int | float) -> int | float:
    """The batches behind ``calls`` calls of ``loader`` (``calls`` where it fuses none)."""
    if _per_call(loader) == 1:
        return calls
    return min(calls * _per_call(loader), loader.unfused_batches)


def _batches_done(loader: Any, batch_idx: int, total: int | float) -> int:
    """Batches done after call ``batch_idx`` (the last call may hand over fewer)."""
    return int(min((batch_idx + 1) * _per_call(loader), total))


class EpochLines(Callback):
    """A line per epoch of its ``train/*`` and ``val/*`` metrics, where no bar can be drawn:
    Lightning's rich bar draws nothing in a notebook without ipywidgets. An epoch's training
    means are reduced after its ``on_train_epoch_end``, so its line is printed when the next
    epoch starts, or training ends."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.shown = -1  # the last epoch printed (counted from 1); -1: none yet

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if self.shown < 0:
            self.shown = trainer.current_epoch  # a resumed fit: its earlier epochs not here
        else:
            self._print(trainer, trainer.current_epoch)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._print(trainer, trainer.current_epoch)

    def _print(self, trainer: Any, epoch: int) -> None:
        if epoch <= self.shown or not trainer.is_global_zero:
            return
        self.shown = epoch
        shown = {
            key: float(value)
            for key, value in sorted(trainer.callback_metrics.items())
            if key.startswith(("train/", "val/")) and getattr(value, "numel", lambda: 1)() == 1
        }
        values = "  ".join(f"{self.prefix}{key} {value:.4f}" for key, value in shown.items())
        print(f"epoch {epoch}  {values}".rstrip(), flush=True)
