"""CIFAR-10 python batches: layouts, extraction, download with checksum, format checks, CLI."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli
from pipelines.errors import ConfigValueError, DataNotFoundError
from pipelines.runtime.downloads import RemoteFile
from plugins.data.cifar import (
    CLASS_NAMES,
    FOLDER,
    CIFAR10DataModule,
    read_batch,
    write_batch,
)

NAMES = ["Airplane", "Car", "Bird", "Cat", "Deer", "Dog", "Frog", "Horse", "Ship", "Truck"]


def fake_cifar(folder: Path, n_train: int = 100, n_test: int = 20, meta: bool = True) -> Path:
    """Five training batches of ``n_train // 5`` images, a test batch, and batches.meta."""
    rng = np.random.default_rng(0)
    per_batch = n_train // 5
    for i in range(1, 6):
        images = rng.integers(0, 256, size=(per_batch, 3, 32, 32), dtype=np.uint8)
        write_batch(folder / f"data_batch_{i}", images, np.arange(per_batch) % 10)
    images = rng.integers(0, 256, size=(n_test, 3, 32, 32), dtype=np.uint8)
    write_batch(folder / "test_batch", images, np.arange(n_test) % 10)
    if meta:
        names = [name.encode() for name in NAMES]
        (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    return folder


def fake_archive(path: Path, source: Path) -> Path:
    """``source``'s batches as ``cifar-10-batches-py/*`` in a tar.gz, like the real archive."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for file in sorted(source.iterdir()):
            tar.add(file, arcname=f"{FOLDER}/{file.name}")
    return path


def test_extracted_folder(tmp_path: Path) -> None:
    fake_cifar(tmp_path / FOLDER)
    dm = CIFAR10DataModule(root=str(tmp_path), val_fraction=0.1, seed=1)
    dm.prepare_data()
    dm.setup()
    images = dm.splits["train"][0]
    assert images.shape == (90, 3, 32, 32) and images.dtype == torch.float32
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert len(dm.splits["val"][0]) == 10 and len(dm.splits["test"][0]) == 20
    assert sorted(dm.splits["val"][1].tolist()) == list(range(10)), "stratified"
    assert dm.classes == NAMES, "names come from batches.meta"
    assert dm.model_kwargs() == {"input_shape": (3, 32, 32), "num_classes": 10}
    assert dm.batch_size == 64


def test_root_is_the_folder_and_rows_are_rgb_planes(tmp_path: Path) -> None:
    fake_cifar(tmp_path, meta=False)
    red = np.zeros((10, 3072), dtype=np.uint8)
    red[:, :1024] = 255  # a row is 1024 red, then 1024 green, then 1024 blue bytes
    batch = {b"data": red, b"labels": list(range(10))}
    (tmp_path / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    dm = CIFAR10DataModule(root=str(tmp_path), train_limit=50, val_fraction=0.2)
    dm.setup()
    assert len(dm.splits["train"][0]) + len(dm.splits["val"][0]) == 50
    test = dm.splits["test"][0]
    assert bool((test[:, 0] == 1.0).all()) and bool((test[:, 1:] == 0.0).all())
    assert dm.classes == list(CLASS_NAMES), "the standard names without batches.meta"


def test_write_batch_round_trips(tmp_path: Path) -> None:
    images = np.random.default_rng(1).integers(0, 256, size=(4, 3, 32, 32), dtype=np.uint8)
    read_images, read_labels = read_batch(write_batch(tmp_path / "b", images, [3, 1, 4, 1]))
    assert np.array_equal(read_images, images) and read_labels.tolist() == [3, 1, 4, 1]


def test_archive_is_extracted(tmp_path: Path) -> None:
    fake_archive(tmp_path / "root" / "cifar-10-python.tar.gz", fake_cifar(tmp_path / "src"))
    dm = CIFAR10DataModule(root=str(tmp_path / "root"))
    dm.setup()
    assert (tmp_path / "root" / FOLDER / "data_batch_5").is_file()
    assert len(dm.splits["test"][0]) == 20


def test_archive_cannot_write_outside_root(tmp_path: Path) -> None:
    source = fake_cifar(tmp_path / "src")
    root = tmp_path / "a" / "root"
    root.mkdir(parents=True)
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        for name in ("../../data_batch_1", f"/tmp/{FOLDER}/test_batch"):
            member = tarfile.TarInfo(name)
            member.size = 3
            tar.addfile(member, io.BytesIO(b"bad"))
        link = tarfile.TarInfo(f"{FOLDER}/batches.meta")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
        for file in sorted(source.glob("*_batch*")):
            tar.add(file, arcname=f"{FOLDER}/{file.name}")
    dm = CIFAR10DataModule(root=str(root))
    dm.setup()
    written = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*"))
    assert [str(p) for p in written if p.name != "cifar-10-python.tar.gz"] == [
        "root",
        f"root/{FOLDER}",
        *(f"root/{FOLDER}/{name}" for name in sorted(p.name for p in source.glob("*_batch*"))),
    ], "only the batches, only in root/cifar-10-batches-py; the link to /etc/passwd skipped"
    assert dm.classes == list(CLASS_NAMES)


def test_corrupt_archive_is_named(tmp_path: Path) -> None:
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataNotFoundError, match=r"cifar-10-python\.tar\.gz"):
        CIFAR10DataModule(root=str(tmp_path)).prepare_data()


def test_truncated_archive_leaves_no_partial_folder(tmp_path: Path) -> None:
    """Batches extracted before the archive broke off are not left to pass for CIFAR-10."""
    good = fake_archive(tmp_path / "good.tar.gz", fake_cifar(tmp_path / "src"))
    root = tmp_path / "root"
    root.mkdir()
    archive = root / "cifar-10-python.tar.gz"
    archive.write_bytes(good.read_bytes()[: good.stat().st_size * 3 // 4])
    for _ in range(2):
        with pytest.raises(DataNotFoundError) as err:
            CIFAR10DataModule(root=str(root)).prepare_data()
        message = str(err.value)
        assert f"{archive} is damaged or cut short" in message and "\n" not in message
        assert "Delete it and run again with `data.download=true`" in message
        assert [p.name for p in root.iterdir()] == [archive.name], "no partial folder"


def test_download_checks_the_checksum(tmp_path: Path, monkeypatch) -> None:
    mirror = fake_archive(tmp_path / "mirror" / "cifar.tgz", fake_cifar(tmp_path / "src"))
    md5 = hashlib.md5(mirror.read_bytes()).hexdigest()
    good = RemoteFile("cifar-10-python.tar.gz", (mirror.as_uri(),), md5=md5)
    monkeypatch.setattr(CIFAR10DataModule, "archive", good)
    dm = CIFAR10DataModule(root=str(tmp_path / "cache"), download=True)
    dm.prepare_data()
    dm.setup()
    assert (tmp_path / "cache" / "cifar-10-python.tar.gz").is_file()
    assert (tmp_path / "cache" / FOLDER / "test_batch").is_file()
    assert len(dm.splits["test"][0]) == 20

    bad = RemoteFile("cifar-10-python.tar.gz", (mirror.as_uri(),), md5="0" * 32)
    monkeypatch.setattr(CIFAR10DataModule, "archive", bad)
    with pytest.raises(DataNotFoundError, match="checksum mismatch"):
        CIFAR10DataModule(root=str(tmp_path / "cache2"), download=True).prepare_data()
    assert list((tmp_path / "cache2").iterdir()) == [], "no partial file is left behind"


def test_class_subset_is_reindexed(tmp_path: Path) -> None:
    fake_cifar(tmp_path / FOLDER)
    dm = CIFAR10DataModule(root=str(tmp_path), classes=[6, 2], val_fraction=0.2)
    dm.setup()
    labels = torch.cat([dm.splits[part][1] for part in ("train", "val", "test")])
    assert set(labels.tolist()) == {0, 1}
    assert dm.classes == ["Frog", "Bird"]
    assert len(dm.splits["test"][1]) == 4, "2 frogs and 2 birds among 20 test images"
    assert dm.model_kwargs()["num_classes"] == 2

    frogs = CIFAR10DataModule(root=str(tmp_path), classes=[6], val_fraction=0.2)
    frogs.setup()
    assert set(frogs.splits["train"][1].tolist()) == {0} and frogs.classes == ["Frog"]


@pytest.mark.parametrize("classes", [[10], [3, 3], [-1]])
def test_wrong_classes_are_refused(classes: list[int]) -> None:
    with pytest.raises(ConfigValueError, match=r"0\.\.9"):
        CIFAR10DataModule(classes=classes)


class _Touch:
    """A pickle that creates a file when it is loaded by plain ``pickle.load``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return Path.touch, (self.path,)


@pytest.mark.parametrize(
    "damage", ["garbage", "truncated", "not_a_dict", "shape", "dtype", "labels", "code"]
)
def test_corrupt_batch_is_named(tmp_path: Path, damage: str) -> None:
    folder = fake_cifar(tmp_path / FOLDER)
    path = folder / "data_batch_3"
    data = np.zeros((20, 3072), dtype=np.uint8)
    damaged = {
        "garbage": b"this is not a pickle",
        "truncated": path.read_bytes()[:-500],
        "not_a_dict": pickle.dumps([1, 2, 3]),
        "shape": pickle.dumps({b"data": data[:, :100], b"labels": [0] * 20}),
        "dtype": pickle.dumps({b"data": data.astype(np.float32), b"labels": [0] * 20}),
        "labels": pickle.dumps({b"data": data, b"labels": [10] * 20}),
        "code": pickle.dumps({b"data": _Touch(tmp_path / "pwned"), b"labels": [0] * 20}),
    }
    path.write_bytes(damaged[damage])
    with pytest.raises(DataNotFoundError, match="data_batch_3") as err:
        CIFAR10DataModule(root=str(tmp_path)).setup()
    assert "data.download=true" in str(err.value)
    assert not (tmp_path / "pwned").exists(), "unpickling a batch runs no code"


def test_missing_files_say_where_and_how(tmp_path: Path) -> None:
    root = tmp_path / "none"
    (root / FOLDER).mkdir(parents=True)
    (root / FOLDER / "test_batch").write_bytes(b"")
    with pytest.raises(DataNotFoundError) as err:
        CIFAR10DataModule(root=str(root)).prepare_data()
    message = str(err.value)
    assert str(root / "cifar-10-python.tar.gz") in message
    assert f"{root / FOLDER}/ lacks data_batch_1" in message
    assert "data.download=true" in message and "data.root=" in message


def test_cli_trains_a_convnet_on_cifar(tmp_path: Path, workdir: Path) -> None:
    fake_cifar(tmp_path / "cifar" / FOLDER)
    result = run_cli(
        [
            "data=cifar10",
            f"data.root={tmp_path / 'cifar'}",
            "model=convnet",
            "model.filters=[8,16]",
            "trainer.max_epochs=1",
            "tracking=none",
        ],
        cwd=workdir,
    )
    assert result.returncode == 0, result.output
