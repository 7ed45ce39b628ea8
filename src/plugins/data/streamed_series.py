"""Time series streamed from disk: the other path of
:class:`plugins.data.timeseries.TimeseriesDataModule`, for a series whose used
columns as float32 would not fit ``data.memory_budget``.

The CSV is parsed once, in chunks of :data:`CHUNK_ROWS` rows, into a float64 file on disk;
from there, in passes of chunks, the rows are put in time order, gaps are interpolated
within each split, the training rows' means and standard deviations are computed, and the
normalised float32 features and target are written to memory-mapped files (plus the raw
target in float64, for the naive baseline). Every step is the in-memory path's arithmetic
on the same float64 values, so the windows are the same numbers (the statistics, summed in
chunks, may differ in their last bits); a ``DataLoader`` draws them per sample from the
memory-mapped files (a batch's windows with one gather, ``__getitems__``) in the same
seeded order (``randperm(seed + epoch)``).

The files are kept in ``cache_dir`` under a name that hashes the settings and the CSV's
size and modification time: the next run on the same file, and ``evaluate`` or ``resume``
of a streamed run, open them instead of parsing the CSV again. With ``cache_dir`` null they
go to a temporary folder, removed when the process ends.

Bad data is found while parsing and told as the in-memory path tells it, naming the file:
a non-numeric column, infinite values (their rows and times), a header without rows, a
column with no value in a split, a line pandas cannot parse.
"""

from __future__ import annotations

import atexit
import bz2
import contextlib
import errno
import gzip
import hashlib
import json
import logging
import lzma
import math
import os
import re
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from pipelines.api import ConfigValueError, DataNotFoundError, distributed_shard, shard_order
from plugins.data.memory_budget import count_stream_lines, format_bytes

if TYPE_CHECKING:
    from plugins.data.timeseries import TimeseriesDataModule

log = logging.getLogger(__name__)

#: rows parsed, and rows of the arrays handled, at a time
CHUNK_ROWS = 100_000
#: rows read to see which columns are numeric before choosing the path
GLANCE_ROWS = 1000
#: bumped when the files' layout or their arithmetic changes: older entries are rebuilt
CACHE_VERSION = 1
_META = "meta.json"
#: a half-built entry this old is one whose run was killed, not one being built
_STALE_SECONDS = 24 * 3600


# -- the rows in a file, before choosing the path ---------------------------------------

#: the compressions pandas infers from a name, opened the same way to count the lines
_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def count_rows(path: Path) -> int:
    """The data rows of the CSV at ``path``: its lines (decompressed as pandas reads a
    ``.gz``, ``.bz2``, ``.xz`` or ``.zip``) minus the header, counted at disk speed."""
    with _open_bytes(path) as handle:
        return max(0, count_stream_lines(handle) - 1)


@contextlib.contextmanager
def _open_bytes(path: Path) -> Iterator[IO[bytes]]:
    suffix = path.suffix.lower()
    if suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist() if not m.endswith("/")]
            if len(members) != 1:  # pandas refuses these too
                raise DataNotFoundError(
                    f"{path} holds {len(members)} files; a zipped series must hold exactly one "
                    "CSV. Unzip it and set 'data.path' to the CSV inside."
                )
            with archive.open(members[0]) as handle:
                yield handle
        return
    with _OPENERS.get(suffix, open)(path, "rb") as handle:
        yield handle


# -- the files on disk ---------------------------------------------------------------


