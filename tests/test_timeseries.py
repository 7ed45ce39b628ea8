"""Forecasting data, the naive baseline and the forecasters (2nd ed. ch. 10)."""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import FAST, mlflow_runs, run_cli, store_uri
from pipelines.errors import ConfigValueError, DataNotFoundError, PipelineError
from plugins.data.timeseries import TimeseriesDataModule, WindowBatches, fetch_series_file
from plugins.models.forecast import (
    Conv1dForecaster,
    DenseForecaster,
    GRUForecaster,
    HybridForecaster,
    RecurrentDropoutGRU,
)
from plugins.stages.forecast import NaiveBaseline

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
JENA = SHARED / "timeseries" / "jena_climate.csv"


def write_series(
    path: Path, values: np.ndarray, shuffle: bool = True, fmt: str = "%Y-%m-%d", **extra: list
) -> Path:
    """A CSV with a ``day`` time column, ``value`` and any ``extra`` columns, rows shuffled."""
    import pandas as pd

    days = pd.date_range("2020-01-01", periods=len(values), freq="D")
    frame = pd.DataFrame({"day": days.strftime(fmt), "value": values, **extra})
    if shuffle:  # the module must put the rows back in time order
        frame = frame.sample(frac=1.0, random_state=0)
    frame.to_csv(path, index=False)
    return path


def ramp_module(
    tmp_path: Path, rows: int = 40, slope: float = 1.0, **kwargs
) -> TimeseriesDataModule:
    values = slope * np.arange(rows, dtype=float)
    path = write_series(tmp_path / "ramp.csv", values, fmt="%d.%m.%Y")
    settings = {"sequence_length": 3, "sampling_rate": 2, "horizon": 2, "batch_size": 4}
    module = TimeseriesDataModule(
        path=str(path),
        time_column="day",
        time_format="%d.%m.%Y",
        target="value",
        **{**settings, **kwargs},
    )
    module.setup("fit")
    return module


def unnormalise(module: TimeseriesDataModule, inputs: torch.Tensor, targets: torch.Tensor):
    values = inputs.double().numpy() * module.std + module.mean
    return values, targets.double().numpy() * module.target_std + module.target_mean


def test_windows_match_the_books_definition_by_hand(tmp_path: Path) -> None:
    # values = row index; L=3 samples every r=2 rows, target h=2 samples after the end:
    # window at s -> rows s, s+2, s+4; target row s+4+2*2 = s+8 = s + 2*(3+2-1)
    module = ramp_module(tmp_path)
    assert (module.span, module.delay) == (4, 8)
    assert module.bounds == {"train": (0, 20), "val": (20, 30), "test": (30, 40)}
    inputs, targets = next(iter(module.val_dataloader()))
    values, target_values = unnormalise(module, inputs, targets)
    assert values[:, :, 0] == pytest.approx(np.array([[20, 22, 24], [21, 23, 25]]), abs=1e-4)
    assert target_values == pytest.approx([28, 29], abs=1e-4)
    assert module.model_kwargs() == {
        "input_shape": (3, 1),
        "num_classes": 1,
        "task": "regression",
        "target_scale": pytest.approx(np.arange(20).std()),
    }
    # every train window, each once, in a seeded order that changes per epoch
    firsts = []
    loader = module.train_dataloader()
    for batch_inputs, batch_targets in loader:
        batch, target_batch = unnormalise(module, batch_inputs, batch_targets)
        assert batch[:, :, 0] - batch[:, :1, 0] == pytest.approx(
            np.tile([0, 2, 4], (len(batch), 1)), abs=1e-4
        )
        assert target_batch == pytest.approx(batch[:, 0, 0] + 8, abs=1e-4)
        firsts += list(np.rint(batch[:, 0, 0]).astype(int))
    assert sorted(firsts) == list(range(12)) and firsts != sorted(firsts)
    second_epoch = unnormalise(module, *next(iter(loader)))[0]
    second = list(np.rint(second_epoch[:, 0, 0]).astype(int))
    assert second != firsts[: len(second)]


