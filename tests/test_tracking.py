"""The MLflow tracker writes training metrics in the background, in order, losing none."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from conftest import store_uri
from pipelines.tracking.store import TrackingSettings
from pipelines.tracking.tracker import MlflowTracker


class _GatedClient:
    """Forwards to the real client; ``log_batch`` of metrics waits until the gate opens."""

    def __init__(self, client: Any, fail: bool = False) -> None:
        self.client = client
        self.gate = threading.Event()
        self.fail = fail

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def log_batch(self, run_id: str, metrics: Any = (), **kwargs: Any) -> None:
        if metrics:
            self.gate.wait(timeout=30)
            if self.fail:
                raise RuntimeError("the store went away")
        self.client.log_batch(run_id, metrics=metrics, **kwargs)


def _tracker(tmp_path: Path, fail: bool = False) -> tuple[MlflowTracker, _GatedClient]:
    tracker = MlflowTracker(TrackingSettings(uri=store_uri(tmp_path)), "async")
    gated = _GatedClient(tracker.client, fail=fail)
    tracker.client = gated
    return tracker, gated


def test_training_flushes_do_not_wait_for_the_store_and_finish_writes_them_all(
    tmp_path: Path,
) -> None:
    tracker, gated = _tracker(tmp_path)
    for epoch in range(3):
        tracker.log_metrics({"val/loss": 1.0 / (epoch + 1)}, step=epoch)
        tracker.flush(wait=False)  # returns while the store is still blocked
    client = MlflowClient(store_uri(tmp_path))
    assert client.get_metric_history(tracker.run_id, "val/loss") == []
    gated.gate.set()
    tracker.finish("FINISHED")
    history = client.get_metric_history(tracker.run_id, "val/loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.5), (2, 1.0 / 3)]
    assert client.get_run(tracker.run_id).info.status == "FINISHED"


def test_a_failed_background_write_is_raised_not_lost(tmp_path: Path) -> None:
    tracker, gated = _tracker(tmp_path, fail=True)
    tracker.log_metrics({"val/loss": 1.0}, step=0)
    tracker.flush(wait=False)
    gated.gate.set()
    with pytest.raises(RuntimeError, match="the store went away"):
        tracker.flush()  # a waiting flush (or finish) reports it
    tracker.finish("FAILED")  # the run is still ended
    client = MlflowClient(store_uri(tmp_path))
    assert client.get_run(tracker.run_id).info.status == "FAILED"


def test_a_run_whose_last_metrics_were_not_written_is_not_finished(tmp_path: Path) -> None:
    tracker, gated = _tracker(tmp_path, fail=True)
    tracker.log_metrics({"val/loss": 1.0}, step=0)
    tracker.flush(wait=False)  # the last epoch's metrics, handed over at the end of fit
    gated.gate.set()
    with pytest.raises(RuntimeError, match="the store went away"):
        tracker.finish("FINISHED")
    client = MlflowClient(store_uri(tmp_path))
    assert client.get_run(tracker.run_id).info.status == "FAILED"
