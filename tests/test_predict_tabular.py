"""predict on a tabular (housing) run: one value per row of new CSV tables.

The run logs ``data/features.json`` (feature columns in order, the training split's means and
standard deviations, the target's name and scaling); predict encodes new tables with it
alone, so the training file may be gone. Before, predict refused the run: the tabular plugin
had no ``encode_inputs``, and it could not read a table's rows as several inputs.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import FAST, mlflow_runs, run_cli, store_uri
from pipelines.errors import ConfigValueError, DataNotFoundError
from plugins.data.tabular import TabularRegressionDataModule

FEATURES = ["rooms", "age", "distance"]
#: the run's data settings (conf/data/housing.yaml's split_seed: 113)
TEST_FRACTION, SPLIT_SEED = 0.25, 113


def houses(rows: int, seed: int) -> np.ndarray:
    """(rows, 4): rooms, age, distance on very different scales, then a price."""
    rng = np.random.default_rng(seed)
    table = np.column_stack(
        [rng.uniform(2, 9, rows), rng.uniform(0, 100, rows), rng.uniform(1000, 9000, rows)]
    )
    price = 10 * table[:, 0] - 0.1 * table[:, 1] - 0.002 * table[:, 2] + rng.normal(0, 1, rows)
    return np.column_stack([table, price])


def write_csv(path: Path, header: list[str], table: np.ndarray) -> Path:
    lines = [",".join(header)] + [",".join(f"{value:.6f}" for value in row) for row in table]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def predictions(stdout: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(stdout)))


@pytest.fixture(scope="module")
def housing_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, np.ndarray]:
    """A regressor on a CSV given by a relative path, which is then deleted: (folder, run
    id, the training table). ``normalize_target``, so predict must also scale back."""
    workdir = tmp_path_factory.mktemp("predict_tabular")
    table = houses(40, seed=0)
    write_csv(workdir / "houses.csv", [*FEATURES, "price"], table)
    args = [
        "data=housing",
        "data.path=houses.csv",
        "data.target=price",
        f"data.test_fraction={TEST_FRACTION}",
        "data.normalize_target=true",
        "model=regressor",
        "pipeline.stages=[prepare,fit]",
        *FAST,
    ]
    result = run_cli(args, workdir)
    assert result.returncode == 0, result.output
    (run,) = mlflow_runs(store_uri(workdir))
    (workdir / "houses.csv").unlink()
    return workdir, run.info.run_id, table


def logged_encoding(workdir: Path, run_id: str, tmp_path: Path) -> dict:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=store_uri(workdir))
    return json.loads(
        Path(client.download_artifacts(run_id, "data/features.json", tmp_path)).read_text()
    )


def expected_values(workdir: Path, run_id: str, rows: np.ndarray, encoding: dict) -> np.ndarray:
    """The run's model (its logged checkpoint) on ``rows`` normalised with the logged
    statistics, in the target's units."""
    from pipelines.training.run_loader import fetch_run, model_of

    model = model_of(fetch_run(run_id, store_uri(workdir))).eval()
    inputs = (rows - np.asarray(encoding["mean"])) / np.asarray(encoding["std"])
    with torch.no_grad():
        outputs = model(torch.from_numpy(inputs.astype(np.float32))).flatten().double().numpy()
    return outputs * encoding["target_std"] + encoding["target_mean"]


def test_the_run_logs_its_feature_encoding(housing_run, tmp_path: Path) -> None:
    """Columns in order, the target, and the statistics of the training split only."""
    workdir, run_id, table = housing_run
    encoding = logged_encoding(workdir, run_id, tmp_path)
    order = np.arange(len(table))
    np.random.RandomState(SPLIT_SEED).shuffle(order)
    train = table[order[: int(len(table) * (1 - TEST_FRACTION))]]
    assert encoding["features"] == FEATURES and encoding["target"] == "price"
    assert encoding["mean"] == pytest.approx(train[:, :3].mean(0))
    assert encoding["std"] == pytest.approx(train[:, :3].std(0))
    assert encoding["target_mean"] == pytest.approx(train[:, 3].mean())
    assert encoding["target_std"] == pytest.approx(train[:, 3].std())


