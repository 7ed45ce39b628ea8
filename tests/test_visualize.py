"""The ``visualize`` stage: PNGs written, valid and logged; a clear error without convs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from conftest import mlflow_runs, run_cli, store_uri
from pipelines import registry
from pipelines.context import RunContext
from pipelines.errors import PipelineError
from pipelines.tracking.tracker import Tracker
from plugins.stages.visualize import Visualize

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class RecordingTracker(Tracker):
    """Remembers every artifact logged, instead of sending it anywhere."""

    def __init__(self) -> None:
        self.artifacts: list[tuple[Path, str | None]] = []

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.artifacts.append((Path(path), artifact_path))


def _context(tmp_path: Path, model: dict[str, Any]) -> RunContext:
    datamodule = registry.build("data", {"name": "digits"})
    datamodule.setup()
    return RunContext(
        config={"seed": 0},
        tracker=RecordingTracker(),
        output_dir=tmp_path,
        datamodule=datamodule,
        model=registry.build("model", model, **datamodule.model_kwargs()),
    )


def test_stage_writes_and_logs_valid_pngs(tmp_path: Path) -> None:
    ctx = _context(tmp_path, {"name": "convnet", "filters": [8, 16]})
    ctx.model.train()
    Visualize(images=2, channels=4, filters=4, filter_steps=5).run(ctx)

    written = ctx.artifacts["visualize"]
    names = {path.name for path in written}
    # 2 images x 2 conv layers of activations, 2 layers of filter patterns, one Grad-CAM
    assert len(written) == 7
    assert "gradcam.png" in names
    assert sum(name.startswith("activations_img") for name in names) == 4
    assert sum(name.startswith("filters_") for name in names) == 2
    for path in written:
        assert path.parent == tmp_path / "visualize"
        assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    assert ctx.tracker.artifacts == [(path, "visualize") for path in written]
    # the stage leaves the model as it found it: training mode, no parameter gradients
    assert ctx.model.training
    assert all(p.grad is None for p in ctx.model.parameters())


def test_model_without_convolutions_is_a_clear_error(tmp_path: Path) -> None:
    ctx = _context(tmp_path, {"name": "mlp"})
    with pytest.raises(PipelineError, match=r"convolutional model.*model=convnet"):
        Visualize().run(ctx)
    assert ctx.tracker.artifacts == []


def test_cli_pipeline_logs_pngs_under_visualize(workdir: Path) -> None:
    result = run_cli(
        ["pipeline=classify_visualize", "model=convnet", "trainer.max_epochs=1"], cwd=workdir
    )
    assert result.returncode == 0, result.output
    uri = store_uri(workdir)
    (run,) = mlflow_runs(uri)
    assert run.info.status == "FINISHED"
    logged = [a.path for a in MlflowClient(uri).list_artifacts(run.info.run_id, "visualize")]
    assert "visualize/gradcam.png" in logged
    assert any(path.startswith("visualize/filters_") for path in logged)
    assert any(path.startswith("visualize/activations_img") for path in logged)
    assert all(path.endswith(".png") for path in logged)
