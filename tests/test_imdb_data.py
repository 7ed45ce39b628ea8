"""IMDB: an extracted folder counts as the dataset only while it is complete.

An extraction records how many reviews each folder held (``aclImdb/.extracted.json``); a
folder placed by hand must hold a review in each of its four folders. The tests build small
archives of 6 reviews per folder, as tests/test_text_data.py does.
"""

from __future__ import annotations

import json
import logging
import tarfile
from pathlib import Path

import pytest

from pipelines.errors import DataNotFoundError
from plugins.data.imdb import MARKER, IMDBDataModule

PER_FOLDER = 6
FOLDERS = ("train/neg", "train/pos", "test/neg", "test/pos")


def fake_aclimdb(root: Path) -> Path:
    """``root/aclImdb`` with ``PER_FOLDER`` reviews in each of its four folders."""
    folder = root / "aclImdb"
    for sub in FOLDERS:
        (folder / sub).mkdir(parents=True)
        for i in range(PER_FOLDER):
            word = "great" if sub.endswith("pos") else "awful"
            (folder / sub / f"{i}_{7 + i % 3}.txt").write_text(f"A {word} film, truly {word}.")
    return folder


def archive_in(root: Path, tmp_path: Path) -> Path:
    """``root/aclImdb_v1.tar.gz`` made from a fake dataset built outside ``root``."""
    source = fake_aclimdb(tmp_path / "source")
    root.mkdir(parents=True, exist_ok=True)
    archive = root / "aclImdb_v1.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname="aclImdb")
    return archive


def reviews(folder: Path, sub: str) -> list[Path]:
    return sorted((folder / sub).glob("*.txt"))


def test_extraction_records_what_each_folder_holds(tmp_path: Path) -> None:
    root = tmp_path / "root"
    archive_in(root, tmp_path)
    folder = IMDBDataModule(root=str(root)).locate()
    assert json.loads((folder / MARKER).read_text()) == dict.fromkeys(FOLDERS, PER_FOLDER)


@pytest.mark.parametrize("lost", [PER_FOLDER, PER_FOLDER // 2], ids=["emptied", "half-filled"])
def test_extracted_folder_that_lost_reviews_is_extracted_again(tmp_path: Path, lost: int) -> None:
    root = tmp_path / "root"
    archive_in(root, tmp_path)
    folder = IMDBDataModule(root=str(root)).locate()
    for path in reviews(folder, "test/pos")[:lost]:
        path.unlink()
    assert IMDBDataModule(root=str(root)).locate() == folder
    assert all(len(reviews(folder, sub)) == PER_FOLDER for sub in FOLDERS)
    assert sorted(p.name for p in root.iterdir()) == ["aclImdb", "aclImdb_v1.tar.gz"]


def test_extracted_folder_that_lost_reviews_without_archive_is_one_paragraph(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    archive = archive_in(root, tmp_path)
    folder = IMDBDataModule(root=str(root)).locate()
    archive.unlink()
    reviews(folder, "train/pos")[0].unlink()
    with pytest.raises(DataNotFoundError) as err:
        IMDBDataModule(root=str(root)).prepare_data()
    message = str(err.value)
    assert "\n" not in message
    assert f"{folder} are incomplete: train/pos/ holds 5 of the 6 reviews" in message
    assert "aclImdb_v1.tar.gz" in message and "data.download=true" in message
    assert len(reviews(folder, "train/neg")) == PER_FOLDER, "nothing is removed"


def test_hand_placed_folder_with_an_empty_folder_is_refused(tmp_path: Path) -> None:
    folder = fake_aclimdb(tmp_path)
    for path in reviews(folder, "test/pos"):
        path.unlink()
    with pytest.raises(DataNotFoundError) as err:
        IMDBDataModule(root=str(tmp_path)).prepare_data()
    message = str(err.value)
    assert f"{folder} are incomplete: test/pos/ holds no reviews" in message
    assert "\n" not in message


def test_hand_placed_subset_is_used_as_it_is_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = fake_aclimdb(tmp_path)
    (folder / MARKER).write_text("{not json")  # a damaged record: judged as hand-placed
    with caplog.at_level(logging.WARNING, logger="plugins.data.imdb"):
        assert IMDBDataModule(root=str(tmp_path)).locate() == folder
    assert "the real dataset has 12500 in each folder" in caplog.text
    assert (folder / MARKER).read_text() == "{not json", "a user's folder is not written to"


def test_reviews_added_to_an_extracted_folder_are_fine(tmp_path: Path) -> None:
    root = tmp_path / "root"
    archive_in(root, tmp_path)
    folder = IMDBDataModule(root=str(root)).locate()
    (folder / "train" / "pos" / "99_10.txt").write_text("One of my own: great.")
    (root / "aclImdb_v1.tar.gz").unlink()
    assert IMDBDataModule(root=str(root)).locate() == folder