def test_predict_gives_one_value_per_row_without_the_training_file(
    housing_run, tmp_path: Path
) -> None:
    """Columns by name (another order, the target and an extra column ignored); a gzipped,
    whitespace-separated table of the same rows gives the same values."""
    workdir, run_id, _ = housing_run
    new = houses(5, seed=1)
    shuffled = tmp_path / "new_houses.csv"
    columns = ["distance", "id", "price", "rooms", "age"]
    ids = np.arange(5, dtype=float)[:, None]
    write_csv(shuffled, columns, np.hstack([new[:, 2:3], ids, new[:, 3:4], new[:, :2]]))
    packed = tmp_path / "more.txt.gz"
    lines = [" ".join(FEATURES)] + [" ".join(f"{v:.6f}" for v in row) for row in new[:3, :3]]
    with gzip.open(packed, "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    args = [run_id, str(shuffled), str(packed), "--tracking-uri", store_uri(workdir)]
    result = run_cli(module="pipelines.predict", args=args, cwd=tmp_path)
    assert result.returncode == 0, result.output
    rows = predictions(result.stdout)
    assert list(rows[0]) == ["file", "row", "prediction"]
    assert [(row["file"], row["row"]) for row in rows] == [
        *((str(shuffled), str(index)) for index in range(1, 6)),
        *((str(packed), str(index)) for index in range(1, 4)),
    ]
    values = np.array([float(row["prediction"]) for row in rows])
    encoding = logged_encoding(workdir, run_id, tmp_path)
    rounded = np.round(new[:, :3], 6)  # as written to the files
    expected = expected_values(workdir, run_id, rounded, encoding)
    assert values[:5] == pytest.approx(expected, rel=1e-5, abs=1e-5)
    assert values[5:] == pytest.approx(values[:3], rel=1e-6, abs=1e-6)


def test_a_missing_feature_column_is_one_paragraph(housing_run, tmp_path: Path) -> None:
    workdir, run_id, _ = housing_run
    table = write_csv(tmp_path / "no_age.csv", ["rooms", "distance"], houses(3, seed=2)[:, [0, 2]])
    args = [run_id, str(table), "--tracking-uri", store_uri(workdir)]
    result = run_cli(module="pipelines.predict", args=args, cwd=tmp_path)
    assert result.returncode == 2, result.output
    message = result.stderr.strip()
    assert "Traceback" not in message and "\n" not in message, message
    assert "no column(s) 'age'" in message and str(table) in message
    assert "'rooms', 'age', 'distance'" in message and "'price'" in message


def test_an_older_run_without_the_encoding_reads_its_data_again(
    housing_run, tmp_path: Path
) -> None:
    """A run logged before features.json: its data is set up again (data.path=... among
    predict's arguments points at it), and encodes the rows as the logged statistics do."""
    from mlflow import MlflowClient

    workdir, run_id, table = housing_run
    new = write_csv(tmp_path / "new.csv", FEATURES, houses(4, seed=3)[:, :3])
    args = [run_id, str(new), "--tracking-uri", store_uri(workdir)]
    result = run_cli(module="pipelines.predict", args=args, cwd=workdir)
    assert result.returncode == 0, result.output
    logged = [float(row["prediction"]) for row in predictions(result.stdout)]

    client = MlflowClient(tracking_uri=store_uri(workdir))
    artifacts = Path(client.get_run(run_id).info.artifact_uri.removeprefix("file://"))
    saved = tmp_path / "features.json"
    shutil.move(artifacts / "data" / "features.json", saved)
    try:
        result = run_cli(module="pipelines.predict", args=args, cwd=workdir)
        assert result.returncode == 2, result.output
        assert "data.path" in result.stderr and "Traceback" not in result.stderr
        training = write_csv(tmp_path / "moved.csv", [*FEATURES, "price"], table)
        moved = [run_id, str(new), f"data.path={training}", "--tracking-uri", store_uri(workdir)]
        result = run_cli(module="pipelines.predict", args=moved, cwd=workdir)
    finally:
        shutil.move(saved, artifacts / "data" / "features.json")
    assert result.returncode == 0, result.output
    again = [float(row["prediction"]) for row in predictions(result.stdout)]
    assert again == pytest.approx(logged, rel=1e-4, abs=1e-4)


def boston_like(path: Path, rows: int) -> np.ndarray:
    """A headerless 14-column table (the Boston layout: the target last)."""
    table = np.random.default_rng(0).normal(5, 3, size=(rows, 14))
    np.savetxt(path, table, delimiter=",", fmt="%.6f")
    return np.round(table, 6)


def test_a_headerless_run_takes_rows_by_position(tmp_path: Path) -> None:
    """Boston's layout has no header: new rows are its 13 features in order, or whole rows
    of that layout (the target then ignored); another width is refused."""
    table = boston_like(tmp_path / "housing.csv", rows=30)
    module = TabularRegressionDataModule(path=str(tmp_path / "housing.csv"))
    module.setup("fit")
    assert module.encoding is not None and not module.encoding.header
    whole = tmp_path / "whole.csv"
    np.savetxt(whole, table[:4], delimiter=" ", fmt="%.6f")
    features = tmp_path / "features.csv"
    np.savetxt(features, table[:4, :13], delimiter=",", fmt="%.6f")
    expected = (table[:4, :13] - module.mean) / module.std
    for path in (whole, features):
        encoded = module.encode_inputs([path])
        assert encoded.numpy() == pytest.approx(expected.astype(np.float32), rel=1e-5)
    assert module.encoded_rows == [(features, row) for row in range(1, 5)]
    narrow = tmp_path / "narrow.csv"
    np.savetxt(narrow, table[:2, :12], delimiter=",", fmt="%.6f")
    with pytest.raises(DataNotFoundError, match=r"no header row.*13 feature columns"):
        module.encode_inputs([narrow])


def test_missing_or_infinite_cells_in_new_rows_are_refused_naming_the_row(
    tmp_path: Path,
) -> None:
    path = write_csv(tmp_path / "h.csv", [*FEATURES, "price"], houses(20, seed=4))
    module = TabularRegressionDataModule(path=str(path), target="price")
    module.setup("fit")
    new = tmp_path / "new.csv"
    new.write_text("rooms,age,distance\n3,20,1500\n4,,2000\n5,30,inf\n")
    with pytest.raises(ConfigValueError, match=r"Missing values in .*column 'age', row\(s\) 2 "):
        module.encode_inputs([new])
    new.write_text("rooms,age,distance,price\n3,20,1500,\n5,30,inf,1\n")
    with pytest.raises(ConfigValueError, match=r"Infinite values .*column 'distance', row\(s\) 2 "):
        module.encode_inputs([new])


def test_evaluate_on_other_data_uses_the_runs_columns_and_statistics(tmp_path: Path) -> None:
    """`evaluate RUN data.path=other.csv` normalised the other table with its own rows'
    statistics, so the model saw inputs it was never trained on; the columns are the run's,
    by name, whatever their order in the other table."""
    from plugins.data.tabular import FeatureEncoding

    trained = TabularRegressionDataModule(
        path=str(write_csv(tmp_path / "a.csv", [*FEATURES, "price"], houses(40, seed=0))),
        target="price", normalize_target=True,
    )  # fmt: skip
    trained.setup("fit")
    assert trained.encoding is not None
    run = FeatureEncoding.load(trained.encoding.save(tmp_path / "features.json"))
    pricier = houses(40, seed=1) * np.array([2.0, 1.0, 1.0, 3.0])  # other rooms and prices
    shuffled = ["distance", "price", "rooms", "age"]
    other_csv = write_csv(tmp_path / "b.csv", shuffled, pricier[:, [2, 3, 0, 1]])
    other = TabularRegressionDataModule(path=str(other_csv), target="price", normalize_target=True)
    other.use_artifacts({"features.json": tmp_path / "features.json"})
    other.setup("fit")
    raw_x, _ = other.raw["test"]
    # the run's order (rooms 4-18, age 0-100, distance 1000-9000), not the file's
    assert raw_x[:, 0].max() < 20 and raw_x[:, 1].max() <= 100 and raw_x[:, 2].min() > 999
    inputs = other.test_dataloader()
    first = next(iter(inputs))[0].double().numpy()
    expected = (raw_x[: len(first)] - np.asarray(run.mean)) / np.asarray(run.std)
    assert first == pytest.approx(expected, abs=1e-5)
    assert (other.target_mean, other.target_std) == (run.target_mean, run.target_std)
    with pytest.raises(DataNotFoundError, match=r"(?s)lacks feature columns.*'age'"):
        partial = write_csv(
            tmp_path / "c.csv", ["rooms", "distance", "price"], pricier[:, [0, 2, 3]]
        )
        lacking = TabularRegressionDataModule(path=str(partial), target="price")
        lacking.use_artifacts({"features.json": tmp_path / "features.json"})
        lacking.setup("fit")


def test_a_long_table_is_predicted_in_batches_and_printed_at_float32_precision(
    housing_run: tuple[Path, str, np.ndarray], tmp_path: Path
) -> None:
    """Every row is predicted (1,024 rows a forward pass, not the whole table in one), the
    same rows alike in any batch (to float32's rounding: kernels differ by batch size), and
    printed as float32's shortest text (25.434982, not the float64 expansion
    25.434982299804688 of the same number)."""
    from pipelines.inference.predictor import PREDICT_BATCH_SIZE

    workdir, run_id, _ = housing_run
    count = 2 * PREDICT_BATCH_SIZE + 7  # three copies of 3 rows end the table
    table = np.tile(houses(3, seed=2)[:, :3], (count // 3 + 1, 1))[:count]
    path = write_csv(tmp_path / "many.csv", FEATURES, table)
    args = [run_id, str(path), "--tracking-uri", store_uri(workdir)]
    result = run_cli(module="pipelines.predict", args=args, cwd=tmp_path)
    assert result.returncode == 0, result.output
    printed = [row["prediction"] for row in predictions(result.stdout)]
    assert len(printed) == count
    values = [float(text) for text in printed]
    assert values[-3:] == pytest.approx(values[:3], rel=1e-6)
    in_second_batch = (PREDICT_BATCH_SIZE // 3 + 1) * 3  # a copy of row 0
    assert values[in_second_batch] == pytest.approx(values[0], rel=1e-6)
    for text in printed[:3]:
        assert text == str(np.float32(text)), "float32's shortest text"


def test_predict_runs_the_model_on_batches_of_at_most_the_batch_size() -> None:
    from pipelines.inference.predictor import PREDICT_BATCH_SIZE, predict_in_batches

    class Recorder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.sizes: list[int] = []

        def predict_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
            assert not torch.is_grad_enabled() and not self.training
            self.sizes.append(len(batch))
            return batch * 2

    model = Recorder()
    inputs = torch.arange(2 * PREDICT_BATCH_SIZE + 5, dtype=torch.float32)[:, None]
    outputs = predict_in_batches(model, inputs)
    assert model.sizes == [PREDICT_BATCH_SIZE, PREDICT_BATCH_SIZE, 5]
    assert torch.equal(outputs, inputs * 2)
    # a plugin's own input structure goes to the model whole, as it comes
    model.sizes.clear()
    pairs = (inputs, inputs)
    assert isinstance(predict_in_batches(model, pairs), tuple)
    assert model.sizes == [2], "one call with the pair, not slices of it"
