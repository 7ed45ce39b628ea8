"""Extraction and reading of dataset files: staging folders a killed extraction leaves are
removed by the next one (and nothing else is), a garbled .bz2 is a damaged file but an
OSError of the disk stays what it is."""

from __future__ import annotations

import bz2
import errno
import io
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path, PurePosixPath

import pytest

from pipelines.errors import DataNotFoundError
from pipelines.runtime.downloads import (
    LOCKLESS_STAGING_AGE_S,
    STAGING_LOCK,
    extract_tar,
    reading_data_file,
    remove_stale_staging,
)

SRC = Path(__file__).resolve().parents[1] / "src"


def make_tar(path: Path, count: int = 20) -> Path:
    """A gzipped tar of ``data/file<i>.txt`` (``count`` small files)."""
    with tarfile.open(path, "w:gz") as tar:
        for i in range(count):
            body = f"file {i}\n".encode()
            info = tarfile.TarInfo(f"data/file{i}.txt")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return path


def keep_data(name: str) -> PurePosixPath | None:
    path = PurePosixPath(name)
    return PurePosixPath(*path.parts[1:]) if path.parts[0] == "data" else None


def extract(archive: Path, target: Path) -> Path:
    return extract_tar(archive, target, keep_data, ["file0.txt"], "the test archive")


def siblings(target: Path) -> list[str]:
    """The hidden folders beside ``target``: what staging leaves."""
    return sorted(p.name for p in target.parent.iterdir() if p.name.startswith("."))


#: extracts the archive argv[1] into argv[2], and stops for good (until killed) after the
#: 5th file, having said so in argv[3]: an extraction in progress, mid-way through its files
_STALLING_EXTRACTION = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path, PurePosixPath
    from pipelines.runtime.downloads import extract_tar

    seen = []

    def select(name):
        seen.append(name)
        if len(seen) == 6:
            Path(sys.argv[3]).write_text("stalled")
            time.sleep(600)
        return PurePosixPath(PurePosixPath(name).name)

    extract_tar(Path(sys.argv[1]), Path(sys.argv[2]), select, ["file0.txt"], "a test")
    """
)


def stalled_extraction(archive: Path, target: Path, flag: Path) -> subprocess.Popen:
    """A process extracting ``archive`` into ``target``, once it is stuck mid-way."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", _STALLING_EXTRACTION, str(archive), str(target), str(flag)],
        env=env,
    )
    deadline = time.monotonic() + 60
    while not flag.exists():
        assert child.poll() is None, "the extraction ended before stalling"
        assert time.monotonic() < deadline, "the extraction never stalled"
        time.sleep(0.05)
    return child


def test_killed_extraction_staging_is_removed_by_the_next_but_a_live_one_is_not(
    tmp_path: Path,
) -> None:
    archive = make_tar(tmp_path / "data.tar.gz")
    target = tmp_path / "cache" / "data"
    child = stalled_extraction(archive, target, tmp_path / "stalled")
    try:
        [staging] = siblings(target)
        assert (target.parent / staging / "data" / "file4.txt").is_file(), "mid-extraction"
        extract(archive, target)  # while the other extraction is alive: its folder stays
        assert siblings(target) == [staging]
        assert {p.name for p in target.iterdir()} == {f"file{i}.txt" for i in range(20)}
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert siblings(target) == [staging], "SIGKILL leaves the staging folder behind"
    extract(archive, target)  # the next extraction removes it
    assert siblings(target) == []
    assert len(list(target.iterdir())) == 20


