"""Lightning's hardware lines and tips stay out of a run's output, in every job of a sweep."""

from __future__ import annotations

import logging

import pytest


def test_no_hardware_lines_once_the_standalone_package_is_imported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Logging a model imports ``pytorch_lightning`` (``mlflow.pytorch`` does), whose
    Trainers report under that package's logger names: from a sweep's second job on, every
    Trainer printed "GPU available: False" and a litlogger tip again."""
    pl = pytest.importorskip("pytorch_lightning")
    from pipelines.training.trainer import quiet_lightning

    quiet_lightning()
    with caplog.at_level(logging.INFO):
        pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False)
    assert "GPU available" not in caplog.text