def test_window_relative_forecasts_the_change_from_the_last_row(tmp_path: Path) -> None:
    # a ramp of slope 3: relative to its last row a window is -12, -6, 0 (rows 4 apart in
    # time, 3 per row), and the target 4 rows later is +12; errors stay in data units
    module = ramp_module(tmp_path, slope=3.0, window_relative=True)
    inputs, targets = next(iter(module.val_dataloader()))
    scale = module.std[0]
    assert (inputs[:, :, 0].double().numpy() * scale) == pytest.approx(
        np.tile([-12.0, -6.0, 0.0], (len(inputs), 1)), abs=1e-3
    )
    assert (targets.double().numpy() * module.target_std) == pytest.approx(12.0, abs=1e-3)
    assert module.naive_forecast_mae("val") == pytest.approx(12.0)


def test_raw_targets_are_the_series_values_as_in_the_book(tmp_path: Path) -> None:
    # normalize_target=false: the model learns degrees (the book's code), inputs stay scaled
    module = ramp_module(tmp_path, slope=3.0, normalize_target=False)
    inputs, targets = next(iter(module.val_dataloader()))
    assert targets.double().numpy() == pytest.approx([84.0, 87.0])  # rows 28, 29
    assert module.model_kwargs()["target_scale"] == 1.0
    scale = 3.0 * np.arange(20).std()  # inputs still normalised by the training rows
    assert inputs[0, :, 0].double().numpy() == pytest.approx(
        (np.array([60.0, 66.0, 72.0]) - 28.5) / scale, abs=1e-4
    )
    assert module.naive_forecast_mae("val") == pytest.approx(12.0)  # 4 rows of 3


def test_the_book_forecasting_presets_train_on_raw_degrees() -> None:
    from hydra import compose, initialize_config_dir

    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base=None):
        for preset in ("book_jena_baseline_dense", "book_jena_gru"):
            cfg = compose("config", overrides=[f"experiment={preset}"])
            assert cfg.data.normalize_target is False, preset
        assert compose("config", overrides=["data=jena"]).data.normalize_target is True


def test_jena_settings_give_the_books_delay() -> None:
    module = TimeseriesDataModule(sequence_length=120, sampling_rate=6, horizon=24)
    assert module.delay == 6 * (120 + 24 - 1)  # the book's delay, in 10-minute rows
    assert module.delay - module.span == 144  # 24 hours after the window's last row


def test_chronological_split_has_no_overlap_and_no_leak(tmp_path: Path) -> None:
    module = ramp_module(tmp_path, rows=101, sequence_length=5, sampling_rate=3, horizon=4)
    previous_stop = 0
    for split in ("train", "val", "test"):
        first, stop = module.bounds[split]
        assert first == previous_stop and stop > first
        previous_stop = stop
        starts = module.window_starts(split)
        assert len(starts) == (stop - first) - module.delay
        # every row a window reads (inputs and target) lies inside its own split
        assert starts.min() >= first and starts.max() + module.delay < stop
    assert previous_stop == 101


def test_normalisation_uses_training_rows_only(tmp_path: Path) -> None:
    values = np.arange(40, dtype=float)
    values[20:] *= 1000  # wildly different validation and test periods
    path = write_series(tmp_path / "s.csv", values, other=list(np.linspace(0, 1, 40)))
    module = TimeseriesDataModule(
        path=str(path), time_column="day", target="value", sequence_length=2, horizon=1
    )
    module.setup("fit")
    assert module.feature_names == ["value", "other"]
    assert module.mean[0] == pytest.approx(np.arange(20).mean())
    assert module.std[0] == pytest.approx(np.arange(20).std())
    assert module.target_std == pytest.approx(np.arange(20).std())
    train = module.series[:20].double()
    assert train.mean(0).numpy() == pytest.approx([0, 0], abs=1e-5)
    assert module.series[39, 0].item() == pytest.approx((39000 - 9.5) / np.arange(20).std())


