"""Tabular regression (book 3.6 / 2nd ed. 4.3: Boston housing prices) with K-fold folds.

A CSV of numeric feature columns and a numeric target: the Boston layout (no header, 13
features then MEDV, the median price in $1000s, last; comma- or whitespace-separated, so
UCI's ``housing.data`` reads too), or a header row with ``target: <column name>``.
``path: null`` uses scikit-learn's bundled diabetes data (442 patients, 10 features, a
disease-progression score), no download.

The test split is cut first, as Keras' ``boston_housing.load_data`` does: the rows shuffled
with ``numpy.random.RandomState(split_seed)``, the first ``int(n * (1 - test_fraction))``
kept to train on (Boston: 404 / 102 with ``test_fraction=0.2``). ``val_fraction`` (default
0, the book's set-up) holds back the end of the training rows for validation; with none,
the ``fit`` stage trains on every training row, as the book's final model does.

Features are normalised with the training rows' mean and standard deviation only. Targets
stay in their own units (the book's choice, so MAE reads in $1000s); ``normalize_target:
true`` scales them too and passes their standard deviation to the model as
``target_scale``, so the reported MAE keeps the data's units.

What encoding a row needs is logged with the run as ``data/features.json`` (the feature
columns in order, their training means and standard deviations, the target's name and
scaling: :class:`FeatureEncoding`). ``python -m pipelines.predict RUN_ID new.csv`` reads it
back (:meth:`TabularRegressionDataModule.prepare_to_encode`), so new tables are encoded as
the training rows were, without the training file: their columns are picked by name (the
target, if there, is ignored) and normalised with the run's statistics, one prediction per
row, in the target's own units.

K-fold contract (the ``kfold`` stage): :meth:`TabularRegressionDataModule.folds` yields one
``(train_loader, val_loader)`` pair per fold over the training rows (train + val merged,
the test rows never), each row validated exactly once, the features of every fold
normalised with that fold's own training rows.
"""

from __future__ import annotations

import bz2
import gzip
import json
import logging
import lzma
import math
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from pipelines.api import (
    BatchSize,
    ConfigValueError,
    DataNotFoundError,
    Seed,
    TensorBatches,
    folder_given_error,
    no_validation_data,
    reading_data_file,
)

log = logging.getLogger(__name__)

#: the run artifact (under ``data/``) that holds a run's :class:`FeatureEncoding`
FEATURES_ARTIFACT = "features.json"
#: what to do about a damaged one
_DAMAGED_ENCODING_FIX = (
    "Train the run again (`python -m pipelines.rerun RUN_ID` logs a new one), or delete that "
    "artifact so that predict reads the run's training table instead (data.path=...)."
)


@dataclass(frozen=True)
class FeatureEncoding:
    """How a table's rows become the model's inputs, and its outputs the target's values:
    what ``predict`` needs of a run, logged as ``data/features.json`` so that the training
    file is not needed.

    ``features``: the feature columns in the model's input order; ``mean``/``std``: their
    training rows' statistics (the normalisation); ``target``: the target column (ignored
    in new tables); ``target_mean``/``target_std``: the target's scaling (0 and 1 unless
    ``normalize_target``), undone on the outputs; ``header``: whether the training table
    had a header row (without one, the column names are positions: ``"0"``, ``"1"``...).
    """

    features: list[str]
    mean: list[float]
    std: list[float]
    target: str
    target_mean: float = 0.0
    target_std: float = 1.0
    header: bool = True

    def save(self, path: Path) -> Path:
        """Write it as JSON (floats round-trip exactly: new rows get the same inputs)."""
        path.write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> FeatureEncoding:
        """Read and check a logged encoding: a damaged one would encode rows wrongly, in
        silence, so anything odd is a :class:`ConfigValueError` naming the artifact."""
        try:
            fields = json.loads(path.read_text(encoding="utf-8"))
            encoding = cls(**fields)
            numbers = [*encoding.mean, *encoding.std, encoding.target_mean, encoding.target_std]
            valid = (
                len(encoding.features) == len(encoding.mean) == len(encoding.std) > 0
                and all(isinstance(name, str) for name in [*encoding.features, encoding.target])
                and all(isinstance(x, (int, float)) and math.isfinite(x) for x in numbers)
                and all(std > 0 for std in [*encoding.std, encoding.target_std])
            )
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigValueError(
                f"The run's feature encoding (artifact data/{FEATURES_ARTIFACT}) cannot be "
                f"read ({exc}), so new rows cannot be encoded as the run encoded them. "
                f"{_DAMAGED_ENCODING_FIX}"
            ) from None
        if not valid:
            raise ConfigValueError(
                f"The run's artifact data/{FEATURES_ARTIFACT} is not a feature encoding (one "
                "name, finite mean and positive standard deviation per feature column, and "
                "the target's name), so new rows cannot be encoded as the run encoded them. "
                f"{_DAMAGED_ENCODING_FIX}"
            )
        return encoding


