"""What generative models share: drawing samples to files, after each epoch and on demand.

A generative model implements ``generate(output_dir, epoch=None, **settings) -> list[Path]``
(text at several temperatures, a latent-grid image, a grid of generated images, ...). The
``generate`` stage calls it at the end of a pipeline or on the network of a finished run;
:class:`EpochSamples` calls it after every training epoch, so the run shows how the samples
improve. Files land in the run under ``samples/epoch-NNN/`` and ``generate/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import lightning as L

#: the ``task`` a model declares (class attribute) when it learns only to draw samples (a
#: VAE, a GAN), beside a classifier's ``classification`` and ``regression``: it predicts no
#: class or value, so the stages that score predictions (``report``, ``visualize``) refuse it
#: right after ``prepare``, naming ``pipeline=generative``, instead of failing after training
GENERATION = "generation"


def only_generates(model: object) -> bool:
    """Whether ``model`` declares ``task = "generation"``: samples are all it makes.

    char_lstm also generates, but it is a next-character classifier as well (``task``
    ``classification``), whose predictions the report can score.
    """
    return getattr(model, "task", None) == GENERATION


@runtime_checkable
class Generative(Protocol):
    """A model that can draw samples into files."""

    def generate(self, output_dir: Path, epoch: int | None = None, **settings: Any) -> list[Path]:
        """Write samples into ``output_dir``; return the files written."""
        ...


class EpochSamples(L.Callback):
    """After every ``every_n_epochs`` training epochs, draw samples and log them to the run.

    Return it from a model's ``configure_callbacks()``. Samples go through the trainer's
    logger (``TrackerLogger.log_artifact``); without a tracking logger they stay on disk in
    ``output_dir`` (a temporary folder when none is given).
    """

    def __init__(self, every_n_epochs: int = 1, output_dir: Path | None = None) -> None:
        self.every_n_epochs = every_n_epochs
        self.output_dir = output_dir

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if self.every_n_epochs < 1 or epoch % self.every_n_epochs or trainer.sanity_checking:
            return
        if not isinstance(pl_module, Generative) or not trainer.is_global_zero:
            return
        # beside the run's checkpoints, so nothing is left behind in the temp folder
        root = self.output_dir or Path(trainer.default_root_dir) / "samples"
        folder = root / f"epoch-{epoch:03d}"
        was_training = pl_module.training
        pl_module.eval()
        try:
            files = pl_module.generate(folder, epoch=epoch)
        finally:
            pl_module.train(was_training)
        log_artifact = getattr(trainer.logger, "log_artifact", None)
        if log_artifact is not None:
            for path in files:
                log_artifact(path, f"samples/epoch-{epoch:03d}")
