"""Time series larger than the memory budget are streamed from disk (issue 23).

``data.in_memory=auto`` reads the series into memory when its used columns as float32 fit
``data.memory_budget``, else parses the CSV in chunks into memory-mapped float32 files and
draws the windows from there: the same windows, splits, normalisation and seeded order, so
the same metrics; ``evaluate`` and ``predict`` work on a streamed run, and bad data is one
paragraph naming the file, as on the in-memory path.
"""

from __future__ import annotations

import logging
import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import FAST, mlflow_runs, run_cli, start_until_first_checkpoint, store_uri
from pipelines.errors import ConfigValueError, PipelineError
from plugins.data import streamed_series
from plugins.data.timeseries import TimeseriesDataModule

SPLITS = ("train", "val", "test")


def series_csv(path: Path, rows: int = 103, gaps: bool = True, shuffle: bool = True) -> Path:
    """A ``day`` time column (rows shuffled), a random walk ``value``, a noisy ``other``
    and a text column; gaps at a split's start, in its middle, across chunks and at the
    end."""
    import pandas as pd

    rng = np.random.default_rng(0)
    value = np.cumsum(rng.normal(size=rows)) * 10 + 500
    other = rng.normal(size=rows)
    if gaps:
        value[[0, 1, 10, 11, 12, 50, 51, rows - 1]] = np.nan
        other[30:38] = np.nan
    days = pd.date_range("2020-01-01", periods=rows, freq="D").strftime("%Y-%m-%d")
    frame = pd.DataFrame({"day": days, "value": value, "other": other, "city": ["Jena"] * rows})
    if shuffle:  # both paths put the rows back in time order
        frame = frame.sample(frac=1.0, random_state=0)
    frame.to_csv(path, index=False)
    return path


def both_paths(path: Path, cache: Path, **kwargs) -> tuple[TimeseriesDataModule, ...]:
    settings = {
        "path": str(path),
        "time_column": "day",
        "target": "value",
        "sequence_length": 4,
        "sampling_rate": 2,
        "horizon": 3,
        "batch_size": 5,
        "cache_dir": str(cache),
        **kwargs,
    }
    in_memory = TimeseriesDataModule(in_memory=True, **settings)
    streamed = TimeseriesDataModule(in_memory=False, **settings)
    in_memory.setup("fit")
    streamed.setup("fit")
    return in_memory, streamed


@pytest.fixture
def small_chunks(monkeypatch) -> None:
    """7 rows a chunk: gaps, infinite values and shuffled rows span chunks."""
    monkeypatch.setattr(streamed_series, "CHUNK_ROWS", 7)


@pytest.mark.parametrize(
    ("relative", "normalize_target"),
    [(False, True), (True, True), (False, False)],
    ids=["absolute", "window-relative", "raw-target"],
)
def test_streamed_windows_are_the_in_memory_windows(
    tmp_path: Path, small_chunks, relative: bool, normalize_target: bool
) -> None:
    in_memory, streamed = both_paths(
        series_csv(tmp_path / "s.csv"),
        tmp_path / "cache",
        window_relative=relative,
        normalize_target=normalize_target,
    )
    assert (in_memory.data_path, streamed.data_path) == ("in_memory", "streamed")
    assert streamed.feature_names == in_memory.feature_names == ["value", "other"]
    assert streamed.bounds == in_memory.bounds
    assert streamed.mean == pytest.approx(in_memory.mean, rel=1e-12)
    assert streamed.std == pytest.approx(in_memory.std, rel=1e-12)
    assert streamed.target_mean == pytest.approx(in_memory.target_mean, rel=1e-12)
    assert streamed.target_std == pytest.approx(in_memory.target_std, rel=1e-12)
    kwargs, expected_kwargs = streamed.model_kwargs(), in_memory.model_kwargs()
    assert kwargs.pop("target_scale") == pytest.approx(expected_kwargs.pop("target_scale"))
    assert kwargs == expected_kwargs
    # the same numbers, gaps filled alike within each split
    assert np.allclose(np.asarray(streamed.series), in_memory.series.numpy(), atol=1e-6)
    assert np.allclose(np.asarray(streamed.raw_target), in_memory.raw_target, rtol=0, atol=0)
    for split in SPLITS:
        shuffle = split == "train"
        for epoch in (0, 1, 5):  # a resumed run: Lightning sets the epoch it starts at
            expected, loader = in_memory._batches(split, shuffle), streamed._batches(split, shuffle)
            expected.set_epoch(epoch)
            loader.sampler.set_epoch(epoch)
            batches, wanted = list(loader), list(expected)
            assert len(loader) == len(expected) == len(batches) == len(wanted)
            for (inputs, targets), (want_inputs, want_targets) in zip(batches, wanted, strict=True):
                assert inputs.dtype == torch.float32 and inputs.shape == want_inputs.shape
                assert torch.allclose(inputs, want_inputs, atol=1e-6)
                assert torch.allclose(targets, want_targets, atol=1e-6)
        assert streamed.naive_forecast_mae(split) == pytest.approx(
            in_memory.naive_forecast_mae(split), rel=1e-12
        )


