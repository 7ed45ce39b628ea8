"""Data that is missing is refused before a run opens: no FAILED run per attempt.

The ``prepare`` stage builds the configured data plugin and calls its ``prepare_data`` (find
the files, download the missing ones) in its ``before_run`` hook, which the engine calls
before it opens the MLflow run, so the files are looked for once, before the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir

from conftest import mlflow_runs, run_cli, store_uri
from pipelines import lifecycle, registry, runner
from pipelines.config import config_dir
from pipelines.context import RunContext, set_up_datamodule
from pipelines.tracking.tracker import Tracker
from plugins.data.vision import DigitsDataModule
from plugins.models.dense import MLP


def test_missing_dataset_is_refused_before_a_run_is_opened(workdir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty_data_dir"
    empty.mkdir()
    result = run_cli(["data=mnist"], cwd=workdir, env={"PIPELINES_DATA_DIR": str(empty)})
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output, result.output
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert str(empty / "mnist") in error and "data.download=true" in error, "one paragraph"
    assert "stage 0: prepare" not in result.output
    assert not (workdir / "mlruns").exists(), "no store, so no FAILED run to clutter the UI"


def test_a_sweep_refuses_missing_data_without_a_job_run(workdir: Path, tmp_path: Path) -> None:
    result = run_cli(["-m", "data=mnist", f"data.root={tmp_path / 'nowhere'}"], cwd=workdir)
    assert result.returncode != 0 and "Traceback" not in result.output, result.output
    assert "data.download=true" in result.output
    runs = mlflow_runs(store_uri(workdir))
    assert [run.data.tags.get("sweep") for run in runs] == ["true"], "only the sweep's parent"


class CountingDigits(DigitsDataModule):
    """Digits that count the calls of ``prepare_data`` and when they came."""

    events: list[str] = []

    def prepare_data(self) -> None:
        self.events.append("prepare_data")


def test_the_data_is_found_once_before_the_run_and_then_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    monkeypatch.setattr(CountingDigits, "events", events)
    build = registry.build

    def digits_that_count(kind: str, node: Any, **kwargs: Any) -> Any:
        if kind == "data":
            return CountingDigits(**{k: v for k, v in node.items() if k != "name"})
        return build(kind, node, **kwargs)

    logged: dict[str, float] = {}

    class Recording(Tracker):
        def log_metrics(self, metrics: Any, step: int | None = None) -> None:
            logged.update(metrics)

    def tracker_after_the_data(*args: Any, **kwargs: Any) -> Tracker:
        events.append("run opened")
        return Recording()

    monkeypatch.setattr(registry, "build", digits_that_count)
    monkeypatch.setattr(lifecycle, "_open_tracker", tracker_after_the_data)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=["pipeline.stages=[prepare]"])
    runner.run_pipeline(cfg, output_dir=tmp_path / "run")
    assert events == ["prepare_data", "run opened"]
    assert logged["time/before_run_seconds"] >= 0, "the time it took is still in the run"


def test_pipelines_that_build_no_data_find_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    build = registry.build

    def recording(kind: str, node: Any, **kwargs: Any) -> Any:
        built.append(kind)
        return build(kind, node, **kwargs)

    stages = [registry.build("stage", {"name": name}) for name in ("fit", "deepdream")]
    monkeypatch.setattr(registry, "build", recording)
    config = {"model": {"name": "mlp"}, "data": {"name": "digits"}}
    ctx = RunContext(config=config, tracker=Tracker(), output_dir=tmp_path)
    lifecycle._before_run(ctx, stages)
    assert built == [] and ctx.datamodule is None


def test_a_third_party_datamodule_without_prepare_data_is_still_set_up() -> None:
    class Bare:
        """No ``prepare_data``, and unhashable: nothing to find, nothing to remember."""

        __hash__ = None  # type: ignore[assignment]

        def setup(self, stage: str) -> None:
            self.stage = stage

    bare = Bare()
    datamodule = set_up_datamodule(bare, MLP)
    assert datamodule is bare and datamodule.stage == "fit"