@dataclass
class SeriesFiles:
    """A series' memory-mapped files, and what the in-memory path would hold beside them."""

    folder: Path
    rows: int
    features: list[str]
    target: str
    bounds: dict[str, tuple[int, int]]
    mean: list[float]
    std: list[float]
    target_mean: float
    target_std: float

    @property
    def series_file(self) -> Path:
        """``(rows, features)`` float32: the normalised features."""
        return self.folder / "series.f32"

    @property
    def target_file(self) -> Path:
        """``(rows,)`` float32: the target as the model learns it."""
        return self.folder / "target.f32"

    @property
    def raw_target_file(self) -> Path:
        """``(rows,)`` float64: the target as read (gaps filled), for the naive baseline."""
        return self.folder / "target_raw.f64"

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The series, the target and the raw target, memory-mapped read-only."""
        shape = (self.rows, len(self.features))
        return (
            np.memmap(self.series_file, np.float32, "r", shape=shape),
            np.memmap(self.target_file, np.float32, "r", shape=(self.rows,)),
            np.memmap(self.raw_target_file, np.float64, "r", shape=(self.rows,)),
        )

    def complete(self) -> bool:
        sizes = {
            self.series_file: self.rows * len(self.features) * 4,
            self.target_file: self.rows * 4,
            self.raw_target_file: self.rows * 8,
        }
        return all(path.is_file() and path.stat().st_size == size for path, size in sizes.items())

    def meta(self) -> dict[str, Any]:
        return {
            "version": CACHE_VERSION,
            "rows": self.rows,
            "features": self.features,
            "target": self.target,
            "bounds": {split: list(bound) for split, bound in self.bounds.items()},
            "mean": self.mean,
            "std": self.std,
            "target_mean": self.target_mean,
            "target_std": self.target_std,
        }

    @classmethod
    def read(cls, folder: Path) -> SeriesFiles | None:
        """The entry in ``folder``, or None when absent, unfinished or of another version."""
        try:
            meta = json.loads((folder / _META).read_text(encoding="utf-8"))
            if meta.get("version") != CACHE_VERSION:
                return None
            files = cls(
                folder=folder,
                rows=int(meta["rows"]),
                features=[str(name) for name in meta["features"]],
                target=str(meta["target"]),
                bounds={split: (int(a), int(b)) for split, (a, b) in meta["bounds"].items()},
                mean=[float(v) for v in meta["mean"]],
                std=[float(v) for v in meta["std"]],
                target_mean=float(meta["target_mean"]),
                target_std=float(meta["target_std"]),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        return files if files.complete() else None

    def scaled_as(self, scaling: dict[str, Any]) -> bool:
        """Whether these files hold the run's columns, normalised as ``scaling`` says."""
        return (
            self.features == list(scaling["features"])
            and self.target == str(scaling["target"])
            and self.mean == [float(v) for v in scaling["mean"]]
            and self.std == [float(v) for v in scaling["std"]]
            and self.target_mean == float(scaling["target_mean"])
            and self.target_std == float(scaling["target_std"])
        )


def open_series(module: TimeseriesDataModule) -> tuple[SeriesFiles, bool]:
    """The module's series as memory-mapped files, found in its cache folder or built there,
    and whether they were found. The module's columns, splits and normalisation are set
    from them, as the in-memory ``setup`` sets them."""
    root = module.cache_dir or _temporary_root()
    names = _entry_names(module)
    for name in names:
        files = SeriesFiles.read(root / name)
        if files is not None and (
            module.run_scaling is None or files.scaled_as(module.run_scaling)
        ):
            _take(module, files)
            return files, True
    files = _build(module, root, names[-1])
    return files, False


def _take(module: TimeseriesDataModule, files: SeriesFiles) -> None:
    module.feature_names, module.target_name = list(files.features), files.target
    module.bounds = dict(files.bounds)
    module.mean = np.asarray(files.mean, dtype=np.float64)
    module.std = np.asarray(files.std, dtype=np.float64)
    module.target_mean, module.target_std = files.target_mean, files.target_std
    module._check_lengths()  # the window's geometry is not in the key