def test_auto_takes_the_path_the_budget_gives_and_says_why(tmp_path: Path, caplog) -> None:
    path = series_csv(tmp_path / "s.csv", gaps=False)
    settings = dict(path=str(path), time_column="day", target="value", sequence_length=4)
    caplog.set_level(logging.INFO)
    module = TimeseriesDataModule(memory_budget=100, cache_dir=str(tmp_path / "c"), **settings)
    module.setup()
    assert module.data_path == "streamed"
    # 103 rows x 2 used columns (value, other: the text column is no feature) x 4 bytes
    assert (
        "timeseries: 103 rows x 2 columns as float32 would take 824 B, above "
        f"data.memory_budget 100 B: streaming windows from a memory-mapped copy in {tmp_path / 'c'}"
    ) in caplog.text
    caplog.clear()
    module = TimeseriesDataModule(memory_budget="1MB", **settings)
    module.setup()
    assert module.data_path == "in_memory" and isinstance(module.series, torch.Tensor)
    assert "824 B, within data.memory_budget 1 MB: reading the series into memory" in caplog.text
    module = TimeseriesDataModule(**settings)  # the default: a quarter of what is free
    module.setup()
    assert module.data_path == "in_memory"
    with pytest.raises(ConfigValueError, match=r"data\.in_memory must be auto, true or false"):
        TimeseriesDataModule(in_memory="sometimes")
    with pytest.raises(ConfigValueError, match=r"data\.memory_budget"):
        TimeseriesDataModule(memory_budget="lots")


def test_the_files_are_reused_and_replaced_when_the_csv_changes(tmp_path: Path, caplog) -> None:
    path = series_csv(tmp_path / "s.csv")
    cache = tmp_path / "cache"
    settings = dict(path=str(path), time_column="day", target="value", sequence_length=4)
    caplog.set_level(logging.INFO)
    first = TimeseriesDataModule(in_memory=False, cache_dir=str(cache), **settings)
    first.setup()
    (entry,) = [p for p in cache.iterdir()]
    assert "wrote the streamed copy" in caplog.text and "(cached)" not in caplog.text
    caplog.clear()
    again = TimeseriesDataModule(in_memory=False, cache_dir=str(cache), **settings)
    again.setup()
    assert "(cached)" in caplog.text and "wrote the streamed copy" not in caplog.text
    assert np.array_equal(np.asarray(again.series), np.asarray(first.series))
    assert again.mean.tolist() == first.mean.tolist()
    # another geometry reads the same files; other splits make others
    TimeseriesDataModule(
        in_memory=False, cache_dir=str(cache), **{**settings, "horizon": 3}
    ).setup()
    assert len(list(cache.iterdir())) == 1
    TimeseriesDataModule(
        in_memory=False, cache_dir=str(cache), train_fraction=0.6, **settings
    ).setup()
    assert len(list(cache.iterdir())) == 2
    # a changed file: its files are made anew, those of the old version removed
    series_csv(path, rows=120)
    changed = TimeseriesDataModule(in_memory=False, cache_dir=str(cache), **settings)
    changed.setup()
    assert changed.stream.rows == 120 and not entry.exists()
    assert len(list(cache.iterdir())) == 2
    assert not [p for p in cache.iterdir() if p.name.startswith(".")], "no half-built entry"


