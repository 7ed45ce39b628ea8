"""Data paths that cannot be read as given -- permission denied, or a folder where a file
belongs -- are one paragraph that names the path and the fix: never a PermissionError
traceback, never "does not exist" for a folder that is there, and never the damaged-file
advice ("delete it") for a photo whose only fault is its permissions.

The sandbox runs as root, whom permissions never stop, so the file system's refusal is
imitated in-process (``open``/``os.scandir`` raise PermissionError for the paths denied);
one end-to-end run uses real permissions, with root's override capability dropped.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from pipelines.errors import DataNotFoundError
from pipelines.runtime.downloads import reading_data_file
from plugins.data.image_folder import ImageFolderDataModule
from plugins.data.tabular import TabularRegressionDataModule
from plugins.data.text import TextClassificationDataModule
from plugins.data.text_corpus import TextCorpusDataModule
from plugins.data.timeseries import TimeseriesDataModule

LABELLED = "text,label\n" + "".join(f"review {i},{'pos' if i % 2 else 'neg'}\n" for i in range(20))
TABLE = "".join(f"{i},{2 * i},{i % 3},{10 * i}\n" for i in range(20))
SERIES = "day,value\n" + "".join(f"2020-01-{i + 1:02d},{i * 1.5}\n" for i in range(28))
CORPUS = "the quick brown fox jumps over the lazy dog. " * 20

Deny = Callable[[Path], None]


@pytest.fixture
def deny(monkeypatch: pytest.MonkeyPatch) -> Deny:
    """``deny(path)``: opening that file, or listing that folder, raises PermissionError as
    the file system does for a user without read access (root ignores permissions)."""
    denied: set[Path] = set()

    def is_denied(target: Any) -> bool:
        return isinstance(target, str | os.PathLike) and Path(target).resolve() in denied

    def refuse(target: Any) -> PermissionError:
        return PermissionError(errno.EACCES, "Permission denied", os.fspath(target))

    real_open, real_scandir = builtins.open, os.scandir

    def guarded_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if is_denied(file):
            raise refuse(file)
        return real_open(file, *args, **kwargs)

    def guarded_scandir(path: Any = ".") -> Any:
        if is_denied(path):
            raise refuse(path)
        return real_scandir(path)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)  # what pathlib's read_bytes calls
    monkeypatch.setattr(os, "scandir", guarded_scandir)  # what os.walk calls
    return lambda path: denied.add(path.resolve())


def assert_unreadable(error: pytest.ExceptionInfo, path: Path, setting: str) -> None:
    message = str(error.value)
    assert f"Cannot read {path}: permission denied" in message, message
    assert "chmod" in message and f"`{setting}=`" in message, message
    assert "\n" not in message and "delete" not in message.lower(), message


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# -- permission denied --------------------------------------------------------------------


@pytest.mark.parametrize("setting", ["data.path", "data.test_path"])
def test_unreadable_labelled_text_file_names_it_and_its_setting(
    tmp_path: Path, deny: Deny, setting: str
) -> None:
    train, test = write(tmp_path / "train.csv", LABELLED), write(tmp_path / "test.csv", LABELLED)
    unreadable = train if setting == "data.path" else test
    deny(unreadable)
    data = TextClassificationDataModule(path=str(train), test_path=str(test))
    data.prepare_data()  # the file is there: only reading it is refused
    with pytest.raises(DataNotFoundError) as error:
        data.setup("fit")
    assert_unreadable(error, unreadable, setting)


@pytest.mark.parametrize("name", ["boston.csv", "boston.csv.gz"])
def test_unreadable_table_names_it(tmp_path: Path, deny: Deny, name: str) -> None:
    path = tmp_path / name
    if name.endswith(".gz"):
        import gzip

        path.write_bytes(gzip.compress(TABLE.encode()))
    else:
        write(path, TABLE)
    deny(path)
    with pytest.raises(DataNotFoundError) as error:
        TabularRegressionDataModule(path=str(path)).setup("fit")
    assert_unreadable(error, path, "data.path")


def test_unreadable_time_series_names_it(tmp_path: Path, deny: Deny) -> None:
    path = write(tmp_path / "series.csv", SERIES)
    deny(path)
    data = TimeseriesDataModule(path=str(path), target="value", sequence_length=2)
    data.prepare_data()
    with pytest.raises(DataNotFoundError) as error:
        data.setup("fit")
    assert_unreadable(error, path, "data.path")


def test_unreadable_text_corpus_names_it(tmp_path: Path, deny: Deny) -> None:
    path = write(tmp_path / "corpus.txt", CORPUS)
    deny(path)
    with pytest.raises(DataNotFoundError) as error:
        TextCorpusDataModule(path=str(path), sequence_length=5).setup("fit")
    assert_unreadable(error, path, "data.path")


def write_image(path: Path, seed: int) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(12, 12, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def photos(root: Path, per_class: int = 6) -> Path:
    for label, name in enumerate(("cats", "dogs")):
        for index in range(per_class):
            write_image(root / name / f"{index}.png", seed=10 * label + index)
    return root


def image_data(root: Path, tmp_path: Path) -> ImageFolderDataModule:
    return ImageFolderDataModule(root=str(root), image_size=8, cache_dir=str(tmp_path / "cache"))


def test_unreadable_image_is_not_called_corrupt(tmp_path: Path, deny: Deny) -> None:
    """The photo is fine: "delete it" would destroy it; its permissions are the fault."""
    root = photos(tmp_path / "photos")
    deny(root / "cats" / "2.png")
    with pytest.raises(DataNotFoundError) as error:
        image_data(root, tmp_path).setup("fit")
    assert_unreadable(error, root / "cats" / "2.png", "data.root")
    assert "decode" not in str(error.value) and "corrupt" not in str(error.value)


def test_unreadable_and_damaged_images_each_get_their_own_fix(tmp_path: Path, deny: Deny) -> None:
    root = photos(tmp_path / "photos")
    for name in ("1.png", "4.png"):
        deny(root / "dogs" / name)
    (root / "cats" / "3.png").write_bytes(b"not a png at all")
    with pytest.raises(DataNotFoundError) as error:
        image_data(root, tmp_path).setup("fit")
    message = str(error.value)
    unreadable, damaged = message.split("Cannot decode")
    assert "Cannot read 2 image files" in unreadable and "permission denied" in unreadable
    assert str(root / "dogs" / "1.png") in unreadable and str(root / "dogs" / "4.png") in unreadable
    assert "chmod" in unreadable and "delete" not in unreadable
    assert f"{root / 'cats' / '3.png'}" in damaged and "delete it" in damaged
    assert "dogs" not in damaged and "\n" not in message


def test_unlistable_class_folder_is_not_called_empty(tmp_path: Path, deny: Deny) -> None:
    """Skipped silently, the folder looked empty and the user was told to delete it."""
    root = photos(tmp_path / "photos")
    deny(root / "dogs")
    with pytest.raises(DataNotFoundError) as error:
        image_data(root, tmp_path).prepare_data()
    assert_unreadable(error, root / "dogs", "data.root")
    assert "no images" not in str(error.value)


def test_reading_data_file_words_permission_errors_only_when_told_the_setting() -> None:
    """Callers that name no setting (word vectors, MNIST) word their own message."""
    denied = PermissionError(errno.EACCES, "Permission denied", "prices.csv")
    told = reading_data_file(Path("prices.csv"), setting="data.path")
    with pytest.raises(DataNotFoundError, match=r"`data\.path=` elsewhere") as error, told:
        raise denied
    assert error.value.__cause__ is denied
    with pytest.raises(PermissionError), reading_data_file(Path("prices.csv")):
        raise denied


def drop_override() -> list[str] | None:
    """A command prefix under which root, too, is refused by permissions (None: there is
    none here, and permissions cannot be tested for real)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}"]


