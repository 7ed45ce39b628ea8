"""Time series as forecasting windows (2nd ed. ch. 10): any CSV, or an embedded series.

Windows are cut exactly as ``keras.utils.timeseries_dataset_from_array`` cuts them in the
book, with one window starting at every row:

* a window starting at row ``s`` holds rows ``s, s + r, ..., s + r * (L - 1)``, where
  ``r = sampling_rate`` and ``L = sequence_length`` (the lookback, in samples *after*
  sampling);
* its target is the target column at row ``s + delay`` with the book's
  ``delay = sampling_rate * (sequence_length + horizon - 1)``: ``horizon`` sampled steps
  (``sampling_rate * horizon`` rows) after the window's last row. Jena: 10-minute rows,
  ``sampling_rate=6`` (one sample per hour), ``sequence_length=120`` (5 days),
  ``horizon=24`` -> 144 rows = 24 hours after the end of the window, the book's
  ``delay = 6 * (120 + 24 - 1)``.

The rows are split chronologically (the book: first 50% train, next 25% validation, last
25% test). A window belongs to a split only when its inputs *and* its target lie in that
split's rows, so no split sees another split's values (the book lets a window's target
reach up to ``horizon`` samples into the next period; here those few windows are dropped).
Every column is normalised with the mean and standard deviation of the training rows only;
the target too, and its standard deviation is handed to the model as ``target_scale`` so
MAE is reported in the data's own units.

Windows are never materialised: each batch gathers its windows from the normalised series
with one advanced-indexing call (:class:`WindowBatches`), so the full Jena set (420,551
rows, ~210,000 training windows of 120 x 14 values) costs the memory of the series itself.

A series whose float32 columns would not fit ``data.memory_budget`` is streamed instead
(``data.in_memory: auto|true|false``; :mod:`plugins.data.streamed_series`): the CSV is parsed
in chunks into memory-mapped float32 arrays, normalised alike, and a ``DataLoader`` draws the
same windows, in the same seeded order, from them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from pipelines.api import (
    BatchSize,
    ConfigValueError,
    DataNotFoundError,
    FollowsTrainerEpoch,
    RemoteFile,
    Seed,
    SplitLoaders,
    distributed_shard,
    download,
    file_already_there,
    folder_given_error,
    reading_data_file,
    shard_order,
)
from plugins.data import streamed_series
from plugins.data.memory_budget import (
    InMemory,
    check_in_memory,
    choose_data_path,
    memory_budget_bytes,
)

log = logging.getLogger(__name__)

#: the run's normalisation, logged as ``data/scaling.json``
SCALING_ARTIFACT = "scaling.json"

SPLITS = ("train", "val", "test")
#: the series used when ``path`` is null: statsmodels' bundled weekly Mauna Loa CO2 (ppm)
EMBEDDED_SERIES = "co2"


class WindowBatches(FollowsTrainerEpoch):
    """Batches of forecasting windows gathered on the fly from a (normalised) series.

    ``series`` is ``(rows, features)``, ``target`` is ``(rows,)``; window ``i`` starts at row
    ``starts[i]``, its inputs are ``series[starts[i] + offsets]`` (``(T, features)``) and its
    target ``target[starts[i] + target_offset]``. Shuffling is seeded and changes every
    epoch (``seed + epoch``), like :class:`pipelines.api.TensorBatches`.
    """

    def __init__(
        self,
        series: torch.Tensor,
        target: torch.Tensor,
        starts: torch.Tensor,
        offsets: torch.Tensor,
        target_offset: int,
        *,
        batch_size: BatchSize,
        shuffle: bool = False,
        seed: Seed = 0,
        relative: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.series = series
        self.target = target
        self.starts = starts
        self.offsets = offsets
        self.target_offset = target_offset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.relative = relative
        #: under DDP this rank's shard of the windows, as :class:`TensorBatches` deals it
        self.rank, self.world_size = rank, max(1, world_size)
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(math.ceil(len(self.starts) / self.world_size) / self.batch_size)

    def gather(self, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The windows ``(B, T, features)`` and targets ``(B,)`` starting at ``starts``.

        ``relative``: inputs minus the window's last row, target minus its last value, so
        the model predicts the change from now (a trending series stays in range).
        """
        rows = starts[:, None] + self.offsets[None, :]
        inputs, targets = self.series[rows], self.target[starts + self.target_offset]
        if self.relative:
            inputs = inputs - inputs[:, -1:, :]
            targets = targets - self.target[starts + self.offsets[-1]]
        return inputs, targets

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        starts = self.starts
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            starts = starts[torch.randperm(len(starts), generator=generator)]
        starts = starts[shard_order(torch.arange(len(starts)), self.rank, self.world_size)]
        self.epoch += 1
        for begin in range(0, len(starts), self.batch_size):
            yield self.gather(starts[begin : begin + self.batch_size])