def test_other_data_is_streamed_with_the_runs_normalisation(tmp_path: Path) -> None:
    """``evaluate RUN data.path=other.csv``: the run's columns and statistics, on both
    paths; the run's own data, whose statistics are the run's, reads the run's files."""
    cache = tmp_path / "cache"
    _, trained = both_paths(series_csv(tmp_path / "a.csv"), cache)  # a streamed run
    logged = trained.artifacts()
    other_csv = tmp_path / "b.csv"
    series_csv(other_csv, rows=90, gaps=False)
    settings = dict(
        path=str(other_csv), time_column="day", sequence_length=4, sampling_rate=2, horizon=3
    )
    modules = []
    for in_memory in (True, False):
        module = TimeseriesDataModule(in_memory=in_memory, cache_dir=str(cache), **settings)
        module.use_artifacts(logged)
        module.setup()
        modules.append(module)
    in_memory, streamed = modules
    assert streamed.mean.tolist() == trained.mean.tolist() == in_memory.mean.tolist()
    assert np.allclose(np.asarray(streamed.series), in_memory.series.numpy(), atol=1e-6)
    entries = len(list(cache.iterdir()))
    own = TimeseriesDataModule(
        in_memory=False, cache_dir=str(cache), path=str(tmp_path / "a.csv"), time_column="day",
        target="value", sequence_length=4, sampling_rate=2, horizon=3,
    )  # fmt: skip
    own.use_artifacts(logged)
    own.setup()
    assert len(list(cache.iterdir())) == entries, "the run's files were read, none made"


def test_a_header_without_rows_says_the_file_has_no_rows(tmp_path: Path) -> None:
    """It was called non-numeric (issue 24): with no rows pandas reads every column as text."""
    path = tmp_path / "empty.csv"
    path.write_text("day,value,other\n")
    for in_memory in (True, False):
        module = TimeseriesDataModule(
            path=str(path), time_column="day", target="value", in_memory=in_memory,
            cache_dir=str(tmp_path / "cache"),
        )  # fmt: skip
        with pytest.raises(PipelineError) as error:
            module.setup()
        message = str(error.value)
        assert message.startswith(f"{path} has no data rows (its header: day, value, other)")
        assert "Non-numeric" not in message and "data.path" in message and "\n" not in message


def _bad_files(folder: Path) -> dict[str, tuple[Path, dict]]:
    """Files with what streaming meets only in a late chunk."""
    import pandas as pd

    made = {}
    path = series_csv(folder / "inf.csv", rows=60, gaps=False)
    frame = pd.read_csv(path)
    frame.loc[[3, 40, 41, 42, 43, 44, 59], "value"] = np.inf
    frame.to_csv(path, index=False)
    made["infinite"] = (path, {})
    path = series_csv(folder / "text.csv", rows=60, gaps=False)
    frame = pd.read_csv(path).astype({"other": object})
    frame.loc[50, "other"] = "n/a?"
    frame.to_csv(path, index=False)
    made["non-numeric"] = (path, {"features": ["value", "other"]})
    path = series_csv(folder / "ragged.csv", rows=60, gaps=False)
    lines = path.read_text().splitlines()
    lines[45] += ",1,2"
    path.write_text("\n".join(lines) + "\n")
    made["ragged"] = (path, {})
    path = series_csv(folder / "times.csv", rows=60, gaps=False, shuffle=False)
    lines = path.read_text().splitlines()
    lines[50] = "not a day" + lines[50][10:]
    path.write_text("\n".join(lines) + "\n")
    made["time"] = (path, {"time_format": "%Y-%m-%d"})
    path = series_csv(folder / "hole.csv", rows=60, gaps=False, shuffle=False)
    frame = pd.read_csv(path)
    frame.loc[45:, "other"] = np.nan  # nothing in the test split
    frame.to_csv(path, index=False)
    made["no value in a split"] = (path, {})
    made["missing"] = (folder / "nowhere.csv", {})
    return made


def test_bad_data_while_streaming_is_told_as_in_memory(tmp_path: Path, small_chunks) -> None:
    for name, (path, extra) in _bad_files(tmp_path).items():
        messages = []
        for in_memory in (True, False):
            module = TimeseriesDataModule(
                path=str(path), time_column="day", target="value", sequence_length=2,
                in_memory=in_memory, cache_dir=str(tmp_path / "cache"), **extra,
            )  # fmt: skip
            with pytest.raises(PipelineError) as error:
                module.setup()
            messages.append(str(error.value))
        in_memory_message, streamed_message = messages
        assert streamed_message == in_memory_message, name
        assert str(path) in streamed_message and "\n" not in streamed_message, name
    assert not [p for p in (tmp_path / "cache").iterdir()], "no files left by failed builds"


