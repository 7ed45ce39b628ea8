"""A Lightning logger that forwards to our :class:`~pipelines.tracking.tracker.Tracker`.

Lightning's own ``MLFlowLogger`` creates and terminates runs itself (it marks the run
FINISHED at the end of ``fit``, before ``test`` has run) and writes every call straight to
the store. Ours writes into the run the engine opened, buffered, and never ends it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from pipelines.tracking.tracker import Tracker


class TrackerLogger(Logger):
    """Lightning ``Logger`` interface over a :class:`Tracker` (rank 0 only)."""

    def __init__(self, tracker: Tracker, prefix: str = "") -> None:
        """``prefix`` (e.g. ``"fine_tuning/"``) keeps the metrics of several training stages
        of one run apart: each stage's ``val/loss`` curve stays visible on its own."""
        super().__init__()
        self._tracker = tracker
        self._prefix = prefix

    @property
    def name(self) -> str:
        return "pipelines"

    @property
    def version(self) -> str:
        return self._tracker.run_id or "untracked"

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """No-op: the engine logs the whole resolved config as params itself."""

    def follow(self, trainer: Any) -> None:
        """Record metrics at ``trainer.global_step`` (optimizer steps). Lightning passes the
        count of training calls, which ``speed.steps_per_call`` makes 32x smaller than the
        optimizer steps; the two are equal otherwise, so every run shares one x-axis."""
        self._trainer = trainer

    _trainer: Any = None

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self._trainer is not None:
            step = self._trainer.global_step
        if self._prefix:
            metrics = {f"{self._prefix}{key}": value for key, value in metrics.items()}
        self._tracker.log_metrics(metrics, step=step)

    @rank_zero_only
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """A file into the run (e.g. the samples a generative model draws each epoch)."""
        self._tracker.log_artifact(path, artifact_path)

    @rank_zero_only
    def wait_for_writes(self) -> None:
        """Return once every metric handed over so far is in the store (a failed write
        raises here); the checkpoint a resume starts from waits for this."""
        self._tracker.flush(wait=True)

    @rank_zero_only
    def save(self) -> None:
        self._tracker.flush(wait=False)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self._tracker.flush(wait=False)