def test_other_data_is_scaled_as_the_run_scaled_its_own(tmp_path: Path) -> None:
    """`evaluate RUN data.path=other.csv` scaled the other series by its own rows, so the
    model was handed values it was never trained on; the run's normalisation and its
    features (by name, whatever the other file's column order) are used instead."""
    values = np.arange(40, dtype=float)
    trained = TimeseriesDataModule(
        path=str(write_series(tmp_path / "a.csv", values, other=list(np.linspace(0, 1, 40)))),
        time_column="day", target="value", sequence_length=2, horizon=1,
    )  # fmt: skip
    trained.setup("fit")
    logged = trained.artifacts()
    other_csv = write_series(tmp_path / "b.csv", values * 10, other=list(np.linspace(5, 9, 40)))
    other = TimeseriesDataModule(
        path=str(other_csv), time_column="day", sequence_length=2, horizon=1
    )  # no target set: the run's is used
    other.use_artifacts(logged)
    other.setup("fit")
    assert other.feature_names == ["value", "other"] and other.target_name == "value"
    assert other.mean == pytest.approx(trained.mean) and other.std == pytest.approx(trained.std)
    assert other.target_std == pytest.approx(trained.target_std)
    assert other.series[39, 0].item() == pytest.approx(
        (390 - trained.mean[0]) / trained.std[0], rel=1e-5
    )


def test_naive_baseline_on_a_ramp_is_slope_times_the_rows_ahead(tmp_path: Path) -> None:
    module = ramp_module(tmp_path, rows=60, slope=0.5, sampling_rate=2, horizon=3)
    # the target lies sampling_rate * horizon = 6 rows after the window's last row
    assert module.naive_forecast_mae("val") == pytest.approx(0.5 * 6)
    assert module.naive_forecast_mae("test") == pytest.approx(0.5 * 6)


def test_naive_baseline_stage_logs_and_reports(tmp_path: Path) -> None:
    from pipelines.context import RunContext
    from pipelines.tracking.tracker import Tracker

    ctx = RunContext(
        config={"data": {"name": "timeseries"}}, tracker=Tracker(), output_dir=tmp_path
    )
    ctx.datamodule = ramp_module(tmp_path, rows=60, slope=2.0)
    NaiveBaseline().run(ctx)
    assert ctx.metrics == {
        "val/naive_mae": pytest.approx(8.0),
        "test/naive_mae": pytest.approx(8.0),
    }
    ctx.datamodule = object()
    ctx.config["data"]["name"] = "digits"
    with pytest.raises(PipelineError, match="forecasting data"):
        NaiveBaseline().run(ctx)


def test_missing_values_are_interpolated_within_splits(tmp_path: Path, caplog) -> None:
    values = np.arange(40, dtype=float)
    values[[5, 6, 25]] = np.nan
    path = write_series(tmp_path / "gaps.csv", values, shuffle=False)
    module = TimeseriesDataModule(
        path=str(path), time_column="day", target="value", sequence_length=2
    )
    with caplog.at_level(logging.INFO, logger="plugins.data.timeseries"):
        module.setup("fit")
    assert "interpolated 3 missing value(s)" in caplog.text
    assert module.raw_target[[5, 6, 25]] == pytest.approx([5, 6, 25])


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_infinite_values_are_refused_naming_column_rows_and_times(tmp_path: Path, bad) -> None:
    """Not interpolated like a blank (a written value, most likely a computation gone wrong)
    and not left to make every loss NaN, which was blamed on the learning rate."""
    values = np.arange(40, dtype=float)
    values[[7, 30]] = bad
    path = write_series(tmp_path / "inf.csv", values, humidity=list(np.ones(40)))
    module = TimeseriesDataModule(
        path=str(path), time_column="day", target="value", sequence_length=2
    )
    with pytest.raises(ConfigValueError) as error:
        module.setup("fit")
    message = str(error.value)
    assert message.startswith(f"Infinite values in {path}: column 'value', row(s) ")
    # the file's rows are shuffled: the rows named are the file's, with their times
    import pandas as pd

    rows = np.flatnonzero(np.isinf(pd.read_csv(path)["value"].to_numpy())) + 1
    times = pd.read_csv(path)["day"].to_numpy()[rows - 1]
    assert sorted(times) == ["2020-01-08", "2020-01-31"]
    for row, time in zip(rows, times, strict=True):
        assert f"{row} (day {time})" in message
    assert "humidity" not in message and "learning rate" not in message
    assert "empty them to have them interpolated" in message and "\n" not in message


def test_infinite_values_in_a_column_left_out_are_ignored(tmp_path: Path) -> None:
    path = write_series(tmp_path / "s.csv", np.arange(40.0), ratio=[np.inf] * 40)
    module = TimeseriesDataModule(
        path=str(path), time_column="day", target="value", features=["value"], sequence_length=2
    )
    module.setup("fit")
    assert module.feature_names == ["value"]