def _entry_names(module: TimeseriesDataModule) -> list[str]:
    """``<file>-<settings>-<file's size and time>``: the entry the settings give, then, for a
    run's normalisation (``evaluate``), that entry again with it in the name, for data the
    run's statistics do not match (``data.path=other.csv``)."""
    settings = {
        "source": str(Path(module.path).expanduser().resolve()) if module.path else "embedded",
        "time_column": module.time_column,
        "time_format": module.time_format,
        "target": module.configured["target"],
        "features": module.configured["features"],
        "train_fraction": module.train_fraction,
        "val_fraction": module.val_fraction,
        "normalize_target": module.normalize_target,
        "version": CACHE_VERSION,
    }
    if module.path:
        from plugins.data.timeseries import csv_errors

        path = Path(module.path)
        with csv_errors(path, module.download):  # a missing file, a folder: one paragraph
            stat = path.stat()
        version = f"{stat.st_size}-{stat.st_mtime_ns}"
    else:
        import statsmodels

        version = statsmodels.__version__
    stem = re.sub(r"[^A-Za-z0-9_.]+", "_", Path(module.path).stem if module.path else "co2")
    base = f"{stem}-{_digest(settings)}-{_digest(version)}"
    if module.run_scaling is None:
        return [base]
    return [base, f"{base}-{_digest(module.run_scaling)}"]


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


_TEMPORARY: list[Path] = []