def test_the_infinite_rows_named_are_the_files_rows(tmp_path: Path, small_chunks) -> None:
    path = _bad_files(tmp_path)["infinite"][0]
    module = TimeseriesDataModule(
        path=str(path), time_column="day", target="value", in_memory=False,
        cache_dir=str(tmp_path / "cache"),
    )  # fmt: skip
    with pytest.raises(
        ConfigValueError, match=r"row\(s\) 4 \(day 20\d\d-\d\d-\d\d\), .* and 2 more"
    ):
        module.setup()


def _forecast_args(path: Path, *extra: str) -> list[str]:
    return [
        "pipeline=forecast",
        "data=timeseries",
        f"data.path={path}",
        "data.time_column=day",
        "data.target=value",
        "data.sequence_length=8",
        "data.sampling_rate=2",
        "data.horizon=3",
        "data.batch_size=16",
        "model=dense_forecaster",
        "seed=3",
        *extra,
    ]


def test_training_on_either_path_gives_the_same_metrics(tmp_path: Path) -> None:
    """Seeded weights, the same batches in the same order: the same numbers."""
    import lightning as L

    from conftest import quiet_trainer
    from plugins.models.forecast import DenseForecaster

    results = []
    for module in both_paths(series_csv(tmp_path / "s.csv", rows=300), tmp_path / "cache"):
        L.seed_everything(3, verbose=False)
        model = DenseForecaster(**module.model_kwargs())
        trainer = quiet_trainer(max_epochs=3)
        trainer.fit(model, datamodule=module)
        fitted = {key: float(value) for key, value in trainer.callback_metrics.items()}
        (tested,) = trainer.test(model, datamodule=module, verbose=False)
        results.append({**fitted, **tested})
    in_memory, streamed = results
    assert streamed.keys() == in_memory.keys() and "test/mae" in streamed
    for key, value in in_memory.items():
        assert streamed[key] == pytest.approx(value, abs=1e-5), key


@pytest.fixture(scope="module")
def streamed_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object, str]:
    """A CSV forecast streamed, its budget 1 KB: (the CSV, the run's folder, run, output)."""
    base = tmp_path_factory.mktemp("streamed_series")
    path = series_csv(base / "series.csv", rows=400)
    workdir = base / "streamed"
    workdir.mkdir()
    result = run_cli(_forecast_args(path, *FAST, "data.memory_budget=1KB"), workdir)
    assert result.returncode == 0, result.output
    (run,) = mlflow_runs(store_uri(workdir))
    return path, workdir, run, result.output


def test_a_streamed_run_says_so_and_keeps_its_files_in_the_data_cache(streamed_run) -> None:
    _, workdir, run, output = streamed_run
    assert run.info.status == "FINISHED"
    assert run.data.tags["pipelines.data_path"] == "streamed"
    line = re.search(r"timeseries: 400 rows x 2 columns as float32 would take 3.2 KB, .*", output)
    assert line and "above data.memory_budget 1 KB: streaming windows" in line[0], output
    assert "test/mae" in run.data.metrics and "test/naive_mae" in run.data.metrics
    # the files live in the run's data cache (paths.data_dir), not in the repository
    assert any((workdir / "data_cache" / "timeseries_cache").iterdir())


@pytest.mark.slow
def test_a_streamed_run_gets_the_in_memory_runs_metrics(streamed_run) -> None:
    path, workdir, streamed, _ = streamed_run
    memory_dir = workdir.parent / "in_memory"
    memory_dir.mkdir()
    result = run_cli(_forecast_args(path, *FAST, "data.in_memory=true"), memory_dir)
    assert result.returncode == 0, result.output
    assert "data.in_memory=true: reading the series into memory" in result.output
    (in_memory,) = mlflow_runs(store_uri(memory_dir))
    assert in_memory.data.tags["pipelines.data_path"] == "in_memory"
    for key in ("test/mae", "test/loss", "val/mae", "train/loss", "test/naive_mae"):
        assert streamed.data.metrics[key] == pytest.approx(in_memory.data.metrics[key], abs=1e-5)