def test_non_numeric_columns_are_named(tmp_path: Path) -> None:
    path = write_series(tmp_path / "s.csv", np.arange(40.0), city=["Jena"] * 40)
    module = TimeseriesDataModule(
        path=str(path), time_column="day", target="value", features=["value", "city"]
    )
    with pytest.raises(ConfigValueError, match=r"Non-numeric column.*'city'"):
        module.setup("fit")
    module = TimeseriesDataModule(
        path=str(path), time_column="day", target="value", sequence_length=2
    )
    module.setup("fit")  # by default non-numeric columns are simply not features
    assert module.feature_names == ["value"]
    with pytest.raises(ConfigValueError, match="No column 'temp'"):
        TimeseriesDataModule(path=str(path), time_column="day", target="temp").setup("fit")


def test_too_short_series_says_what_to_change(tmp_path: Path) -> None:
    with pytest.raises(ConfigValueError, match="no complete window"):
        ramp_module(tmp_path, rows=40, sequence_length=10)


def test_co2_embedded_default_loads_offline() -> None:
    module = TimeseriesDataModule(sequence_length=52, horizon=4, batch_size=64)
    module.setup("fit")
    assert module.target_name == "co2" and len(module.raw_target) == 2284
    assert not np.isnan(module.raw).any()
    kwargs = module.model_kwargs()
    assert kwargs["input_shape"] == (52, 1) and 3 < kwargs["target_scale"] < 15
    inputs, targets = next(iter(module.train_dataloader()))
    assert inputs.shape == (64, 52, 1) and targets.shape == (64,)
    assert 0 < module.naive_forecast_mae("test") < 3  # ppm


@pytest.mark.skipif(not JENA.is_file(), reason="real Jena rows not in ../shared/data")
def test_real_jena_rows() -> None:
    module = TimeseriesDataModule(
        path=str(JENA),
        time_column="Date Time",
        time_format="%d.%m.%Y %H:%M:%S",
        target="T (degC)",
        sequence_length=24,
        sampling_rate=6,
        horizon=24,
    )
    module.setup("fit")
    assert module.model_kwargs()["input_shape"] == (24, 11)  # 12 columns minus the time
    assert module.bounds == {"train": (0, 2000), "val": (2000, 3000), "test": (3000, 4000)}
    assert len(module.window_starts("val")) == 1000 - 6 * (24 + 24 - 1)
    assert 0.5 < module.naive_forecast_mae("val") < 10  # degrees Celsius, January 2009
    inputs, _ = next(iter(module.val_dataloader()))
    assert inputs.shape == (256, 24, 11)


def test_download_extracts_and_checks_rows(tmp_path: Path) -> None:
    csv = write_series(tmp_path / "series.csv", np.arange(10.0), shuffle=False)
    archive = tmp_path / "series.csv.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.write(csv, "series.csv")
    target = tmp_path / "data" / "series.csv"
    fetch_series_file(target, archive.as_uri(), None, expected_rows=10)
    assert target.read_text() == csv.read_text()
    target.unlink()
    with pytest.raises(DataNotFoundError, match="holds 10 data rows, not 11"):
        fetch_series_file(target, archive.as_uri(), None, expected_rows=11)
    assert not target.exists()


def test_window_batches_gather_lazily() -> None:
    series = torch.arange(30.0).reshape(15, 2)
    loader = WindowBatches(
        series, series[:, 0], torch.tensor([0, 3]), torch.tensor([0, 2]), 5, batch_size=8
    )
    inputs, targets = next(iter(loader))
    assert inputs.tolist() == [[[0, 1], [4, 5]], [[6, 7], [10, 11]]]
    assert targets.tolist() == [10, 16] and len(loader) == 1


@pytest.mark.parametrize(
    ("factory", "shape", "kwargs"),
    [
        (DenseForecaster, (120, 14), {}),
        (GRUForecaster, (12, 3), {"num_layers": 2, "recurrent_dropout": 0.5, "dropout": 0.5}),
        (Conv1dForecaster, (120, 14), {}),
        (HybridForecaster, (30, 3), {"recurrent_dropout": 0.25}),
    ],
)
def test_forecasters_map_windows_to_one_value(factory, shape, kwargs) -> None:
    model = factory(input_shape=shape, target_scale=2.0, **kwargs)
    windows = torch.randn(4, *shape)
    model.train()
    assert model(windows).shape == (4, 1)
    model.eval()
    assert model(windows).shape == (4, 1)
    assert model.task == "regression"