class TabularRegressionDataModule(L.LightningDataModule):
    """Numeric features -> one numeric target, as in-memory tensors batched by index."""

    #: what :meth:`encode_inputs` reads (``predict`` names it when a file is not that)
    predict_inputs = (
        "CSV tables (comma- or whitespace-separated, may be compressed) holding the run's "
        "feature columns, one row per prediction"
    )

    def __init__(
        self,
        path: str | None = None,
        target: str | None = None,
        header: bool | None = None,
        test_fraction: float = 0.2,
        val_fraction: float = 0.0,
        normalize_target: bool = False,
        batch_size: BatchSize = 16,
        split_seed: int | None = None,
        seed: Seed = 0,
    ) -> None:
        super().__init__()
        if not 0 < test_fraction < 1:
            raise ConfigValueError(
                f"'data.test_fraction' must lie between 0 and 1, got {test_fraction}."
            )
        if not 0 <= val_fraction < 1:
            raise ConfigValueError(f"'data.val_fraction' must lie in [0, 1), got {val_fraction}.")
        if batch_size < 1:
            raise ConfigValueError(f"'data.batch_size' must be at least 1, got {batch_size}.")
        self.path = path
        self.target_name = target
        self.header = header
        self.test_fraction = test_fraction
        self.val_fraction = val_fraction
        self.normalize_target = normalize_target
        self.batch_size = batch_size
        self.split_seed = seed if split_seed is None else split_seed
        self.seed = seed
        self.feature_names: list[str] = []
        #: raw (un-normalised) rows of each split: features (n, f) float64, targets (n,)
        self.raw: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.target_mean = 0.0
        self.target_std = 1.0
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        #: whether the table read had a header row (its column names are not positions)
        self.had_header = True
        #: how rows are encoded: fitted by setup(), or the run's (:meth:`prepare_to_encode`)
        self.encoding: FeatureEncoding | None = None
        #: the encoding an earlier run logged (:meth:`use_artifacts`)
        self.run_encoding: FeatureEncoding | None = None
        #: (file, data row counted from 1) of each row the last :meth:`encode_inputs` made
        self.encoded_rows: list[tuple[Path, int]] = []

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        features, targets, self.feature_names = self._read()
        order = np.arange(len(targets))
        np.random.RandomState(self.split_seed).shuffle(order)
        n_train = int(len(order) * (1 - self.test_fraction))
        n_val = int(n_train * self.val_fraction)
        if n_train - n_val < 2 or len(order) - n_train < 1:
            raise ConfigValueError(
                f"{len(order)} rows leave too few to train or test on with 'data.test_fraction'"
                f"={self.test_fraction} and 'data.val_fraction'={self.val_fraction}."
            )
        index = {
            "train": order[: n_train - n_val],
            "val": order[n_train - n_val : n_train],
            "test": order[n_train:],
        }
        self.raw = {name: (features[rows], targets[rows]) for name, rows in index.items()}
        train_x, train_y = self.raw["train"]
        self.mean, self.std = _stats(train_x)
        if self.normalize_target:
            self.target_mean = float(train_y.mean())
            self.target_std = float(train_y.std()) or 1.0
        if self.run_encoding is not None:
            self._encode_as_the_run(self.run_encoding)
        self.splits = {
            name: self._tensors(x, y, self.mean, self.std) for name, (x, y) in self.raw.items()
        }
        self.encoding = FeatureEncoding(
            features=list(self.feature_names),
            mean=self.mean.tolist(),
            std=self.std.tolist(),
            target=str(self.target_name),
            target_mean=self.target_mean,
            target_std=self.target_std,
            header=self.had_header,
        )
        log.info(
            "tabular %s: %d features, target %r, rows train %d / val %d / test %d",
            self.path or "diabetes (scikit-learn)",
            len(self.feature_names),
            self.target_name,
            *(len(index[name]) for name in ("train", "val", "test")),
        )

    def _read(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        if self.path is None:
            from sklearn.datasets import load_diabetes

            data = load_diabetes()
            self.target_name = self.target_name or "disease_progression"
            return (
                data.data.astype(np.float64),
                data.target.astype(np.float64),
                list(data.feature_names),
            )
        frame = read_table(Path(self.path), self.header)
        self.had_header = not _headerless(frame)
        columns = [str(c) for c in frame.columns]
        frame.columns = columns
        if self.target_name is None:
            self.target_name = columns[-1]
        elif self.target_name not in columns:
            raise ConfigValueError(
                f"No column {self.target_name!r} in {self.path}; its columns: "
                f"{', '.join(columns)}. Set 'data.target' to one of them (null: the last)."
            )
        import pandas as pd

        bad = [c for c in columns if not pd.api.types.is_numeric_dtype(frame[c])]
        if bad:
            raise ConfigValueError(
                f"Non-numeric column(s) {', '.join(map(repr, bad))} in {self.path}: every "
                "feature and the target must be a number (encode categories as numbers first)."
            )
        missing = _rows_where(frame, columns, np.isnan)
        if missing:
            raise ConfigValueError(
                f"Missing values in {self.path}: {missing}; fill or drop those rows first."
            )
        infinite = _rows_where(frame, columns, np.isinf)
        if infinite:
            raise ConfigValueError(
                f"Infinite values in {self.path}: {infinite}. One makes the loss infinite or "
                "NaN, a training that diverges whatever the learning rate; fix those cells "
                "(often a division by zero where the file was made) or drop those rows."
            )
        names = [c for c in columns if c != self.target_name]
        return (
            frame[names].to_numpy(dtype=np.float64),
            frame[self.target_name].to_numpy(dtype=np.float64),
            names,
        )

    def _tensors(
        self, x: np.ndarray, y: np.ndarray, mean: np.ndarray, std: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = ((x - mean) / std).astype(np.float32)
        targets = ((y - self.target_mean) / self.target_std).astype(np.float32)
        return torch.from_numpy(inputs), torch.from_numpy(targets)

    def model_kwargs(self) -> dict[str, Any]:
        """Model arguments implied by the data: a feature vector in, one value out."""
        return {
            "input_shape": (len(self.feature_names),),
            "num_classes": 1,
            "task": "regression",
            "target_scale": self.target_std,
        }

    # -- what a run keeps: the encoding, so predict needs no training file -----------------

    def artifacts(self) -> dict[str, Path]:
        """``features.json`` (:class:`FeatureEncoding`), logged with the run: ``predict``
        encodes new tables with it once the training file has moved or gone."""
        if self.encoding is None:
            return {}
        folder = Path(tempfile.mkdtemp(prefix="pipelines-tabular-"))
        return {FEATURES_ARTIFACT: self.encoding.save(folder / FEATURES_ARTIFACT)}

    def use_artifacts(self, files: Mapping[str, Path]) -> None:
        """The encoding a run logged (its :meth:`artifacts`; older runs have none)."""
        if FEATURES_ARTIFACT in files:
            self.run_encoding = FeatureEncoding.load(files[FEATURES_ARTIFACT])

    def _encode_as_the_run(self, run: FeatureEncoding) -> None:
        """Columns in the run's order and the run's statistics, for ``evaluate`` on this data.

        Normalised with their own rows' statistics, other data (``data.path=new.csv``) gave
        the model inputs it was never trained on: a table of pricier houses looked like the
        training table's average, and the MAE evaluate printed was not the model's. The
        run's columns are picked by name, as ``predict`` picks them.
        """
        if self.feature_names != run.features:
            missing = [name for name in run.features if name not in self.feature_names]
            if missing:
                where = Path(self.path) if self.path else Path("the data")
                headerless = not self.had_header
                raise DataNotFoundError(_missing_columns_message(where, missing, run, headerless))
            order = [self.feature_names.index(name) for name in run.features]
            self.raw = {name: (x[:, order], y) for name, (x, y) in self.raw.items()}
            self.feature_names = list(run.features)
        self.mean, self.std = np.asarray(run.mean), np.asarray(run.std)
        if self.normalize_target:
            self.target_mean, self.target_std = run.target_mean, run.target_std

    def prepare_to_encode(self, model: Any) -> bool:
        """Ready :meth:`encode_inputs` for ``predict`` from the run's ``features.json``
        alone, without the training table. False (set the data up instead) for a run that
        did not log it, or whose model takes another number of features."""
        if self.run_encoding is None:
            return False
        shape = dict(getattr(model, "hparams", None) or {}).get("input_shape")
        if shape is not None and tuple(shape) != (len(self.run_encoding.features),):
            return False
        self.encoding = self.run_encoding
        return True

    def encode_inputs(self, paths: list[Path]) -> torch.Tensor:
        """CSV tables' rows as the model's inputs: the run's feature columns picked by name
        (the target and other columns ignored), normalised with the training statistics.

        Each file is read as the training table was (compressed, comma or whitespace, a
        header row detected); :attr:`encoded_rows` then names each row's file and row."""
        assert self.encoding is not None, "setup() or prepare_to_encode() first"
        blocks, self.encoded_rows = [], []
        for path in map(Path, paths):
            features = self._feature_rows(path, self.encoding)
            blocks.append(features)
            self.encoded_rows += [(path, row) for row in range(1, len(features) + 1)]
        return self._normalised(np.concatenate(blocks))

    def decode_outputs(self, outputs: torch.Tensor) -> torch.Tensor:
        """The model's outputs in the target's own units (``normalize_target`` undone)."""
        assert self.encoding is not None, "setup() or prepare_to_encode() first"
        return outputs * self.encoding.target_std + self.encoding.target_mean

    def encode_values(self, values: Any) -> torch.Tensor:
        """Table rows as a person holds them -- a pandas DataFrame (or a list of dicts) with
        the run's feature columns by name, other columns ignored -- normalised with the
        training statistics, one model input per row."""
        import pandas as pd

        assert self.encoding is not None, "setup() or prepare_to_encode() first"
        if isinstance(values, pd.DataFrame):
            frame = values
        elif isinstance(values, (list, tuple)) and all(isinstance(v, Mapping) for v in values):
            frame = pd.DataFrame(list(values))
        else:
            raise ConfigValueError(
                f"This run predicts from table rows, not {type(values).__name__}: give a "
                "pandas DataFrame (or a list of dicts) with its feature columns "
                f"{', '.join(map(repr, self.encoding.features))}."
            )
        frame = frame.rename(columns=str)
        missing = [name for name in self.encoding.features if name not in frame.columns]
        if missing:
            raise ConfigValueError(
                _missing_columns_message("The table given", missing, self.encoding, False)
            )
        self.encoded_rows = []
        return self._normalised(self._feature_values(frame, "the table given"))

    def _feature_rows(self, path: Path, encoding: FeatureEncoding) -> np.ndarray:
        """The feature values of one table to predict on, (rows, features) float64; refused
        (one paragraph naming the fix) where a column is missing or a cell is not a number."""
        frame = read_table(path, self.header, setting=None)
        headerless = _headerless(frame)
        frame.columns = [str(c) for c in frame.columns]
        if headerless and not encoding.header and len(frame.columns) == len(encoding.features):
            frame.columns = list(encoding.features)  # the run's layout, without its target
        missing = [name for name in encoding.features if name not in frame.columns]
        if missing:
            raise DataNotFoundError(_missing_columns_message(path, missing, encoding, headerless))
        return self._feature_values(frame, str(path))

    def _feature_values(self, frame: Any, where: str) -> np.ndarray:
        """The run's feature columns of ``frame``, (rows, features) float64, every cell a
        finite number (else one paragraph naming the cells)."""
        import pandas as pd

        assert self.encoding is not None
        features = self.encoding.features
        frame = frame[features]
        if frame.empty:
            raise DataNotFoundError(
                f"{where} holds no rows to predict on (only a header row?): give a table "
                "with one row of feature values per prediction."
            )
        bad = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
        if bad:
            raise ConfigValueError(
                f"Non-numeric column(s) {', '.join(map(repr, bad))} in {where}: every feature "
                "must be a number, as in the training table (encode categories as numbers "
                "the way the training table did)."
            )
        for test, what in ((np.isnan, "Missing"), (np.isinf, "Infinite")):
            cells = _rows_where(frame, features, test)
            if cells:
                raise ConfigValueError(
                    f"{what} values in {where}: {cells}. The model has no prediction for a "
                    "row without a number in every feature; fix those cells or drop those "
                    "rows."
                )
        return frame.to_numpy(dtype=np.float64)

    def _normalised(self, features: np.ndarray) -> torch.Tensor:
        assert self.encoding is not None
        mean, std = np.asarray(self.encoding.mean), np.asarray(self.encoding.std)
        return torch.from_numpy(((features - mean) / std).astype(np.float32))

    def folds(self, k: int, seed: int) -> Iterator[tuple[TensorBatches, TensorBatches]]:
        """``k`` (train, validation) loader pairs over the training rows (see module doc).

        The rows (train + val) are shuffled with ``seed`` and cut into ``k`` nearly equal
        folds; fold ``i`` validates on part ``i`` and trains on the others, with features
        normalised by those others' statistics. Targets keep the module's scaling, so
        ``model_kwargs()['target_scale']`` holds for every fold.
        """
        if not self.raw:
            self.setup("fit")
        features = np.concatenate([self.raw["train"][0], self.raw["val"][0]])
        targets = np.concatenate([self.raw["train"][1], self.raw["val"][1]])
        if not 2 <= k <= len(targets):
            raise ConfigValueError(
                f"Cannot make {k} folds of {len(targets)} training rows; use 2 <= k <= "
                f"{len(targets)}."
            )
        order = np.random.RandomState(seed).permutation(len(targets))
        parts = np.array_split(order, k)
        for index, val_rows in enumerate(parts):
            train_rows = np.concatenate([p for i, p in enumerate(parts) if i != index])
            mean, std = _stats(features[train_rows])
            train = self._tensors(features[train_rows], targets[train_rows], mean, std)
            val = self._tensors(features[val_rows], targets[val_rows], mean, std)
            yield (
                TensorBatches(*train, batch_size=self.batch_size, shuffle=True, seed=self.seed),
                TensorBatches(*val, batch_size=self.batch_size),
            )

    def train_dataloader(self) -> TensorBatches:
        return TensorBatches(
            *self.splits["train"], batch_size=self.batch_size, shuffle=True, seed=self.seed
        )

    def val_dataloader(self) -> TensorBatches | list:
        """The validation rows; none (an empty list: Lightning skips validation) by default."""
        if len(self.splits["val"][1]) == 0:
            return no_validation_data("rows")
        return TensorBatches(*self.splits["val"], batch_size=self.batch_size)

    def test_dataloader(self) -> TensorBatches:
        return TensorBatches(*self.splits["test"], batch_size=self.batch_size)

    def predict_dataloader(self) -> TensorBatches:
        return self.test_dataloader()


def _rows_where(frame: Any, columns: list[str], test: Any) -> str:
    """Which cells of ``columns`` pass ``test`` (np.isnan, np.isinf), as "column 'x', row(s)
    3, 9; ..." (rows counted from 1, the header not counted; at most 5 per column), or "".

    Naming the rows lets the user find the cells in a file of thousands of lines.
    """
    parts = []
    for column in columns:
        rows = np.flatnonzero(test(frame[column].to_numpy(dtype=np.float64))) + 1
        if len(rows):
            shown = ", ".join(map(str, rows[:5]))
            more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
            parts.append(f"column {column!r}, row(s) {shown}{more}")
    if not parts:
        return ""
    return f"{'; '.join(parts)} (data rows counted from 1, a header row not counted)"


def _headerless(frame: Any) -> bool:
    """Whether ``frame`` was read without a header row: pandas then names the columns by
    position (integers 0, 1, ...), which are also the names a headerless run's features
    have; a header row's names are strings, even ``"0"``."""
    return list(frame.columns) == list(range(len(frame.columns))) and all(
        isinstance(name, (int, np.integer)) for name in frame.columns
    )


def _missing_columns_message(
    path: Path | str, missing: list[str], encoding: FeatureEncoding, headerless: bool
) -> str:
    """A table to predict on lacks feature columns of the run: which, the run's columns in
    order, and the layout to give (by name, or by position for a headerless run)."""
    names = ", ".join(map(repr, missing))
    if not encoding.header:
        return (
            f"{path} does not have the layout of the run's training table, which had no header "
            f"row: its {len(encoding.features)} feature columns are positions "
            f"{', '.join(encoding.features)} (the target, {encoding.target!r}, is not needed), "
            f"and {path} lacks {names}. Give rows of {len(encoding.features)} feature values "
            "in the training table's column order, or whole rows of that table (the target "
            "included, then ignored), without a header row."
        )
    found = "it has no header row" if headerless else "it has no column(s) " + names
    return (
        f"{path} lacks feature columns of the run: {found}. The run was trained on the "
        f"columns {', '.join(map(repr, encoding.features))} (in that order; the target "
        f"{encoding.target!r} is not needed). Give a table with a header row naming each of "
        "them; other columns, the target among them, are ignored."
    )


def _stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and standard deviations (1 where a column is constant)."""
    std = features.std(axis=0)
    return features.mean(axis=0), np.where(std > 0, std, 1.0)


#: how to replace a damaged table (the module cannot download one)
_REPLACE_TABLE = "put an intact copy in its place"


def read_table(path: Path, header: bool | None, setting: str | None = "data.path") -> Any:
    """A comma- or whitespace-separated table; ``header`` null detects a header row.

    ``setting``: the config key that named ``path``, which a "permission denied" names as
    the alternative; None (a file given to ``predict``) leaves that error to the caller."""
    import pandas as pd

    # inside: is_file() itself is denied where a folder above the table may not be searched
    with reading_data_file(path, _REPLACE_TABLE, setting):
        if path.is_dir():
            raise folder_given_error(path, "data.path", "a CSV of numeric features and a target")
        if not path.is_file():
            raise DataNotFoundError(
                f"No table at {path}. Set 'data.path' to a CSV of numeric features and a "
                "target (the Boston housing layout: 14 columns, no header, the price last), "
                "or `data.path=null` for scikit-learn's bundled diabetes data."
            )
        first = _first_line(path)
    if not first.strip():
        raise DataNotFoundError(
            f"{path} is empty: it holds no text. Set 'data.path' to a CSV of "
            "numeric features and a target, one row per sample, or write the rows into it."
        )
    separator = "," if "," in first else r"\s+"
    if header is None:
        cells = [c.strip().strip("\"'") for c in first.replace(",", " ").split()]
        header = not all(_is_number(c) for c in cells)
    try:  # pandas decompresses a .gz/.zip/... by its name: a damaged one fails deep in zlib
        with reading_data_file(path, _REPLACE_TABLE, setting):
            frame = pd.read_csv(path, sep=separator, header=0 if header else None)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataNotFoundError(f"Cannot read {path} as a table: {exc}") from exc
    if frame.empty:
        raise DataNotFoundError(
            f"{path} has a header ({', '.join(map(str, frame.columns))}) but no rows. Set "
            "'data.path' to a CSV with a row per sample, or write the rows into it."
        )
    return frame


#: the compressions pandas infers from a table's name, opened the same way here so the
#: separator and header are read from the text, not from the compressed bytes
_DECOMPRESSING_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def _first_line(path: Path) -> str:
    """The first line of the table's text that holds any (``pandas.read_csv`` skips blank
    lines), decompressed as it will be; empty where the file holds no text."""
    suffix = path.suffix.lower()
    if suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist() if not m.endswith("/")]
            if len(members) != 1:  # pandas refuses these too, with a less helpful message
                raise DataNotFoundError(
                    f"{path} holds {len(members)} files; a zipped table must hold exactly "
                    "one. Unzip it and set 'data.path' to the table inside."
                )
            with archive.open(members[0]) as raw:
                lines = (line.decode("utf-8", errors="replace") for line in raw)
                return next((line for line in lines if line.strip()), "")
    opener = _DECOMPRESSING_OPENERS.get(suffix, open)
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        return next((line for line in handle if line.strip()), "")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