def _age(path: Path, seconds: float) -> Path:
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_only_abandoned_staging_folders_of_the_target_are_removed(tmp_path: Path) -> None:
    """Removed: a lockless leftover (an older version's, or one killed before its lock)
    once it is old, and one whose lock nobody holds. Everything else is left alone."""
    target = tmp_path / "data"
    old = LOCKLESS_STAGING_AGE_S + 60

    def staging(name: str, *contents: str, lock: bool = False) -> Path:
        folder = tmp_path / name
        for item in contents:
            (folder / item).mkdir(parents=True)
            (folder / item / "part.txt").write_text("partial")
        folder.mkdir(exist_ok=True)
        if lock:
            (folder / STAGING_LOCK).write_text("")
        return folder

    removed = {
        _age(staging(".data.abcd_123", "data"), old),  # lockless, old
        _age(staging(".data.zz99zz99", "data", "data.replaced"), old),
        staging(".data.k3y4nk3y", "data", lock=True),  # a lock nobody holds: its owner died
        _age(staging(".data.emptyyyy"), old),  # killed right after creating it
    }
    kept = {
        staging(".data.young123", "data"),  # lockless and recent: perhaps still starting
        _age(staging(".data.backup01", "train", "test"), old),  # not what staging holds
        _age(staging(".data.abcd12345", "data"), old),  # 9 characters: not mkdtemp's
        _age(staging(".other.abcd1234", "data"), old),  # another target's
        _age(staging("data.abcd1234", "data"), old),  # not hidden
    }
    not_a_folder = tmp_path / ".data.f1lename"
    not_a_folder.write_text("a file")
    elsewhere = _age(staging("elsewhere", "data"), old)
    link = tmp_path / ".data.l1nk0000"
    link.symlink_to(elsewhere, target_is_directory=True)

    assert set(remove_stale_staging(target)) == removed
    assert not any(path.exists() for path in removed)
    assert all(path.is_dir() for path in kept)
    assert not_a_folder.read_text() == "a file" and link.is_symlink()
    assert (elsewhere / "data" / "part.txt").is_file(), "a link is not followed"


# -- .bz2: garbled data is a damaged file, an OSError of the disk is not ----------------------


def garbled_bz2(text: bytes) -> bytes:
    data = bz2.compress(text)
    return data[:40] + b"garbage" * 40 + data[-40:]


def cut_bz2(text: bytes) -> bytes:
    data = bz2.compress(text)
    return data[: len(data) // 2]


ROWS = b"time,a,b,price\n" + b"".join(f"{i},{i},{2 * i},{3 * i}\n".encode() for i in range(300))


def read_as_table(path: Path) -> object:
    from plugins.data.tabular import TabularRegressionDataModule

    return TabularRegressionDataModule(path=str(path), target="price").setup("fit")


def read_as_time_series(path: Path) -> object:
    from plugins.data.timeseries import read_csv

    return read_csv(path, download=False)


@pytest.mark.parametrize("damage", [garbled_bz2, cut_bz2], ids=["garbled", "cut-short"])
@pytest.mark.parametrize("read", [read_as_table, read_as_time_series], ids=["tabular", "series"])
def test_damaged_bz2_is_one_paragraph_naming_the_file(tmp_path: Path, damage, read) -> None:
    path = tmp_path / "prices.csv.bz2"
    path.write_bytes(damage(ROWS))
    with pytest.raises(DataNotFoundError) as err:
        read(path)
    message = str(err.value)
    assert f"{path} is damaged or cut short" in message and "\n" not in message
    assert "intact copy" in message


@pytest.mark.parametrize(
    "error",
    [
        PermissionError(errno.EACCES, "Permission denied", "prices.csv.bz2"),
        OSError(errno.EIO, "Input/output error"),
        OSError("Invalid data stream and more"),
    ],
    ids=["permission", "disk", "other-message"],
)
def test_other_oserrors_are_not_called_damaged(error: OSError) -> None:
    with pytest.raises(type(error)) as err, reading_data_file(Path("prices.csv.bz2")):
        raise error
    assert err.value is error


def test_garbled_bz2_inside_reading_data_file_is_damaged() -> None:
    damaged = r"x\.bz2 is damaged.*Invalid data stream"
    with pytest.raises(DataNotFoundError, match=damaged), reading_data_file(Path("x.bz2")):
        bz2.decompress(garbled_bz2(ROWS))
