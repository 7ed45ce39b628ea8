"""MNIST idx files: format checks, layouts, download with checksum, the real test set."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli
from pipelines.errors import ConfigValueError, DataNotFoundError
from pipelines.runtime.downloads import RemoteFile, download
from plugins.data.mnist import FashionMNISTDataModule, MNISTDataModule, read_idx, write_idx

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def write_split(folder: Path, part: str, images: np.ndarray, labels: np.ndarray, gz: bool):
    for stem, array in zip(STEMS[part], (images, labels), strict=True):
        write_idx(folder / (f"{stem}.gz" if gz else stem), array)


def fake_mnist(folder: Path, gz: bool = True, n_train: int = 200, n_test: int = 50) -> None:
    rng = np.random.default_rng(0)
    for part, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n) % 10
        write_split(folder, part, images, labels, gz)


def test_flat_gzipped_files(tmp_path: Path) -> None:
    fake_mnist(tmp_path)
    dm = MNISTDataModule(root=str(tmp_path), val_fraction=0.1, seed=1)
    dm.prepare_data()
    dm.setup()
    images = dm.splits["train"][0]
    assert images.shape == (180, 1, 28, 28) and images.dtype == torch.float32
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert len(dm.splits["val"][0]) == 20 and len(dm.splits["test"][0]) == 50
    assert sorted(dm.splits["val"][1].tolist()) == sorted(list(range(10)) * 2), "stratified"
    assert dm.model_kwargs() == {"input_shape": (1, 28, 28), "num_classes": 10}


def test_no_validation_split_trains_on_every_image(tmp_path: Path) -> None:
    """``val_fraction=0`` is how the book trains (ch. 2, ch. 5): every image, no val loader."""
    fake_mnist(tmp_path)
    dm = MNISTDataModule(root=str(tmp_path), val_fraction=0)
    dm.setup()
    assert len(dm.splits["train"][0]) == 200 and len(dm.splits["val"][0]) == 0
    assert dm.val_dataloader() == []


def test_torchvision_layout_with_raw_files(tmp_path: Path) -> None:
    fake_mnist(tmp_path / "FashionMNIST" / "raw", gz=False)
    dm = FashionMNISTDataModule(root=str(tmp_path), train_limit=100)
    dm.setup()
    assert len(dm.splits["train"][0]) + len(dm.splits["val"][0]) == 100
    assert dm.classes[9] == "Ankle boot"


@pytest.mark.parametrize("damage", ["magic", "truncate"])
def test_corrupt_file_is_named(tmp_path: Path, damage: str) -> None:
    fake_mnist(tmp_path, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    data = path.read_bytes()
    path.write_bytes(b"\x00\x00\x08\x99" + data[4:] if damage == "magic" else data[:-100])
    with pytest.raises(DataNotFoundError, match="t10k-images-idx3-ubyte"):
        MNISTDataModule(root=str(tmp_path)).setup()


@pytest.mark.parametrize(
    ("stem", "array", "fragment"),
    [
        # a labels file that holds images trained fully and then failed in the test stage
        (
            "t10k-labels-idx1-ubyte",
            np.zeros((50, 28, 28), np.uint8),
            "should hold labels but holds images",
        ),
        ("train-images-idx3-ubyte", np.zeros(200, np.uint8), "should hold images but holds labels"),
        ("t10k-labels-idx1-ubyte", np.zeros(49, np.uint8), "holds 50 images but"),
        ("train-labels-idx1-ubyte", np.full(200, 255, np.uint8), "holds labels up to 255"),
    ],
    ids=["images-as-labels", "labels-as-images", "count-mismatch", "labels-out-of-range"],
)
def test_file_of_the_wrong_kind_is_named_at_setup(
    tmp_path: Path, stem: str, array: np.ndarray, fragment: str
) -> None:
    fake_mnist(tmp_path)
    write_idx(tmp_path / f"{stem}.gz", array)
    with pytest.raises(DataNotFoundError, match=fragment) as err:
        MNISTDataModule(root=str(tmp_path)).setup("fit")
    assert str(tmp_path / f"{stem}.gz") in str(err.value)
    assert "data.download=true" in str(err.value)


def test_labels_file_of_images_fails_the_cli_before_training(workdir: Path, tmp_path: Path):
    """Exit 2 with one paragraph from the prepare stage's work before the run, not a
    traceback after training."""
    fake_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros((50, 28, 28), np.uint8))
    result = run_cli(
        ["data=mnist", f"data.root={tmp_path}", "trainer.max_epochs=1", "tracking=none"],
        cwd=workdir,
    )
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output, result.output
    assert "t10k-labels-idx1-ubyte.gz should hold labels but holds images" in result.stderr
    assert "stage 0: prepare" not in result.output and "stage 1: fit" not in result.output
    assert not (workdir / "outputs").exists(), "refused before the run: its folder removed"


def _garbled(gz: bytes) -> bytes:
    """The gzip header and trailer around deflate data that cannot be decoded."""
    return gz[:10] + b"\xff" * 32 + gz[-8:]


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda gz: gz[: len(gz) // 2], id="cut-short"),  # EOFError
        pytest.param(_garbled, id="garbled"),  # zlib.error
        pytest.param(lambda gz: gz[:-8] + bytes(8), id="bad-checksum"),  # gzip.BadGzipFile
    ],
)
def test_damaged_gz_is_named_with_the_fix(tmp_path: Path, damage) -> None:
    fake_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataNotFoundError) as err:
        MNISTDataModule(root=str(tmp_path)).setup("fit")
    message = str(err.value)
    assert f"{path} is damaged or cut short" in message
    assert "Delete it and run again with `data.download=true`" in message
    assert "\n" not in message, "one paragraph"


def test_missing_files_say_where_and_how(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as err:
        MNISTDataModule(root=str(tmp_path / "none")).prepare_data()
    message = str(err.value)
    assert str(tmp_path / "none" / "train-images-idx3-ubyte.gz") in message
    assert str(tmp_path / "none" / "MNIST" / "raw") in message
    assert "data.download=true" in message


def test_download_checks_the_checksum(tmp_path: Path) -> None:
    source = tmp_path / "mirror" / "file.bin"
    source.parent.mkdir()
    source.write_bytes(b"payload" * 1000)
    md5 = hashlib.md5(source.read_bytes()).hexdigest()
    good = RemoteFile("file.bin", (source.as_uri(),), md5=md5)
    assert download(good, tmp_path / "cache").read_bytes() == source.read_bytes()

    bad = RemoteFile("other.bin", (source.as_uri(),), md5="0" * 32)
    with pytest.raises(DataNotFoundError, match="checksum mismatch"):
        download(bad, tmp_path / "cache2")
    assert list((tmp_path / "cache2").iterdir()) == [], "no partial file is left behind"


def test_second_mirror_used_when_first_fails(tmp_path: Path) -> None:
    source = tmp_path / "file.bin"
    source.write_bytes(b"abc")
    remote = RemoteFile(
        "file.bin",
        ((tmp_path / "missing.bin").as_uri(), source.as_uri()),
        sha256=hashlib.sha256(b"abc").hexdigest(),
    )
    assert download(remote, tmp_path / "cache").read_bytes() == b"abc"


def test_datamodule_downloads_missing_files(tmp_path: Path, monkeypatch) -> None:
    mirror = tmp_path / "mirror"
    fake_mnist(mirror)
    files = {
        key: (stem, hashlib.md5((mirror / f"{stem}.gz").read_bytes()).hexdigest())
        for key, (stem, _) in MNISTDataModule.files.items()
    }
    monkeypatch.setattr(MNISTDataModule, "files", files)
    monkeypatch.setattr(MNISTDataModule, "mirrors", (mirror.as_uri() + "/",))
    dm = MNISTDataModule(root=str(tmp_path / "cache"), download=True)
    dm.prepare_data()
    dm.setup()
    assert (tmp_path / "cache" / "train-images-idx3-ubyte.gz").is_file()
    assert len(dm.splits["test"][0]) == 50


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="../shared/data/mnist is absent")
def test_real_mnist_test_set_split_into_idx_files(tmp_path: Path) -> None:
    images = read_idx(SHARED_MNIST / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(SHARED_MNIST / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28)
    assert np.bincount(labels).tolist()[:3] == [980, 1135, 1032]
    write_split(tmp_path, "train", images[:8000], labels[:8000], gz=True)
    write_split(tmp_path, "test", images[8000:], labels[8000:], gz=False)
    dm = MNISTDataModule(root=str(tmp_path))
    dm.setup()
    assert len(dm.splits["train"][0]) + len(dm.splits["val"][0]) == 8000
    assert len(dm.splits["test"][0]) == 2000
    shutil.rmtree(tmp_path)


def test_class_subset_is_reindexed(tmp_path: Path) -> None:
    fake_mnist(tmp_path)
    dm = MNISTDataModule(root=str(tmp_path), classes=[7, 3], val_fraction=0.25)
    dm.setup()
    labels = torch.cat([dm.splits[part][1] for part in ("train", "val", "test")])
    assert set(labels.tolist()) == {0, 1}
    assert dm.classes == ["7", "3"]
    assert len(dm.splits["test"][1]) == 10, "5 sevens and 5 threes among 50 test images"
    assert dm.model_kwargs()["num_classes"] == 2


@pytest.mark.parametrize(
    ("classes", "fragment"),
    [
        ([10], "holds 10, which is not one of its labels"),
        ([3, -1], "holds -1, which is not one of its labels"),
        ([7, 3, 7], "repeats 7"),
        ([1.5], "holds 1.5, which is not a whole number"),
        (["a"], "holds 'a', which is not a whole number"),
        ([True], "holds True, which is not a whole number"),
        (5, "is not a list"),
    ],
    ids=["too-big", "negative", "repeated", "fraction", "text", "bool", "not-a-list"],
)
def test_wrong_classes_are_one_paragraph_before_any_file_is_read(
    tmp_path: Path, classes: object, fragment: str
) -> None:
    """Out of range was an IndexError traceback (-1) or a message about 'data.val_fraction'
    (10); a repeated label silently made a class that no sample has."""
    with pytest.raises(ConfigValueError) as err:
        MNISTDataModule(root=str(tmp_path / "absent"), classes=classes)
    message = str(err.value)
    assert message.startswith(f"Wrong value for 'data.classes': {classes!r} {fragment}.")
    assert "distinct MNIST labels, whole numbers from 0 to 9, in the order" in message
    assert "\n" not in message


def test_wrong_fashion_classes_name_the_labels() -> None:
    with pytest.raises(ConfigValueError, match=r"from 0 to 9 \(0=T-shirt/top, .* 9=Ankle boot\)"):
        FashionMNISTDataModule(classes=[0, 12])
    assert MNISTDataModule(classes=[]).keep is None, "an empty list keeps every class"