def test_a_really_unreadable_table_exits_2_with_one_paragraph(tmp_path: Path) -> None:
    prefix = drop_override()
    if prefix is None:
        pytest.skip("running as root without setpriv: permissions cannot be enforced")
    path = write(tmp_path / "boston.csv", TABLE)
    path.chmod(0)
    args = ["model=mlp", "data=housing", f"data.path={path}", "tracking=none"]
    result = run_cli([*args, "trainer.max_epochs=1"], cwd=tmp_path, prefix=prefix)
    assert result.returncode == 2, result.output
    assert f"Error: Cannot read {path}: permission denied" in result.stderr, result.output
    assert "Traceback" not in result.output


# -- a folder where a file belongs ---------------------------------------------------------


def folder_for(tmp_path: Path) -> Path:
    folder = tmp_path / "datasets"
    folder.mkdir()
    write(folder / "inside.csv", TABLE)
    return folder


@pytest.mark.parametrize(
    "make",
    [
        lambda p: TextClassificationDataModule(path=str(p)),
        lambda p: TabularRegressionDataModule(path=str(p)),
        lambda p: TimeseriesDataModule(path=str(p), target="value"),
        lambda p: TimeseriesDataModule(path=str(p), target="value", download=True, url="u"),
        lambda p: TextCorpusDataModule(path=str(p)),
        lambda p: TextCorpusDataModule(path=str(p), download=True, url="http://x/c.txt"),
    ],
    ids=["text", "tabular", "timeseries", "timeseries-download", "corpus", "corpus-download"],
)
def test_a_folder_for_data_path_is_called_a_folder(tmp_path: Path, make) -> None:
    """Not "does not exist" (it does), and no download that could only fail to replace it."""
    folder = folder_for(tmp_path)
    data = make(folder)
    with pytest.raises(DataNotFoundError) as error:
        data.prepare_data()
        data.setup("fit")
    message = str(error.value)
    assert message.startswith(f"{folder} is a folder; `data.path` must be a file"), message
    assert "does not exist" not in message and "No " not in message and "\n" not in message


def test_a_folder_for_data_test_path_names_that_setting(tmp_path: Path) -> None:
    train = write(tmp_path / "train.csv", LABELLED)
    folder = folder_for(tmp_path)
    data = TextClassificationDataModule(path=str(train), test_path=str(folder))
    with pytest.raises(DataNotFoundError, match=r"is a folder; `data\.test_path` must be a file"):
        data.prepare_data()