def test_recurrent_dropout_gru_is_torchs_gru_without_dropout() -> None:
    layer = RecurrentDropoutGRU(3, 5, recurrent_dropout=0.5)
    x = torch.randn(2, 7, 3)
    expected = layer.gru(x)[0]
    assert torch.allclose(layer.unrolled(x, torch.ones(2, 5)), expected, atol=1e-5)
    layer.eval()
    assert torch.equal(layer(x), expected)
    layer.train()
    assert not torch.allclose(layer(x), expected, atol=1e-3)


def test_conv_forecaster_rejects_too_short_windows() -> None:
    with pytest.raises(ConfigValueError, match="sequence_length"):
        Conv1dForecaster(input_shape=(20, 3))
    Conv1dForecaster(input_shape=(20, 3), padding="same")


def test_forecast_pipeline_end_to_end_on_co2(workdir: Path) -> None:
    result = run_cli(
        ["pipeline=forecast", "data=co2", "model=dense_forecaster", *FAST], cwd=workdir
    )
    assert result.returncode == 0, result.output
    assert "test/naive_mae" in result.stdout and "test/mae" in result.stdout
    (run,) = mlflow_runs(store_uri(workdir))
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    for key in ("val/naive_mae", "test/naive_mae", "val/mae", "test/mae"):
        assert key in metrics, key
    assert 0 < metrics["test/naive_mae"] < 3
    assert run.data.params["data.task"] == "regression"
    assert run.data.tags["pipeline"] == "forecast"
    # named after the preset chosen (co2), not the plugin behind it (timeseries)
    assert run.info.run_name.startswith("dense_forecaster-co2-")
    assert "dense_forecaster on co2 (forecast)" in result.stdout
    assert run.data.tags["data"] == "timeseries", "tags name the plugin"
    # the run keeps its normalisation, and evaluate rebuilds the series with it
    from mlflow import MlflowClient

    logged = MlflowClient(store_uri(workdir)).list_artifacts(run.info.run_id, "data")
    assert "data/scaling.json" in [item.path for item in logged]
    evaluated = run_cli(module="pipelines.evaluate", args=[run.info.run_id], cwd=workdir)
    assert evaluated.returncode == 0, evaluated.output
    assert f"(recorded {metrics['test/mae']:.4f})" in evaluated.stdout, evaluated.stdout
    # a forecast from the series' last year of weeks, as a person holds them: the run's
    # record alone encodes them (no series read), the answer in ppm near the last week's
    from pipelines.inference.predictor import Predictor
    from plugins.data.timeseries import load_embedded

    weeks = load_embedded("co2").interpolate().iloc[-60:]
    forecast = Predictor.from_run(run.info.run_id, store_uri(workdir)).predict(weeks)
    assert list(forecast.columns) == ["prediction"] and len(forecast) == 1
    assert abs(forecast["prediction"][0] - weeks["co2"].iloc[-1]) < 10


@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "window-relative"])
def test_a_window_of_raw_rows_is_encoded_as_the_windows_of_the_series(
    tmp_path: Path, relative: bool
) -> None:
    """``encode_values`` on the last rows of a DataFrame gives the test split's last window,
    and ``decode_outputs`` turns its target back into the series' units."""
    import pandas as pd

    module = ramp_module(tmp_path, slope=3.0, window_relative=relative)
    inputs, targets = module.val_dataloader().gather(
        torch.from_numpy(module.window_starts("val")[-1:])
    )
    start = int(module.window_starts("val")[-1])
    frame = pd.DataFrame({"value": 3.0 * np.arange(start, start + module.span + 1)})
    encoded = module.encode_values(frame)
    assert torch.allclose(encoded, inputs, atol=1e-6)
    future = module.decode_outputs(targets.reshape(1, 1))
    assert float(future) == pytest.approx(3.0 * (start + module.delay), abs=1e-3)
    with pytest.raises(ConfigValueError, match="spans 5 rows"):
        module.encode_values(frame.iloc[:3])
    with pytest.raises(ConfigValueError, match="lack the run's column"):
        module.encode_values(pd.DataFrame({"other": np.arange(9.0)}))