def _temporary_root() -> Path:
    """``data.cache_dir: null``: one temporary folder for the process, removed at its end."""
    if not _TEMPORARY:
        folder = Path(tempfile.mkdtemp(prefix="pipelines-streamed-series-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _TEMPORARY.append(folder)
    return _TEMPORARY[0]


def _build(module: TimeseriesDataModule, root: Path, name: str) -> SeriesFiles:
    """Parse the series into a new entry ``root/name``, written aside and renamed into
    place when complete (a run killed meanwhile leaves no entry that looks whole)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(f".{name}.*"):  # left by a run killed while building
            if time.time() - stale.stat().st_mtime > _STALE_SECONDS:
                shutil.rmtree(stale, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    except OSError as exc:
        raise _cache_error(module, root, exc) from exc
    try:
        files = _write_entry(module, work)
        final = root / name
        try:
            os.rename(work, final)
        except OSError:  # another run built it meanwhile (theirs is as good), or a damaged
            found = SeriesFiles.read(final)  # entry is in the way (this one replaces it)
            if found is not None:
                shutil.rmtree(work, ignore_errors=True)
                return found
            shutil.rmtree(final, ignore_errors=True)
            os.rename(work, final)
        files.folder = final
        _drop_older(root, name)
        return files
    except OSError as exc:
        shutil.rmtree(work, ignore_errors=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS):
            raise _cache_error(module, root, exc) from exc
        raise
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _guessed_format(stamps: Any) -> str | None:
    """The format pandas guesses from the first time in ``stamps`` (None: none found)."""
    from pandas.tseries.api import guess_datetime_format

    present = stamps.dropna()
    return guess_datetime_format(str(present.iloc[0])) if len(present) else None


def _cache_error(module: TimeseriesDataModule, root: Path, exc: OSError) -> ConfigValueError:
    return ConfigValueError(
        f"Cannot write the streamed copy of {module.source} into {root} "
        f"({exc.strerror or exc}): the series is streamed from float32 files there "
        "(data.in_memory). Set `data.cache_dir` to a writable folder on a disk with room for "
        "them (about the CSV's size), or free some space."
    )


def _drop_older(root: Path, name: str) -> None:
    """Remove the entries of the same settings made from an earlier version of the file."""
    stem_and_settings, current = name.split("-")[:-1], name.split("-")[-1]
    if name.count("-") > 2:  # <base>-<run's scaling>: leave the base entries alone
        return
    prefix = "-".join(stem_and_settings) + "-"
    for entry in root.glob(f"{prefix}*"):
        rest = entry.name[len(prefix) :].split("-")[0]
        if entry.is_dir() and rest != current:
            shutil.rmtree(entry, ignore_errors=True)


# -- building the files ----------------------------------------------------------------


def _chunks(module: TimeseriesDataModule) -> Iterator[Any]:
    """The rows as read, in the file's order, a chunk at a time."""
    import pandas as pd

    from plugins.data.timeseries import csv_errors

    if module.path is None:
        yield module.take_embedded()
        return
    path = Path(module.path)
    with csv_errors(path, module.download), pd.read_csv(path, chunksize=CHUNK_ROWS) as reader:
        yield from reader


@dataclass
class _Scan:
    """What one pass over the file found."""

    columns: list[str]
    #: the columns written to the float64 file, in its order
    written: list[str]
    numeric: list[str]
    rows: int
    #: the rows' times (None without a time column)
    times: _Times | None
    #: column -> (its first infinite rows named, how many)
    infinite: dict[str, tuple[list[str], int]]


def _scan(module: TimeseriesDataModule, raw_file: Path) -> _Scan:
    """One pass over the file: every non-time column as float64 into ``raw_file`` (rows in
    the file's order), which columns hold numbers throughout, the times, infinite values."""
    from plugins.data.timeseries import _is_numeric, _require_columns, parse_times

    time_column = module.time_column if module.path is not None else None
    columns: list[str] | None = None
    written: list[str] = []
    non_numeric: set[str] = set()
    times = _Times(raw_file.parent) if time_column is not None else None
    time_format = module.time_format
    infinite: dict[str, tuple[list[str], int]] = {}
    rows = 0
    with open(raw_file, "wb") as out:
        for chunk in _chunks(module):
            if columns is None:
                columns = list(chunk.columns)
                if time_column is not None:
                    _require_columns(columns, [time_column], module.source)
                module._check_target(columns, _default_target(module))
                written = [c for c in columns if c != time_column]
            if times is not None:
                stamps = chunk[time_column]
                # pandas guesses a format from the first time it reads: the first chunk's
                # guess is pinned for the rest, as one parse of the whole column would be
                fmt = module.time_format if rows == 0 else time_format
                times.add(parse_times(stamps, time_column, fmt, module.source, rows))
                if rows == 0:
                    time_format = module.time_format or _guessed_format(stamps)
            block = np.full((len(chunk), len(written)), np.nan)
            for index, column in enumerate(written):
                values = chunk[column]
                if not _is_numeric(values):
                    non_numeric.add(column)
                    continue
                block[:, index] = values.to_numpy(dtype=np.float64)
                if module.path is not None:
                    _note_infinite(module, chunk, rows, column, block[:, index], infinite)
            block.tofile(out)
            rows += len(chunk)
    if columns is None:  # pandas gave no chunk at all
        from plugins.data.timeseries import read_csv

        columns = list(read_csv(Path(str(module.path)), module.download, nrows=0).columns)
    numeric = [c for c in written if c not in non_numeric]
    return _Scan(columns, written, numeric, rows, times, infinite)


class _Times:
    """The rows' times, a chunk at a time, kept on disk: rows already in time order (the
    common case) need no sort, and nothing a row is held in memory for them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.parts: list[Path | np.ndarray] = []
        self.in_order = True
        self.last: Any = None

    def add(self, times: np.ndarray) -> None:
        if self.in_order and len(times):
            try:  # NaT compares false: such rows go through the sort, which puts them last
                ordered = bool(np.all(times[1:] >= times[:-1])) and (
                    self.last is None or bool(times[0] >= self.last)
                )
            except TypeError:
                ordered = False
            self.in_order, self.last = ordered, times[-1]
        if times.dtype == object:  # Timestamps with a time zone: np.save would pickle them
            self.parts.append(times)
        else:
            part = self.folder / f"times-{len(self.parts)}.npy"
            np.save(part, times, allow_pickle=False)
            self.parts.append(part)

    def order(self) -> np.ndarray | None:
        """The rows' stable sort by time (as the in-memory path sorts them), or None for rows
        in time order already."""
        if self.in_order:
            return None
        parts = [np.load(p) if isinstance(p, Path) else p for p in self.parts]
        return np.argsort(np.concatenate(parts), kind="stable")

    def remove(self) -> None:
        for part in self.parts:
            if isinstance(part, Path):
                part.unlink(missing_ok=True)


def _default_target(module: TimeseriesDataModule) -> str | None:
    from plugins.data.timeseries import EMBEDDED_SERIES

    return EMBEDDED_SERIES if module.path is None else None


def _note_infinite(
    module: TimeseriesDataModule,
    chunk: Any,
    offset: int,
    column: str,
    values: np.ndarray,
    infinite: dict[str, tuple[list[str], int]],
) -> None:
    rows = np.flatnonzero(np.isinf(values))
    if not len(rows):
        return
    named, count = infinite.get(column, ([], 0))
    for row in rows[: max(0, 5 - len(named))]:
        named.append(f"{offset + row + 1}{module._time_of(chunk, int(row))}")
    infinite[column] = (named, count + len(rows))


def _write_entry(module: TimeseriesDataModule, work: Path) -> SeriesFiles:
    """The entry's files in ``work``: the in-memory ``setup``, a chunk at a time."""
    from plugins.data.timeseries import _safe_std, no_rows_error

    raw_file = work / "read.f64"
    scan = _scan(module, raw_file)
    if scan.rows == 0:
        raise no_rows_error(str(module.path), scan.columns)
    features, target = module._choose_columns(scan.columns, scan.numeric, _default_target(module))
    used = list(dict.fromkeys([*features, target]))
    found = {c: scan.infinite[c] for c in used if c in scan.infinite}
    if found:
        raise module.infinite_error(found)
    module.feature_names, module.target_name = features, target
    rows = scan.rows
    n_train = int(rows * module.train_fraction)
    n_val = int(rows * module.val_fraction)
    module.bounds = {
        "train": (0, n_train),
        "val": (n_train, n_train + n_val),
        "test": (n_train + n_val, rows),
    }
    module._check_lengths()

    # the used columns, in time order
    read = np.memmap(raw_file, np.float64, "r", shape=(rows, len(scan.written)))
    picked = [scan.written.index(c) for c in used]
    order = scan.times.order() if scan.times is not None else None
    if scan.times is not None:
        scan.times.remove()
    values_file = work / "values.f64"
    values = np.memmap(values_file, np.float64, "w+", shape=(rows, len(used)))
    for first in range(0, rows, CHUNK_ROWS):
        stop = min(first + CHUNK_ROWS, rows)
        source = read[first:stop] if order is None else read[order[first:stop]]
        values[first:stop] = source[:, picked]
    del read, order
    raw_file.unlink()

    _interpolate(module, values, used)

    # the training rows' statistics (or the run's), as the in-memory path computes them
    if module.run_scaling is None:
        mean, std = _statistics(values, n_train)
        feature_index = [used.index(c) for c in features]
        module.mean = mean[feature_index]
        module.std = _safe_std(std[feature_index])
        if module.normalize_target:
            column = used.index(target)
            module.target_mean = float(mean[column])
            module.target_std = float(_safe_std(np.array([std[column]]))[0])
    else:
        module._scale_as_the_run(module.run_scaling)
    assert module.mean is not None and module.std is not None

    files = SeriesFiles(
        folder=work,
        rows=rows,
        features=list(features),
        target=target,
        bounds=dict(module.bounds),
        mean=module.mean.tolist(),
        std=module.std.tolist(),
        target_mean=float(module.target_mean),
        target_std=float(module.target_std),
    )
    feature_index = [used.index(c) for c in features]
    target_index = used.index(target)
    series = np.memmap(files.series_file, np.float32, "w+", shape=(rows, len(features)))
    scaled = np.memmap(files.target_file, np.float32, "w+", shape=(rows,))
    raw_target = np.memmap(files.raw_target_file, np.float64, "w+", shape=(rows,))
    for first in range(0, rows, CHUNK_ROWS):
        stop = min(first + CHUNK_ROWS, rows)
        block = np.asarray(values[first:stop])
        series[first:stop] = ((block[:, feature_index] - module.mean) / module.std).astype(
            np.float32
        )
        column = block[:, target_index]
        scaled[first:stop] = ((column - module.target_mean) / module.target_std).astype(np.float32)
        raw_target[first:stop] = column
    for array in (series, scaled, raw_target):
        array.flush()
    del series, scaled, raw_target, values
    values_file.unlink()
    (work / _META).write_text(json.dumps(files.meta(), indent=1), encoding="utf-8")
    log.info(
        "timeseries: wrote the streamed copy of %s (%s) to %s",
        module.source,
        format_bytes(rows * (len(features) * 4 + 4 + 8)),
        work.parent,
    )
    return files


def _interpolate(module: TimeseriesDataModule, values: np.ndarray, used: list[str]) -> None:
    """Fill gaps linearly within each split, as ``DataFrame.interpolate(method="linear",
    limit_direction="both")`` fills each split in memory: ``np.interp`` between the gap's
    neighbours, the first or last value at a split's ends. A gap may span chunks; it is
    filled once its right neighbour is read."""
    from plugins.data.timeseries import log_interpolated

    count = len(used)
    missing = np.zeros(count, dtype=np.int64)
    empty: set[int] = set()
    for first_row, stop_row in module.bounds.values():
        last_at: list[int | None] = [None] * count  # the last value seen, where and what
        last_value = [0.0] * count
        gap_from: list[int | None] = [None] * count  # the start of a gap not yet filled
        for first in range(first_row, stop_row, CHUNK_ROWS):
            stop = min(first + CHUNK_ROWS, stop_row)
            block = np.array(values[first:stop])
            gaps = np.isnan(block)
            per_column = gaps.sum(axis=0)
            if not per_column.any() and all(start is None for start in gap_from):
                for c in range(count):
                    last_at[c], last_value[c] = stop - 1, float(block[-1, c])
                continue
            missing += per_column
            for c in range(count):
                column = block[:, c]
                valid = np.flatnonzero(~gaps[:, c])
                if gaps[0, c] and gap_from[c] is None:
                    gap_from[c] = first
                if not len(valid):
                    continue
                start = gap_from[c]
                if start is not None:  # a gap up to this chunk's first value
                    end = first + int(valid[0])
                    at = np.arange(start, end)
                    if last_at[c] is None:  # at the split's start: its first value
                        filled = np.full(len(at), column[valid[0]])
                    else:
                        filled = np.interp(at, [last_at[c], end], [last_value[c], column[valid[0]]])
                    inside = at >= first
                    column[at[inside] - first] = filled[inside]
                    if not inside.all():
                        values[at[~inside], c] = filled[~inside]
                    gap_from[c] = None
                within = np.flatnonzero(gaps[:, c])
                within = within[(within > valid[0]) & (within < valid[-1])]
                if len(within):
                    column[within] = np.interp(within, valid, column[valid])
                if valid[-1] < len(column) - 1:
                    gap_from[c] = first + int(valid[-1]) + 1
                last_at[c], last_value[c] = first + int(valid[-1]), float(column[valid[-1]])
            values[first:stop] = block
        for c in range(count):  # a gap up to the split's end: its last value
            start = gap_from[c]
            if start is None:
                continue
            if last_at[c] is None:
                empty.add(c)
            else:
                values[start:stop_row, c] = last_value[c]
    if missing.any():
        log_interpolated(int(missing.sum()), [str(used[c]) for c in np.flatnonzero(missing)])
    if empty:
        raise module.no_value_error([str(used[c]) for c in sorted(empty)])


def _statistics(values: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The mean and (population) standard deviation of the first ``rows`` rows, per column,
    in two passes of chunks: ``values[:rows].mean(0)`` and ``.std(0)`` without holding them."""
    total = np.zeros(values.shape[1])
    for first in range(0, rows, CHUNK_ROWS):
        total += np.asarray(values[first : min(first + CHUNK_ROWS, rows)]).sum(axis=0)
    mean = total / rows
    squares = np.zeros(values.shape[1])
    for first in range(0, rows, CHUNK_ROWS):
        deviations = np.asarray(values[first : min(first + CHUNK_ROWS, rows)]) - mean
        squares += (deviations * deviations).sum(axis=0)
    return mean, np.sqrt(squares / rows)


# -- what the stages use -----------------------------------------------------------------


def naive_forecast_mae(module: TimeseriesDataModule, split: str) -> float:
    """:meth:`TimeseriesDataModule.naive_forecast_mae` over the memory-mapped raw target,
    a chunk of windows at a time."""
    first, stop = module.bounds[split]
    count = max(0, stop - module.delay - first)
    raw = module.raw_target
    assert raw is not None
    total = 0.0
    for begin in range(first, first + count, CHUNK_ROWS):
        end = min(begin + CHUNK_ROWS, first + count)
        future = raw[begin + module.delay : end + module.delay]
        last = raw[begin + module.span : end + module.span]
        total += float(np.abs(future - last).sum())
    return total / count if count else float("nan")


class SeriesWindows(Dataset):
    """The windows of one split, drawn from the memory-mapped files: window ``i`` starts at
    row ``first + i``; its inputs are the rows ``start + offsets`` (``(T, features)``), its
    target the target ``delay`` rows after its start. ``relative`` as in
    :meth:`plugins.data.timeseries.WindowBatches.gather`. The files are opened in the
    process that reads them (a ``DataLoader`` worker too)."""

    def __init__(
        self,
        files: SeriesFiles,
        first: int,
        count: int,
        offsets: np.ndarray,
        delay: int,
        relative: bool,
    ) -> None:
        self.files = files
        self.first = first
        self.count = count
        self.offsets = offsets
        self.delay = delay
        self.relative = relative
        self._arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": None}

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, targets = self.__getitems__([index])
        return inputs[0], targets[0]

    def __getitems__(self, indices: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of windows ``(B, T, features)`` and targets ``(B,)``, gathered at once."""
        if self._arrays is None:
            self._arrays = self.files.arrays()
        series, target, _ = self._arrays
        starts = self.first + np.asarray(indices, dtype=np.int64)
        rows = starts[:, None] + self.offsets[None, :]
        inputs = torch.from_numpy(series[rows])
        targets = torch.from_numpy(target[starts + self.delay])
        if self.relative:  # as WindowBatches.gather: in float32, in torch
            inputs = inputs - inputs[:, -1:, :]
            targets = targets - torch.from_numpy(target[starts + self.offsets[-1]])
        return inputs, targets


def _as_gathered(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``collate_fn``: ``__getitems__`` hands over a whole batch already."""
    return batch


class WindowOrder(Sampler):
    """The batches of window indices, in the in-memory path's order: training windows
    shuffled by ``randperm(count)`` seeded ``seed + epoch``, the others in time order.

    Lightning calls :meth:`set_epoch` before every epoch (a resumed run sees the order an
    uninterrupted one would); without it the epoch counts up by itself."""

    def __init__(
        self,
        count: int,
        batch_size: int,
        shuffle: bool,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.count = count
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank, self.world_size = rank, max(1, world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(math.ceil(self.count / self.world_size) / self.batch_size)

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.count, generator=generator)
        else:
            order = torch.arange(self.count)
        order = shard_order(order, self.rank, self.world_size).numpy()
        self.epoch += 1
        for begin in range(0, len(order), self.batch_size):
            yield order[begin : begin + self.batch_size]


class WindowLoader:
    """The split's batches from a ``DataLoader`` over :class:`SeriesWindows`. Lightning
    takes any iterable with ``__len__``; its ``sampler`` is what Lightning sets the epoch
    on."""

    batch_sampler = None

    def __init__(self, windows: SeriesWindows, order: WindowOrder) -> None:
        self.windows = windows
        self.sampler = order
        # gathering a batch from the page cache costs well under a millisecond: worker
        # processes would cost more to start every pass than they save
        self.loader = DataLoader(
            windows, batch_sampler=order, num_workers=0, collate_fn=_as_gathered
        )

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iter(self.loader)


def window_loader(module: TimeseriesDataModule, split: str, shuffle: bool) -> WindowLoader:
    """The split's windows, batched as :class:`plugins.data.timeseries.WindowBatches`
    batches them in memory."""
    assert module.stream is not None
    first, stop = module.bounds[split]
    count = max(0, stop - module.delay - first)
    offsets = np.arange(module.sequence_length, dtype=np.int64) * module.sampling_rate
    windows = SeriesWindows(
        module.stream, first, count, offsets, module.delay, module.window_relative
    )
    rank, world_size = distributed_shard(split)
    order = WindowOrder(count, module.batch_size, shuffle, module.seed, rank, world_size)
    return WindowLoader(windows, order)