class TimeseriesDataModule(SplitLoaders, L.LightningDataModule):
    """A CSV of a time column and numeric columns (or an embedded series) as windows.

    ``path`` null uses the embedded series (statsmodels' weekly Mauna Loa CO2, no download;
    its 59 missing weeks are interpolated). ``time_column`` (parsed with ``time_format``, or
    inferred) orders the rows; null keeps the file's order. ``features`` defaults to every
    numeric column; ``target`` names the column to forecast. Missing values are filled by
    linear interpolation within each split (never across a split boundary).

    ``download: true`` fetches ``url`` when ``path`` is missing (a ``.zip`` is extracted:
    only the member named like ``path``), verified by ``sha256`` when given and by
    ``expected_rows`` (the data rows the file must hold) after extraction.

    ``in_memory``: ``auto`` reads the series into memory when its used columns as float32
    (rows x columns x 4 bytes) fit ``memory_budget`` (bytes, ``"2GB"``, a fraction of the
    available memory in (0, 1], or null for a quarter of it) and streams it from a
    memory-mapped copy in ``cache_dir`` otherwise (null: a temporary folder, removed when the
    process ends); ``true``/``false`` force a path. ``data_path`` says which path
    :meth:`setup` took.
    """

    def __init__(
        self,
        path: str | None = None,
        time_column: str | None = None,
        time_format: str | None = None,
        target: str | None = None,
        features: list[str] | None = None,
        sequence_length: int = 120,
        sampling_rate: int = 1,
        horizon: int = 1,
        train_fraction: float = 0.5,
        val_fraction: float = 0.25,
        batch_size: BatchSize = 256,
        seed: Seed = 0,
        download: bool = False,
        url: str | None = None,
        sha256: str | None = None,
        expected_rows: int | None = None,
        window_relative: bool = False,
        normalize_target: bool = True,
        in_memory: InMemory = "auto",
        memory_budget: int | float | str | None = None,
        cache_dir: str | None = None,
    ) -> None:
        """``normalize_target``: the model learns the target scaled by the training rows'
        mean and standard deviation (metrics stay in the target's units either way); false
        trains on the raw values, as the book's code trains on degrees. The inputs are
        always normalised.

        ``window_relative``: each window is seen relative to its last row and the model
        forecasts the change of the target from that row (the naive baseline predicts no
        change). Errors are unchanged by this (value = last value + change), but a series
        with a trend -- CO2 keeps rising -- no longer leaves the range the training period
        normalised it to. Off by default, as in the book."""
        super().__init__()
        for key, value in (
            ("sequence_length", sequence_length),
            ("sampling_rate", sampling_rate),
            ("horizon", horizon),
            ("batch_size", batch_size),
        ):
            if value < 1:
                raise ConfigValueError(f"'data.{key}' must be at least 1, got {value}.")
        if not (0 < train_fraction < 1 and 0 < val_fraction < 1):
            raise ConfigValueError(
                "'data.train_fraction' and 'data.val_fraction' must lie between 0 and 1, got "
                f"{train_fraction} and {val_fraction}."
            )
        if train_fraction + val_fraction >= 1:
            raise ConfigValueError(
                f"'data.train_fraction' + 'data.val_fraction' = {train_fraction + val_fraction}"
                " leaves no rows to test on; keep their sum below 1."
            )
        self.in_memory = check_in_memory(in_memory, "reads the series into memory")
        self.memory_budget = memory_budget_bytes(memory_budget)  # checked before the run
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        #: "in_memory" or "streamed", after :meth:`setup` (the run's tag pipelines.data_path)
        self.data_path: str | None = None
        #: streamed: the memory-mapped copy's files (:mod:`plugins.data.streamed_series`)
        self.stream: streamed_series.SeriesFiles | None = None
        #: the embedded series, read to choose the path and kept for setup to take
        self.embedded: Any = None
        #: the settings as given, before a run's artifacts name the columns (the cache key)
        self.configured = {"target": target, "features": list(features) if features else None}
        self.path = path
        self.time_column = time_column
        self.time_format = time_format
        self.target_name = target
        self.feature_names = list(features) if features else None
        self.sequence_length = sequence_length
        self.sampling_rate = sampling_rate
        self.horizon = horizon
        self.train_fraction = train_fraction
        self.val_fraction = val_fraction
        self.batch_size = batch_size
        self.seed = seed
        self.download = download
        self.url = url
        self.sha256 = sha256
        self.expected_rows = expected_rows
        self.window_relative = window_relative
        self.normalize_target = normalize_target
        #: filled by :meth:`setup`
        self.raw: np.ndarray | None = None  # (rows, features) float64, as read
        self.raw_target: np.ndarray | None = None  # (rows,) float64, as read
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.target_mean = 0.0
        self.target_std = 1.0
        #: the normalisation an earlier run logged (:meth:`use_artifacts`), used by setup
        self.run_scaling: dict[str, Any] | None = None
        self.bounds: dict[str, tuple[int, int]] = {}
        self.series: torch.Tensor | None = None
        self.target: torch.Tensor | None = None
        #: after :meth:`encode_values`: each window's last target value, in its units
        self.encoded_last = torch.zeros(0)

    # -- geometry -----------------------------------------------------------------------
    @property
    def span(self) -> int:
        """Rows from a window's first to its last sample: ``sampling_rate * (L - 1)``."""
        return self.sampling_rate * (self.sequence_length - 1)

    @property
    def delay(self) -> int:
        """Rows from a window's first sample to its target (the book's ``delay``)."""
        return self.sampling_rate * (self.sequence_length + self.horizon - 1)

    def window_starts(self, split: str) -> np.ndarray:
        """First rows of the split's windows: every window and target inside its rows."""
        first, stop = self.bounds[split]
        return np.arange(first, max(first, stop - self.delay), dtype=np.int64)

    # -- loading ------------------------------------------------------------------------
    def prepare_data(self) -> None:
        if self.path is None or not self.download:
            return
        if file_already_there(Path(self.path), "data.path", _EXPECTED):
            return
        fetch_series_file(Path(self.path), self.url, self.sha256, self.expected_rows)

    def setup(self, stage: str | None = None) -> None:
        if self.series is not None:
            return
        if not self._fits_in_memory():
            self._set_up_stream()
            return
        frame, self.feature_names, self.target_name = self._read()
        rows = len(frame)
        n_train = int(rows * self.train_fraction)
        n_val = int(rows * self.val_fraction)
        self.bounds = {
            "train": (0, n_train),
            "val": (n_train, n_train + n_val),
            "test": (n_train + n_val, rows),
        }
        columns = [*self.feature_names, self.target_name]
        values = frame[list(dict.fromkeys(columns))]
        values = self._interpolate(values)
        self.raw = values[self.feature_names].to_numpy(dtype=np.float64)
        self.raw_target = values[self.target_name].to_numpy(dtype=np.float64)
        self._check_lengths()
        train = slice(*self.bounds["train"])
        self.mean = self.raw[train].mean(axis=0)
        self.std = _safe_std(self.raw[train].std(axis=0))
        if self.normalize_target:
            self.target_mean = float(self.raw_target[train].mean())
            self.target_std = float(_safe_std(np.array([self.raw_target[train].std()]))[0])
        if self.run_scaling is not None:
            self._scale_as_the_run(self.run_scaling)
        normalised = (self.raw - self.mean) / self.std
        self.series = torch.from_numpy(normalised.astype(np.float32))
        target = (self.raw_target - self.target_mean) / self.target_std
        self.target = torch.from_numpy(target.astype(np.float32))
        self._log_loaded(rows)

    def _log_loaded(self, rows: int, where: str = "") -> None:
        counts = ", ".join(f"{s} {len(self.window_starts(s))}" for s in SPLITS)
        log.info(
            "timeseries %s: %d rows x %d features, target %r, windows %s (lookback %d samples "
            "every %d rows, target %d rows after the window)%s",
            self.path or EMBEDDED_SERIES,
            rows,
            len(self.feature_names or []),
            self.target_name,
            counts,
            self.sequence_length,
            self.sampling_rate,
            self.sampling_rate * self.horizon,
            where,
        )

    # -- which path: in memory or streamed ------------------------------------------------

    def _fits_in_memory(self) -> bool:
        """Which path to take (``data_path``), said in one log line with the reason: the used
        columns as float32 (rows x columns x 4 bytes) against ``memory_budget``."""

        def size() -> tuple[int, str]:
            rows, columns = self._decoded_shape()
            return rows * columns * 4, f"{rows} rows x {columns} columns as float32"

        self.data_path = choose_data_path(
            self.in_memory,
            self.memory_budget,
            size,
            log=log,
            plugin="timeseries",
            kept="reading the series into memory",
            streamed="streaming windows from a memory-mapped copy in "
            f"{self.cache_dir or 'a temporary folder'}",
        )
        return self.data_path == "in_memory"

    def _decoded_shape(self) -> tuple[int, int]:
        """The rows and the used columns, as far as a glance at the data tells: the rows of
        the file counted, the columns from its first rows (every numeric one unless
        ``features`` names them)."""
        if self.path is None:
            self.embedded = first = load_embedded(EMBEDDED_SERIES)  # read once: see _read
            rows = len(first)
        else:
            path = Path(self.path)
            with csv_errors(path, self.download):
                rows = streamed_series.count_rows(path)
                first = read_csv(path, self.download, nrows=streamed_series.GLANCE_ROWS)
        target = [self.target_name] if self.target_name else []
        if self.feature_names:
            used = [*self.feature_names, *target]
        else:
            numeric = [c for c in first.columns if c != self.time_column and _is_numeric(first[c])]
            used = [*numeric, *target]
        return rows, max(1, len(dict.fromkeys(used)))

    def _set_up_stream(self) -> None:
        """The streamed path: the series in memory-mapped float32 files, built (or found in
        ``cache_dir``) by :func:`plugins.data.streamed_series.open_series`."""
        self.stream, cached = streamed_series.open_series(self)
        self.series, self.target, self.raw_target = self.stream.arrays()
        self._log_loaded(
            self.stream.rows, f", streamed from {self.stream.folder}{' (cached)' if cached else ''}"
        )

    # -- reading ----------------------------------------------------------------------

    def take_embedded(self) -> Any:
        """The embedded series: as :meth:`_decoded_shape` read it, else read now."""
        frame, self.embedded = self.embedded, None
        return load_embedded(EMBEDDED_SERIES) if frame is None else frame

    @property
    def source(self) -> str:
        """The series, as messages name it."""
        return self.path or f"the embedded '{EMBEDDED_SERIES}' series"

    def _read(self) -> tuple[Any, list[str], str]:
        """The rows in time order, the feature names and the target name."""
        if self.path is None:
            frame = self.take_embedded()
            default_target = EMBEDDED_SERIES
        else:
            frame = as_read = read_csv(Path(self.path), self.download)
            if len(frame) == 0:
                raise no_rows_error(self.path, list(frame.columns))
            default_target = None
            if self.time_column is not None:
                frame = sort_by_time(frame, self.time_column, self.time_format, self.path)
        excluded = {self.time_column} if self.time_column else set()
        self._check_target(list(frame.columns), default_target)
        numeric = [c for c in frame.columns if c not in excluded and _is_numeric(frame[c])]
        features, target = self._choose_columns(list(frame.columns), numeric, default_target)
        if self.path is not None:  # in the file's order, so the rows named are its rows
            self._refuse_infinite(as_read, list(dict.fromkeys([*features, target])))
        return frame, features, target

    def _check_target(self, columns: list[str], default_target: str | None) -> None:
        """A target is set, and it and the named features are columns of the series."""
        target = self.target_name or default_target
        if target is None:
            raise ConfigValueError(
                f"Set 'data.target' to the column to forecast in {self.source}; its columns: "
                f"{', '.join(map(str, columns))}."
            )
        _require_columns(columns, [target, *(self.feature_names or [])], self.source)

    def _choose_columns(
        self, columns: list[str], numeric: list[str], default_target: str | None
    ) -> tuple[list[str], str]:
        """The features and the target among ``columns``, of which ``numeric`` (the time
        column left out) hold numbers: the named features, else every numeric column."""
        target = self.target_name or default_target
        assert target is not None  # _check_target said so
        excluded = {self.time_column} if self.time_column else set()
        if self.feature_names:
            features = list(self.feature_names)
            bad = [c for c in [*features, target] if c not in numeric]
        else:
            features = list(numeric)
            skipped = [c for c in columns if c not in excluded and c not in numeric]
            if skipped:
                log.info("timeseries: non-numeric columns left out of the features: %s", skipped)
            bad = [target] if target not in numeric else []
        if bad:
            raise ConfigValueError(
                f"Non-numeric column(s) {', '.join(map(repr, bad))} in {self.source}: features "
                "and the target must be numbers. Leave them out with `data.features=[...]` "
                f"(numeric columns: {', '.join(map(str, numeric)) or 'none'}), or set "
                "'data.time_column' if one of them is the time."
            )
        if not features:
            raise ConfigValueError(f"{self.source} has no numeric feature columns.")
        return features, target

    def _refuse_infinite(self, frame: Any, columns: list[str]) -> None:
        """Refuse ±inf in ``columns``, naming the rows (and their times): unlike a blank,
        which is a gap and is interpolated, an infinite value was written there -- a
        division by zero or an overflow where the file was made -- so it is not filled
        silently; it would make the normalisation and every loss NaN, which reads as a
        learning rate too high. Blanking the cells has them interpolated."""
        found = {}
        for column in columns:
            rows = np.flatnonzero(np.isinf(frame[column].to_numpy(dtype=np.float64)))
            if len(rows):
                named = [f"{row + 1}{self._time_of(frame, row)}" for row in rows[:5]]
                found[column] = (named, len(rows))
        if found:
            raise self.infinite_error(found)

    def infinite_error(self, found: Mapping[str, tuple[list[str], int]]) -> ConfigValueError:
        """The one paragraph for infinite values: ``found`` maps a column to its first rows
        named (``"8 (day 2020-01-08)"``) and how many it has."""
        parts = []
        for column, (named, count) in found.items():
            more = f" and {count - len(named)} more" if count > len(named) else ""
            parts.append(f"column {column!r}, row(s) {', '.join(named)}{more}")
        return ConfigValueError(
            f"Infinite values in {self.path}: {'; '.join(parts)} (data rows counted from "
            "1, the header not counted). Fix those cells (often a division by zero where "
            "the file was made), or empty them to have them interpolated like missing "
            "values."
        )

    def _time_of(self, frame: Any, row: int) -> str:
        """`` (<time column> <value>)`` for a message naming ``row``, or "" without one."""
        if self.time_column is None or self.time_column not in frame.columns:
            return ""
        return f" ({self.time_column} {frame[self.time_column].iloc[row]})"

    def _interpolate(self, values: Any) -> Any:
        """Fill missing values linearly, each split on its own so none borrows from another."""
        missing = int(values.isna().to_numpy().sum())
        if not missing:
            return values
        parts = [
            values.iloc[first:stop].interpolate(method="linear", limit_direction="both")
            for first, stop in self.bounds.values()
        ]
        import pandas as pd

        filled = pd.concat(parts)
        columns = [str(c) for c in values.columns[values.isna().any().to_numpy()]]
        log_interpolated(missing, columns)
        left = filled.isna().any()
        if left.any():
            raise self.no_value_error([str(c) for c in filled.columns[left.to_numpy()]])
        return filled

    def no_value_error(self, columns: list[str]) -> ConfigValueError:
        return ConfigValueError(
            f"Column(s) {', '.join(columns)} of {self.path or EMBEDDED_SERIES} have no value "
            "at all in one split, so they cannot be interpolated; leave them out with "
            "`data.features=[...]`."
        )

    def _check_lengths(self) -> None:
        short = [s for s in SPLITS if len(self.window_starts(s)) == 0]
        if short:
            rows = {s: self.bounds[s][1] - self.bounds[s][0] for s in SPLITS}
            raise ConfigValueError(
                f"The {', '.join(short)} split(s) hold no complete window: a window with its "
                f"target spans {self.delay + 1} rows (sampling_rate {self.sampling_rate} x "
                f"(sequence_length {self.sequence_length} + horizon {self.horizon} - 1) + 1), "
                f"the splits have {rows} rows. Use a longer series, a smaller "
                "'data.sequence_length', 'data.sampling_rate' or 'data.horizon', or larger "
                "split fractions."
            )

    # -- what a run keeps: its normalisation, so evaluate on other data scales it alike --

    def artifacts(self) -> dict[str, Path]:
        """``scaling.json``: the features and target, and the training rows' means and
        standard deviations, logged with the run (``data/scaling.json``)."""
        if self.mean is None or self.std is None:
            return {}
        scaling = {
            "features": list(self.feature_names or []),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "target": self.target_name,
            "target_mean": self.target_mean,
            "target_std": self.target_std,
        }
        path = Path(tempfile.mkdtemp(prefix="pipelines-series-")) / SCALING_ARTIFACT
        path.write_text(json.dumps(scaling, indent=1), encoding="utf-8")
        return {SCALING_ARTIFACT: path}

    def use_artifacts(self, files: Mapping[str, Path]) -> None:
        """The run's features, target and normalisation (its :meth:`artifacts`), for
        ``evaluate`` on other data (``data.path=other.csv``): normalised with that series'
        own statistics, the model was handed values it was never trained on. Older runs
        logged none: their data is scaled by its own rows, as before."""
        if SCALING_ARTIFACT not in files:
            return
        try:
            scaling = json.loads(Path(files[SCALING_ARTIFACT]).read_text(encoding="utf-8"))
            features, target = list(scaling["features"]), str(scaling["target"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigValueError(
                f"The run's normalisation (artifact data/{SCALING_ARTIFACT}) cannot be read "
                f"({exc}), so the series cannot be scaled as the run scaled it."
            ) from None
        self.feature_names, self.target_name = features, target  # the run's, by name
        self.run_scaling = scaling

    def _scale_as_the_run(self, scaling: Mapping[str, Any]) -> None:
        self.mean = np.asarray(scaling["mean"], dtype=np.float64)
        self.std = np.asarray(scaling["std"], dtype=np.float64)
        self.target_mean = float(scaling["target_mean"])
        self.target_std = float(scaling["target_std"])

    # -- forecasting from rows a person holds ---------------------------------------------

    def prepare_to_encode(self, model: Any) -> bool:
        """Ready :meth:`encode_values` from the run's ``scaling.json`` alone (its columns and
        training statistics), without the series. False where the run logged none, or its
        model takes windows of another shape."""
        if self.run_scaling is None:  # use_artifacts also took the run's columns from it
            return False
        self._scale_as_the_run(self.run_scaling)
        shape = dict(getattr(model, "hparams", None) or {}).get("input_shape")
        return shape is None or tuple(shape) == (self.sequence_length, len(self.feature_names))

    def encode_values(self, values: Any) -> torch.Tensor:
        """The latest window of a DataFrame of rows in time order (oldest first) with the
        run's feature columns, at least ``sampling_rate * (sequence_length - 1) + 1`` rows:
        one forecast of the target ``horizon`` samples after its last row. A list of such
        DataFrames gives one forecast each."""
        import pandas as pd

        frames = [values] if isinstance(values, pd.DataFrame) else list(values)
        if not frames or not all(isinstance(frame, pd.DataFrame) for frame in frames):
            raise ConfigValueError(
                "A forecasting run predicts from rows of the series: give a pandas DataFrame "
                f"(or a list of them) in time order with the columns {self._columns()}."
            )
        windows, last_targets = [], []
        for frame in frames:
            rows = self._window_rows(frame)
            windows.append((rows - self.mean) / self.std)
            last_targets.append(float(frame[self.target_name].iloc[-1]))
        inputs = torch.from_numpy(np.stack(windows).astype(np.float32))
        self.encoded_last = torch.tensor(last_targets, dtype=torch.float32)
        if self.window_relative:
            inputs = inputs - inputs[:, -1:, :]
        return inputs

    def decode_outputs(self, outputs: torch.Tensor) -> torch.Tensor:
        """Forecasts in the target's own units (its normalisation undone; a forecast of the
        change from the window's last row added to that row's value)."""
        values = outputs * self.target_std
        if self.window_relative:
            return values + self.encoded_last.reshape(-1, *([1] * (outputs.ndim - 1)))
        return values + self.target_mean

    def _window_rows(self, frame: Any) -> np.ndarray:
        """The feature values of ``frame``'s latest window, (sequence_length, features)."""
        names = list(self.feature_names or [])
        missing = [name for name in [*names, self.target_name] if name not in frame.columns]
        if missing:
            raise ConfigValueError(
                f"The rows given lack the run's column(s) {', '.join(map(repr, missing))}; "
                f"it forecasts from {self._columns()}."
            )
        needed = self.span + 1
        if len(frame) < needed:
            raise ConfigValueError(
                f"A window of this run spans {needed} rows ({self.sequence_length} samples "
                f"every {self.sampling_rate} rows); {len(frame)} were given. Give at least "
                f"the last {needed} rows of the series."
            )
        values = frame[names].to_numpy(dtype=np.float64)[len(frame) - needed :: self.sampling_rate]
        if not np.isfinite(values).all():
            raise ConfigValueError(
                "The window given has missing or infinite values; fill them (the training "
                "series was interpolated) before forecasting."
            )
        return values

    def _columns(self) -> str:
        return ", ".join(map(repr, dict.fromkeys([*(self.feature_names or []), self.target_name])))

    # -- what the model and the stages use ------------------------------------------------
    def model_kwargs(self) -> dict[str, Any]:
        """Model arguments implied by the data: windows in, one value out, MAE in units."""
        return {
            "input_shape": (self.sequence_length, len(self.feature_names or [])),
            "num_classes": 1,
            "task": "regression",
            "target_scale": self.target_std,
        }

    def naive_forecast_mae(self, split: str) -> float:
        """The book's common-sense baseline on ``split``, in the target's own units.

        Predicts that the target ``horizon`` samples after the window equals its value at the
        window's last row; returns the mean absolute error over the split's windows.
        """
        if self.stream is not None:  # a pass in chunks over the memory-mapped target
            return streamed_series.naive_forecast_mae(self, split)
        starts = self.window_starts(split)
        assert self.raw_target is not None
        last = self.raw_target[starts + self.span]
        future = self.raw_target[starts + self.delay]
        return float(np.abs(future - last).mean())

    def _batches(self, split: str, shuffle: bool) -> Any:
        if self.stream is not None:  # windows drawn from the memory-mapped files
            return streamed_series.window_loader(self, split, shuffle)
        assert self.series is not None and self.target is not None
        offsets = torch.arange(self.sequence_length, dtype=torch.int64) * self.sampling_rate
        rank, world_size = distributed_shard(split)
        return WindowBatches(
            self.series,
            self.target,
            torch.from_numpy(self.window_starts(split)),
            offsets,
            self.delay,
            batch_size=self.batch_size,
            shuffle=shuffle,
            seed=self.seed,
            relative=self.window_relative,
            rank=rank,
            world_size=world_size,
        )


def _safe_std(std: np.ndarray) -> np.ndarray:
    """Standard deviations with zeros (constant columns) replaced by 1."""
    return np.where(std > 0, std, 1.0)


def _is_numeric(column: Any) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _require_columns(columns: Any, names: list[str], source: str) -> None:
    missing = [name for name in names if name not in columns]
    if missing:
        raise ConfigValueError(
            f"No column {', '.join(map(repr, missing))} in {source}; its columns: "
            f"{', '.join(map(str, columns))}."
        )


def log_interpolated(missing: int, columns: list[str]) -> None:
    log.info(
        "timeseries: interpolated %d missing value(s) linearly in %s (within each split)",
        missing,
        ", ".join(columns),
    )


def no_rows_error(path: str | Path, columns: list[str]) -> DataNotFoundError:
    """A CSV with its header and no rows, said so: its columns read as text, and "non-numeric"
    would send a user looking for letters in their numbers."""
    header = f" (its header: {', '.join(map(str, columns))})" if columns else ""
    return DataNotFoundError(
        f"{path} has no data rows{header}: a series to cut windows from needs its rows, one "
        "per time step, under the header. Write the rows into it (an export that stopped "
        "early leaves just the header), or set 'data.path' to the file that holds them."
    )


def load_embedded(name: str) -> Any:
    """An embedded series as a DataFrame in time order (no download)."""
    if name != EMBEDDED_SERIES:
        raise ConfigValueError(f"Unknown embedded series '{name}'; known: {EMBEDDED_SERIES}.")
    try:
        from statsmodels.datasets import co2
    except ImportError as exc:
        raise DataNotFoundError(
            "The embedded CO2 series comes with statsmodels, which is not installed: "
            "`pip install statsmodels`, or set 'data.path' to a CSV file."
        ) from exc
    return co2.load_pandas().data.sort_index()


#: what ``data.path`` must name, for the message when it names a folder
_EXPECTED = "a CSV of a time column and numeric columns"


@contextlib.contextmanager
def csv_errors(path: Path, download: bool) -> Iterator[None]:
    """Reading ``path`` (at once or in chunks) inside: a missing file, a folder, a damaged
    or unreadable one and what pandas cannot parse, each as one paragraph naming it."""
    # pandas decompresses a .gz/.zip/... by its name: a damaged one fails deep in zlib
    refetch = (
        "put an intact copy there, or run again with `data.download=true` (presets with a "
        "'data.url') to fetch it anew"
    )
    try:
        with reading_data_file(path, refetch, "data.path"):  # is_file() may be denied too
            if path.is_dir():
                raise folder_given_error(path, "data.path", _EXPECTED)
            if not path.is_file():
                fetch = (
                    "" if download else ", or set `data.download=true` (presets with a 'data.url')"
                )
                raise DataNotFoundError(
                    f"No time-series file at {path}. Place the file there{fetch}."
                )
            yield
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataNotFoundError(f"Cannot read {path} as CSV: {str(exc).strip()}") from exc


def read_csv(path: Path, download: bool, **options: Any) -> Any:
    """The whole CSV (``options`` go to ``pandas.read_csv``, e.g. ``nrows``)."""
    import pandas as pd

    with csv_errors(path, download):
        return pd.read_csv(path, **options)


def parse_times(
    values: Any, column: str, fmt: str | None, source: str, offset: int = 0
) -> np.ndarray:
    """The time column ``values`` parsed (with ``fmt``, or inferred), as numpy values;
    ``values`` are the file's data rows from ``offset`` on, for the row a message names."""
    import pandas as pd

    try:
        return pd.to_datetime(values, format=fmt).to_numpy()
    except (ValueError, TypeError) as exc:
        reason = str(exc).split(". You might want to try", 1)[0].strip().rstrip(".")
        try:  # the first cell that fails, by its row in the file
            parsed = pd.to_datetime(values, format=fmt, errors="coerce")
            bad = np.flatnonzero(parsed.isna().to_numpy() & values.notna().to_numpy())
        except (ValueError, TypeError):
            bad = np.zeros(0, dtype=np.int64)
        if len(bad):
            reason = (
                f"data row {offset + int(bad[0]) + 1} (the header not counted) holds "
                f"{values.iloc[int(bad[0])]!r}"
                + (f", and {len(bad) - 1} more row(s) cannot be parsed" if len(bad) > 1 else "")
            )
        raise ConfigValueError(
            f"Cannot parse the time column {column!r} of {source}"
            f"{f' with the format {fmt!r}' if fmt else ''}: {reason}. Set 'data.time_format' "
            "(strftime codes, e.g. '%d.%m.%Y %H:%M:%S'), or fix the cell."
        ) from None


def sort_by_time(frame: Any, column: str, fmt: str | None, source: str) -> Any:
    """Rows sorted (stably) by the parsed ``column``."""
    _require_columns(frame.columns, [column], source)
    order = np.argsort(parse_times(frame[column], column, fmt, source), kind="stable")
    return frame.iloc[order].reset_index(drop=True)


def fetch_series_file(
    path: Path, url: str | None, sha256: str | None, expected_rows: int | None
) -> Path:
    """Download ``url`` (extracting ``path.name`` from a zip), check it, place it at ``path``."""
    if not url:
        raise DataNotFoundError(
            f"No time-series file at {path} and no 'data.url' to download it from; place the "
            "file there or set 'data.url'."
        )
    name = url.rsplit("/", 1)[-1].split("?")[0] or path.name
    fetched = download(RemoteFile(name, (url,), sha256=sha256), path.parent)
    if zipfile.is_zipfile(fetched):
        with zipfile.ZipFile(fetched) as archive:
            members = [m for m in archive.namelist() if Path(m).name == path.name]
            if not members:
                raise DataNotFoundError(
                    f"{fetched} holds no file named {path.name} (it holds "
                    f"{', '.join(archive.namelist()[:5])}); set 'data.path' to the file it holds."
                )
            handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            with os.fdopen(handle, "wb") as out, archive.open(members[0]) as member:
                while chunk := member.read(1 << 20):
                    out.write(chunk)
    else:
        tmp_name = str(fetched)
    tmp = Path(tmp_name)
    if expected_rows is not None:
        with open(tmp, "rb") as handle:
            rows = sum(1 for line in handle if line.strip()) - 1  # minus the header
        if rows != expected_rows:
            tmp.unlink(missing_ok=True)
            raise DataNotFoundError(
                f"The file downloaded from {url} holds {rows} data rows, not {expected_rows}: "
                "a truncated or different file. Run again to fetch it anew, or place the file "
                f"at {path} by hand."
            )
    os.replace(tmp, path)
    return path
