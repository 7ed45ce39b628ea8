"""Tabular regression data (book 3.6) and the K-fold stage (book 3.6.4)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from conftest import FAST, mlflow_runs, run_cli, store_uri
from pipelines.context import RunContext
from pipelines.errors import ConfigValueError, PipelineError
from pipelines.tracking.tracker import Tracker
from pipelines.training.run_loader import BEST_CHECKPOINT_TAG
from plugins.data.tabular import TabularRegressionDataModule
from plugins.stages.kfold import KFold

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
BOSTON = SHARED / "housing" / "housing.csv"


def boston_like(path: Path, rows: int = 506, sep: str = ",") -> Path:
    """A headerless 14-column table, the target (last) equal to the row number."""
    rng = np.random.default_rng(0)
    table = np.column_stack([rng.normal(5, 3, size=(rows, 13)), np.arange(rows, dtype=float)])
    np.savetxt(path, table, delimiter=sep, fmt="%.5f")
    return path


def test_headerless_csv_splits_like_keras_and_normalises_with_train_only(tmp_path: Path) -> None:
    module = TabularRegressionDataModule(path=str(boston_like(tmp_path / "h.csv")))
    module.setup("fit")
    (train_x, train_y), (test_x, test_y) = module.splits["train"], module.splits["test"]
    assert (len(train_y), len(test_y), len(module.splits["val"][1])) == (404, 102, 0)
    assert module.feature_names == [str(i) for i in range(13)] and module.target_name == "13"
    order = np.arange(506)
    np.random.RandomState(0).shuffle(order)  # split_seed defaults to seed (0)
    assert train_y.numpy() == pytest.approx(order[:404])  # targets in their own units
    assert train_x.double().mean(0).numpy() == pytest.approx(np.zeros(13), abs=1e-5)
    assert train_x.double().std(0, unbiased=False).numpy() == pytest.approx(np.ones(13), abs=1e-4)
    assert abs(test_x.double().mean()) > 1e-4  # test rows use the training statistics
    assert module.model_kwargs() == {
        "input_shape": (13,),
        "num_classes": 1,
        "task": "regression",
        "target_scale": 1.0,
    }
    assert module.val_dataloader() == []  # no validation rows: the book's final fit


def test_header_whitespace_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("a,b,price\n1,2,10\n2,3,20\n3,5,30\n4,4,40\n5,1,50\n")
    module = TabularRegressionDataModule(path=str(path), target="price", test_fraction=0.4)
    module.setup("fit")
    assert module.feature_names == ["a", "b"] and len(module.splits["test"][1]) == 2
    spaces = boston_like(tmp_path / "housing.data", rows=20, sep=" ")
    module = TabularRegressionDataModule(path=str(spaces), val_fraction=0.25, normalize_target=True)
    module.setup("fit")
    assert module.splits["train"][0].shape == (12, 13) and len(module.splits["val"][1]) == 4
    assert module.model_kwargs()["target_scale"] == pytest.approx(module.raw["train"][1].std())
    with pytest.raises(ConfigValueError, match="No column 'cost'"):
        TabularRegressionDataModule(path=str(path), target="cost").setup("fit")
    path.write_text("a,city,price\n1,Jena,10\n2,Bonn,20\n3,Kiel,30\n")
    with pytest.raises(ConfigValueError, match=r"Non-numeric column.*'city'"):
        TabularRegressionDataModule(path=str(path), target="price").setup("fit")


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz", ".zip"])
def test_compressed_table_reads_like_the_plain_one(tmp_path: Path, suffix: str) -> None:
    """The separator and header are sniffed from the text, not from the compressed bytes."""
    import bz2
    import gzip
    import lzma
    import zipfile

    text = "a,b,price\n1,2,10\n2,3,20\n3,5,30\n4,4,40\n5,1,50\n"
    path = tmp_path / f"h.csv{suffix}"
    if suffix == ".zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("h.csv", text)
    else:
        opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}[suffix]
        with opener(path, "wt") as handle:
            handle.write(text)
    module = TabularRegressionDataModule(path=str(path), target="price", test_fraction=0.4)
    module.setup("fit")
    assert module.feature_names == ["a", "b"]
    assert sorted(module.raw["train"][1].tolist() + module.raw["test"][1].tolist()) == [
        10.0, 20.0, 30.0, 40.0, 50.0,
    ]  # fmt: skip


def test_infinite_or_missing_cells_are_refused_naming_column_and_rows(tmp_path: Path) -> None:
    """An inf made every loss NaN, and the run was reported as diverged (the learning rate
    blamed); a blank was refused without saying where it is."""
    path = tmp_path / "h.csv"
    path.write_text("a,b,price\n1,2,10\n2,inf,20\n3,5,30\n4,-inf,40\n5,1,1e999\n6,2,60\n")
    with pytest.raises(ConfigValueError) as error:
        TabularRegressionDataModule(path=str(path), target="price").setup("fit")
    message = str(error.value)
    assert message.startswith(f"Infinite values in {path}: column 'b', row(s) 2, 4; ")
    assert "column 'price', row(s) 5 " in message and "column 'a'" not in message
    assert "learning rate" in message and "drop those rows" in message and "\n" not in message
    path.write_text("a,b,price\n1,2,10\n2,,20\n3,5,30\n4,nan,40\n")
    with pytest.raises(ConfigValueError, match=r"Missing values in .*column 'b', row\(s\) 2, 4 "):
        TabularRegressionDataModule(path=str(path), target="price").setup("fit")


def test_damaged_or_ambiguous_compressed_table_is_one_paragraph(tmp_path: Path) -> None:
    import lzma
    import zipfile

    damaged = tmp_path / "h.csv.xz"
    damaged.write_bytes(lzma.compress(b"a,b,price\n1,2,10\n" * 50)[:40] + b"garbage" * 9)
    with pytest.raises(PipelineError, match=r"(?s)h\.csv\.xz.*intact copy"):
        TabularRegressionDataModule(path=str(damaged), target="price").setup("fit")
    two = tmp_path / "h.csv.zip"
    with zipfile.ZipFile(two, "w") as archive:
        archive.writestr("a.csv", "a,price\n1,2\n")
        archive.writestr("b.csv", "a,price\n1,2\n")
    with pytest.raises(PipelineError, match=r"holds 2 files.*exactly one"):
        TabularRegressionDataModule(path=str(two), target="price").setup("fit")


@pytest.mark.skipif(not BOSTON.is_file(), reason="Boston housing not in ../shared/data")
def test_real_boston_csv_gives_keras_split() -> None:
    module = TabularRegressionDataModule(path=str(BOSTON), split_seed=113)
    module.setup("fit")
    train_x, train_y = module.raw["train"]
    assert train_x.shape == (404, 13) and len(module.raw["test"][1]) == 102
    # keras.datasets.boston_housing.load_data(): train_targets[:3], train_data[0][0]
    assert train_y[:3] == pytest.approx([15.2, 42.3, 50.0])
    assert train_x[0, 0] == pytest.approx(1.23247)


def test_diabetes_is_the_offline_default() -> None:
    module = TabularRegressionDataModule()
    module.setup("fit")
    assert module.model_kwargs()["input_shape"] == (10,)
    assert len(module.splits["train"][1]) == 353 and len(module.splits["test"][1]) == 89


def test_folds_validate_every_training_row_once_and_never_test(tmp_path: Path) -> None:
    module = TabularRegressionDataModule(path=str(boston_like(tmp_path / "h.csv", rows=50)))
    module.setup("fit")
    test_rows = set(module.raw["test"][1].tolist())
    seen: list[float] = []
    for train_loader, val_loader in module.folds(4, seed=1):
        train = torch.cat([y for _, y in train_loader]).tolist()
        val = torch.cat([y for _, y in val_loader]).tolist()
        assert not set(train) & set(val) and not (set(train) | set(val)) & test_rows
        assert len(train) + len(val) == 40
        features = torch.cat([x for x, _ in train_loader]).double()
        assert features.mean(0).numpy() == pytest.approx(np.zeros(13), abs=1e-5)
        seen += val
    assert sorted(seen) == sorted(module.raw["train"][1].tolist())


class RecordingTracker(Tracker):
    def __init__(self) -> None:
        self.children: list[tuple[str, RecordingTracker]] = []
        self.metrics: dict[str, list[float]] = {}
        self.status: str | None = None

    def log_metrics(self, metrics, step=None) -> None:
        for key, value in metrics.items():
            self.metrics.setdefault(key, []).append(float(value))

    def child(self, run_name, tags=None) -> Tracker:
        child = RecordingTracker()
        self.children.append((run_name, child))
        return child

    def finish(self, status: str) -> None:
        self.status = status


class Exploding:
    def __len__(self) -> int:
        return 1

    def __iter__(self):
        raise RuntimeError("broken fold")


class BrokenFolds:
    """Folds whose second training loader fails."""

    def __init__(self, module: TabularRegressionDataModule) -> None:
        self.module = module

    def model_kwargs(self):
        return self.module.model_kwargs()

    def folds(self, k, seed):
        for index, (train, val) in enumerate(self.module.folds(k, seed)):
            yield (Exploding() if index == 1 else train), val


def _ctx(tmp_path: Path, datamodule) -> RunContext:
    config = {
        "seed": 0,
        "model": {"name": "mlp", "hidden_units": [8]},
        "data": {"name": "housing"},
        "pipeline": {"name": "kfold"},
        "trainer": {"max_epochs": 2, "enable_progress_bar": False, "enable_model_summary": False},
        "tracking": {"enabled": False},
    }
    ctx = RunContext(config=config, tracker=RecordingTracker(), output_dir=tmp_path)
    ctx.datamodule = datamodule
    return ctx


def test_kfold_stage_logs_folds_and_fails_a_broken_fold(tmp_path: Path) -> None:
    module = TabularRegressionDataModule(path=str(boston_like(tmp_path / "h.csv", rows=60)))
    module.setup("fit")
    ctx = _ctx(tmp_path, module)
    KFold(k=3).run(ctx)
    tracker = ctx.tracker
    assert [name for name, _ in tracker.children] == ["fold-0", "fold-1", "fold-2"]
    assert all(child.status == "FINISHED" for _, child in tracker.children)
    assert all(len(child.metrics["val/mae"]) == 2 for _, child in tracker.children)
    finals = [child.metrics["val/mae"][-1] for _, child in tracker.children]
    assert ctx.metrics["kfold/val_mae_mean"] == pytest.approx(np.mean(finals))
    assert ctx.metrics["kfold/val_mae_std"] == pytest.approx(np.std(finals))
    assert len(tracker.metrics["kfold/val_mae"]) == 2  # the mean curve, one value per epoch

    ctx = _ctx(tmp_path, BrokenFolds(module))
    with pytest.raises(RuntimeError, match="broken fold"):
        KFold(k=3).run(ctx)
    assert [child.status for _, child in ctx.tracker.children] == ["FINISHED", "FAILED"]
    with pytest.raises(PipelineError, match="folds"):
        KFold().run(_ctx(tmp_path, object()))


def test_the_kfold_log_names_each_fold_as_its_run_and_counts_epochs_from_0(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    module = TabularRegressionDataModule(path=str(boston_like(tmp_path / "h.csv", rows=60)))
    module.setup("fit")
    ctx = _ctx(tmp_path, module)
    with caplog.at_level(logging.INFO, logger="plugins.stages.kfold"):
        KFold(k=2, max_epochs=3).run(ctx)
    names = [name for name, _ in ctx.tracker.children]
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("kfold: fold")]
    assert [line.split()[1] for line in logged] == names == ["fold-0", "fold-1"]
    assert all("(of fold-0..fold-1)" in line for line in logged), logged
    curve = ctx.tracker.metrics["kfold/val_mae"]  # one value per epoch, logged at step epoch
    assert ctx.metrics["kfold/best_epoch"] == int(np.argmin(curve))
    epochs = int(np.argmin(curve)) + 1
    assert f"train the final model for {epochs} epochs (trainer.max_epochs={epochs})" in (
        caplog.text
    )


def test_fold_names_and_the_best_epoch_count_from_0() -> None:
    from plugins.stages.kfold import best_epoch_of, fold_run_name

    assert [fold_run_name(index) for index in range(3)] == ["fold-0", "fold-1", "fold-2"]
    assert best_epoch_of(np.array([3.0, 1.0, 2.0])) == 1
    assert best_epoch_of(np.array([0.5])) == 0
    # an accuracy is best at its highest: always the lowest picked the worst epoch
    assert best_epoch_of(np.array([0.7, 0.9, 0.8]), "max") == 1
    assert best_epoch_of(np.array([0.7, 0.9, 0.8]), "min") == 0


def test_the_kfold_mode_is_min_or_max() -> None:
    from pipelines import registry
    from pipelines.errors import ConfigValueError

    _, kwargs = registry.check("stage", {"name": "kfold", "metric": "val/acc", "mode": "max"})
    assert kwargs["mode"] == "max"
    with pytest.raises(ConfigValueError, match=r"mode"):
        registry.check("stage", {"name": "kfold", "mode": "maximum"}, path="pipeline.stages.1")


def test_kfold_pipeline_end_to_end(workdir: Path, tmp_path: Path) -> None:
    path = boston_like(tmp_path / "housing.csv", rows=120)
    args = ["pipeline=kfold", "data=housing", f"data.path={path}", "model=regressor"]
    # two folds keep the test short; the stage's own default is the book's four
    result = run_cli([*args, "pipeline.stages.1.k=2", *FAST], cwd=workdir)
    assert result.returncode == 0, result.output
    assert "kfold/val_mae_mean" in result.stdout and "test/mae" in result.stdout
    assert "could not find the monitored key" not in result.output
    uri = store_uri(workdir)
    runs = mlflow_runs(uri)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    (parent,) = parents
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == ["fold-0", "fold-1"]
    assert len(runs) == 3
    # the log names each fold as its child run is named, so the UI finds it
    for name in ("fold-0", "fold-1"):
        assert f"kfold: {name} (of fold-0..fold-1) val/mae" in result.output, result.output
    assert "fold 1/2" not in result.output and "fold 2/2" not in result.output
    client = MlflowClient(uri)
    for child in children:
        assert child.info.status == "FINISHED" and "val/mae" in child.data.metrics
        assert len(client.get_metric_history(child.info.run_id, "val/mae")) == 2
    metrics = parent.data.metrics
    assert parent.info.status == "FINISHED"
    for key in ("kfold/val_mae_mean", "kfold/val_mae_std", "test/mae"):
        assert key in metrics, key
    assert len(client.get_metric_history(parent.info.run_id, "kfold/val_mae")) == 2
    finals = [c.data.metrics["val/mae"] for c in children]
    assert metrics["kfold/val_mae_mean"] == pytest.approx(np.mean(finals), rel=1e-5)
    # the best epoch is the step of the mean curve's lowest point, counted from 0
    curve = client.get_metric_history(parent.info.run_id, "kfold/val_mae")
    lowest = min(curve, key=lambda point: point.value).step
    assert metrics["kfold/best_epoch"] == lowest
    assert f"train the final model for {lowest + 1} epochs" in result.output
    # the final model, trained without validation: its final weights are the run's model,
    # which evaluate rebuilds (it said "logged no checkpoint") and the test stage tested
    assert parent.data.tags[BEST_CHECKPOINT_TAG] == "checkpoints/last.ckpt"
    evaluated = run_cli([parent.info.run_id], cwd=workdir, module="pipelines.evaluate")
    assert evaluated.returncode == 0, evaluated.output
    line = next(line for line in evaluated.stdout.splitlines() if "test/mae" in line)
    assert float(line.split()[1]) == pytest.approx(metrics["test/mae"], rel=1e-5)