def test_evaluate_and_predict_a_streamed_run(streamed_run) -> None:
    import pandas as pd

    from pipelines.inference.predictor import Predictor

    _, workdir, run, _ = streamed_run
    result = run_cli(module="pipelines.evaluate", args=[run.info.run_id], cwd=workdir)
    assert result.returncode == 0, result.output
    found = re.search(r"test/mae\s+([\d.]+)\s+\(recorded ([\d.]+)\)", result.stdout)
    assert found and found[1] == found[2], result.output
    # a forecast from rows a person holds: the run's record alone, no series read
    rows = pd.DataFrame({"value": np.linspace(480, 500, 15), "other": np.zeros(15)})
    forecast = Predictor.from_run(run.info.run_id, store_uri(workdir)).predict(rows)
    assert len(forecast) == 1 and 300 < forecast["prediction"][0] < 700


@pytest.mark.slow
def test_a_killed_streamed_run_resumes_as_if_never_stopped(tmp_path: Path) -> None:
    path = series_csv(tmp_path / "series.csv", rows=3000)
    args = _forecast_args(path, "trainer.max_epochs=8", "data.in_memory=false")
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir(), killed.mkdir()
    assert run_cli(args, whole).returncode == 0
    (reference,) = mlflow_runs(store_uri(whole))
    proc = start_until_first_checkpoint(killed, *args)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (stopped,) = mlflow_runs(store_uri(killed))
    assert stopped.info.status == "RUNNING", "killed mid-training"
    resumed = run_cli(module="pipelines.resume", args=[stopped.info.run_id], cwd=killed)
    assert resumed.returncode == 0, resumed.output
    (run,) = mlflow_runs(store_uri(killed))
    assert run.info.status == "FINISHED" and run.data.tags["pipelines.data_path"] == "streamed"
    for key in ("test/mae", "best/val_loss"):
        assert run.data.metrics[key] == pytest.approx(reference.data.metrics[key], rel=1e-5)


def test_under_ddp_each_rank_trains_on_its_shard_on_either_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plugins.data import timeseries

    in_memory, streamed = both_paths(series_csv(tmp_path / "s.csv"), tmp_path / "c")
    whole = torch.cat([targets for _, targets in in_memory.train_dataloader()])
    shards = {}
    for module, name in ((in_memory, timeseries), (streamed, streamed_series)):
        per_rank = []
        for rank in (0, 1):
            monkeypatch.setattr(name, "distributed_shard", lambda split, rank=rank: (rank, 2))
            loader = module.train_dataloader()
            per_rank.append(torch.cat([targets for _, targets in loader]))
        shards[name.__name__] = per_rank
    (memory_shards, streamed_shards) = shards.values()
    for mine, theirs in zip(memory_shards, streamed_shards, strict=True):
        assert torch.equal(mine, theirs), "the same shard on either path"
    assert len(memory_shards[0]) == len(memory_shards[1]) == -(-len(whole) // 2)
    together = torch.cat(memory_shards)
    assert set(together.tolist()) == set(whole.tolist()), "every window on some rank"
    assert len(together) - len(whole) <= 1, "once each, but for the padding"


def test_a_time_format_guessed_from_the_first_rows_holds_for_every_chunk(
    tmp_path: Path, small_chunks: None
) -> None:
    """pandas guesses a format from the first time it reads; a chunk guessing again from
    its own first time would read ``13/01/2020`` day-first where the file is month-first."""
    import pandas as pd

    days = [f"01/{day:02d}/2020" for day in range(1, 22)]
    days[7] = "13/01/2020"  # the second chunk's first time, day-first
    frame = pd.DataFrame({"day": days, "value": np.arange(21.0), "other": np.ones(21)})
    frame.to_csv(tmp_path / "s.csv", index=False)
    for in_memory in (True, False):
        module = TimeseriesDataModule(
            path=str(tmp_path / "s.csv"),
            time_column="day",
            target="value",
            sequence_length=2,
            batch_size=4,
            cache_dir=str(tmp_path / "c"),
            in_memory=in_memory,
        )
        with pytest.raises(ConfigValueError, match="13/01/2020"):
            module.setup("fit")
