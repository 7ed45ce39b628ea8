"""Images in class folders: layouts, seeded splits, decoding, cache, errors, the book's split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_cli
from pipelines.errors import ConfigValueError, DataNotFoundError
from plugins.data import image_folder
from plugins.data.image_folder import ImageFolderDataModule, main, make_book_split

SHARED_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "images"
COLORS = {"cats": (200, 40, 40), "dogs": (40, 40, 200)}  # red-ish vs blue-ish: learnable


def write_image(path: Path, color: tuple[int, int, int], seed: int, size=(20, 16)) -> Path:
    """A noisy ``size`` (width, height) image around ``color``, in the format its suffix names."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(-30, 31, size=(size[1], size[0], 3))
    pixels = np.clip(np.array(color) + noise, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def make_classes(folder: Path, per_class: int = 10, ext: str = ".png") -> Path:
    for label, (name, color) in enumerate(COLORS.items()):
        for index in range(per_class):
            write_image(folder / name / f"{index:03d}{ext}", color, seed=100 * label + index)
    return folder


def datamodule(root: Path, cache_dir: Path, **kwargs) -> ImageFolderDataModule:
    kwargs.setdefault("image_size", 16)
    dm = ImageFolderDataModule(root=str(root), cache_dir=str(cache_dir), **kwargs)
    dm.prepare_data()
    dm.setup()
    return dm


def counts(dm: ImageFolderDataModule) -> dict[str, list[int]]:
    return {
        name: np.bincount(labels.numpy(), minlength=2).tolist()
        for name, (_, labels) in dm.splits.items()
    }


def test_flat_layout_is_split_stratified_and_seeded(tmp_path: Path) -> None:
    root = make_classes(tmp_path / "photos")
    dm = datamodule(root, tmp_path / "cache", seed=3)
    assert dm.classes == ["cats", "dogs"]
    assert counts(dm) == {"train": [6, 6], "val": [2, 2], "test": [2, 2]}
    images, labels = dm.splits["train"]
    assert images.shape == (12, 3, 16, 16) and images.dtype == torch.float32
    assert labels.dtype == torch.int64
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    red, blue = images[labels == 0], images[labels == 1]
    assert red[:, 0].mean() > red[:, 2].mean() and blue[:, 2].mean() > blue[:, 0].mean()
    assert dm.model_kwargs() == {"input_shape": (3, 16, 16), "num_classes": 2}

    again = datamodule(root, tmp_path / "cache", seed=3)
    for name in ("train", "val", "test"):
        assert torch.equal(again.splits[name][0], dm.splits[name][0])
    other = datamodule(root, tmp_path / "cache", seed=4)
    assert not torch.equal(other.splits["val"][0], dm.splits["val"][0])


def test_split_folders_are_used_as_given(tmp_path: Path) -> None:
    for split, n in (("train", 6), ("validation", 3), ("test", 2)):
        make_classes(tmp_path / "small" / split, per_class=n, ext=".jpg")
    dm = datamodule(tmp_path / "small", tmp_path / "cache")
    assert counts(dm) == {"train": [6, 6], "val": [3, 3], "test": [2, 2]}


def test_val_alias_and_the_test_split_comes_off_train(tmp_path: Path) -> None:
    make_classes(tmp_path / "root" / "train", per_class=10)
    make_classes(tmp_path / "root" / "val", per_class=3)
    dm = datamodule(tmp_path / "root", tmp_path / "cache", test_fraction=0.2)
    assert counts(dm) == {"train": [8, 8], "val": [3, 3], "test": [2, 2]}


def test_a_missing_validation_folder_is_split_off_train(tmp_path: Path) -> None:
    make_classes(tmp_path / "root" / "train", per_class=10)
    make_classes(tmp_path / "root" / "test", per_class=3)
    dm = datamodule(tmp_path / "root", tmp_path / "cache", val_fraction=0.3)
    assert counts(dm) == {"train": [7, 7], "val": [3, 3], "test": [3, 3]}


def test_formats_sizes_grayscale_and_ignored_files(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    for index, ext in enumerate((".png", ".JPG", ".jpeg", ".bmp", ".gif", ".webp")):
        for name, color in COLORS.items():
            write_image(root / name / f"{index}{ext}", color, seed=index, size=(40, 30))
    (root / "cats" / ".hidden.png").write_bytes(b"not an image")
    (root / "cats" / "notes.txt").write_text("not an image either")
    (root / ".thumbnails").mkdir()
    dm = datamodule(root, tmp_path / "cache", image_size=(12, 8), val_fraction=0.25)
    assert sum(len(labels) for _, labels in dm.splits.values()) == 12
    assert dm.splits["train"][0].shape[1:] == (3, 12, 8)
    gray = datamodule(root, tmp_path / "cache", image_size=10, color_mode="grayscale")
    assert gray.model_kwargs() == {"input_shape": (1, 10, 10), "num_classes": 2}


def test_limit_per_class_takes_the_first_sorted_files(tmp_path: Path) -> None:
    root = make_classes(tmp_path / "photos", per_class=12)
    dm = datamodule(root, tmp_path / "cache", limit_per_class=5, val_fraction=0.2)
    assert sum(len(labels) for _, labels in dm.splits.values()) == 10
    _, entries = dm.scan()
    assert [p.name for p, label, _ in entries if label == 0] == [f"{i:03d}.png" for i in range(5)]


def test_cache_is_reused_and_invalidated_when_a_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_classes(tmp_path / "photos")
    cache = tmp_path / "cache"
    first = datamodule(root, cache)
    (written,) = cache.glob("image_folder-*.pt")

    def must_not_decode(*args, **kwargs):
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(image_folder, "decode_images", must_not_decode)
    second = datamodule(root, cache)
    assert torch.equal(second.splits["train"][0], first.splits["train"][0])

    decoded = []
    monkeypatch.undo()
    real = image_folder.decode_images
    monkeypatch.setattr(
        image_folder, "decode_images", lambda *a, **k: decoded.append(1) or real(*a, **k)
    )
    write_image(root / "dogs" / "000.png", (0, 200, 0), seed=1, size=(24, 16))
    third = datamodule(root, cache)
    assert decoded == [1]
    assert list(cache.glob("image_folder-*.pt")) != [written], "replaced, not added"
    assert len(list(cache.glob("image_folder-*.pt"))) == 1
    assert not torch.equal(
        torch.cat([third.splits[s][0] for s in ("train", "val", "test")]).sum(0),
        torch.cat([first.splits[s][0] for s in ("train", "val", "test")]).sum(0),
    )

    datamodule(root, tmp_path / "off", cache=False)
    assert not (tmp_path / "off").exists()


def test_unreadable_cache_is_decoded_again(tmp_path: Path) -> None:
    root = make_classes(tmp_path / "photos")
    datamodule(root, tmp_path / "cache")
    (written,) = (tmp_path / "cache").glob("image_folder-*.pt")
    written.write_bytes(b"garbage")
    dm = datamodule(root, tmp_path / "cache")
    assert len(dm.splits["train"][0]) == 12
    assert written.stat().st_size > 1000, "rewritten"


def error_message(tmp_path: Path, error: type[Exception], **kwargs) -> str:
    with pytest.raises(error) as err:
        datamodule(kwargs.pop("root"), tmp_path / "cache", **kwargs)
    return str(err.value)


def test_missing_or_unset_root(tmp_path: Path) -> None:
    message = error_message(tmp_path, DataNotFoundError, root=tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in message and "does not exist" in message
    assert "data.root" in message
    assert "data.root" in error_message(tmp_path, ConfigValueError, root="???")


def test_fewer_than_two_classes(tmp_path: Path) -> None:
    write_image(tmp_path / "loose" / "a.png", (1, 2, 3), seed=0)
    message = error_message(tmp_path, DataNotFoundError, root=tmp_path / "loose")
    assert "0 class sub-folder(s)" in message and "1 image file(s) directly inside" in message
    write_image(tmp_path / "one" / "cats" / "a.png", (1, 2, 3), seed=0)
    message = error_message(tmp_path, DataNotFoundError, root=tmp_path / "one")
    assert "1 class sub-folder(s) (cats)" in message and "at least 2" in message


def test_a_class_without_images(tmp_path: Path) -> None:
    root = make_classes(tmp_path / "photos")
    (root / "birds").mkdir()
    (root / "birds" / "readme.txt").write_text("no pictures yet")
    message = error_message(tmp_path, DataNotFoundError, root=root)
    assert str(root / "birds") in message and "hold no images" in message


def test_a_corrupt_image_is_named(tmp_path: Path) -> None:
    root = make_classes(tmp_path / "photos", ext=".jpg")
    (root / "cats" / "005.jpg").write_bytes(b"\xff\xd8 broken")
    good = (root / "dogs" / "002.jpg").read_bytes()
    (root / "dogs" / "002.jpg").write_bytes(good[: len(good) // 2])  # truncated
    message = error_message(tmp_path, DataNotFoundError, root=root)
    assert "2 image file(s)" in message
    assert str(root / "cats" / "005.jpg") in message and str(root / "dogs" / "002.jpg") in message
    assert "delete them" in message


def test_split_folders_that_disagree_on_classes(tmp_path: Path) -> None:
    make_classes(tmp_path / "root" / "train", per_class=4)
    make_classes(tmp_path / "root" / "validation", per_class=2)
    (tmp_path / "root" / "validation" / "dogs").rename(tmp_path / "root" / "validation" / "dog")
    message = error_message(tmp_path, DataNotFoundError, root=tmp_path / "root")
    assert str(tmp_path / "root" / "validation") in message
    assert "missing: dogs" in message and "extra: dog" in message


def test_split_folders_without_train(tmp_path: Path) -> None:
    make_classes(tmp_path / "root" / "validation", per_class=2)
    message = error_message(tmp_path, DataNotFoundError, root=tmp_path / "root")
    assert "no train/ folder" in message


def test_bad_settings(tmp_path: Path) -> None:
    root = make_classes(tmp_path / "photos", per_class=3)
    assert "val_fraction" in error_message(
        tmp_path, ConfigValueError, root=root, val_fraction=0.6, test_fraction=0.5
    )
    assert "image_size" in error_message(tmp_path, ConfigValueError, root=root, image_size=0)
    message = error_message(tmp_path, ConfigValueError, root=root, test_fraction=0.1)
    assert "Cannot split 6 images of 2 classes" in message


def fake_kaggle_train(folder: Path, per_class: int) -> Path:
    for prefix, color in (("cat", COLORS["cats"]), ("dog", COLORS["dogs"])):
        for index in range(per_class):
            write_image(folder / f"{prefix}.{index}.jpg", color, seed=index)
    return folder


def test_make_book_split_builds_the_books_layout(tmp_path: Path) -> None:
    source = fake_kaggle_train(tmp_path / "kaggle" / "train", per_class=8)
    dest = tmp_path / "cats_vs_dogs_small"
    counts_made = make_book_split(source, dest, train=4, validation=2, test=1)
    assert counts_made == {"train": 8, "validation": 4, "test": 2}
    assert sorted(p.name for p in (dest / "validation" / "dogs").iterdir()) == [
        "dog.4.jpg",
        "dog.5.jpg",
    ]
    assert [p.name for p in (dest / "test" / "cats").iterdir()] == ["cat.6.jpg"]
    dm = datamodule(dest, tmp_path / "cache")
    assert dm.classes == ["cats", "dogs"]
    assert counts(dm) == {"train": [4, 4], "val": [2, 2], "test": [1, 1]}

    again = tmp_path / "copied"
    sizes = ["--train", "2", "--validation", "1", "--test", "1"]
    argv = [str(source.parent), str(again), *sizes, "--copy"]
    assert main(["make-book-split", *argv]) == 0
    assert (again / "test" / "dogs" / "dog.3.jpg").is_file()
    with pytest.raises(DataNotFoundError, match=r"lacks 4 of the 20 files"):
        make_book_split(source, tmp_path / "more", train=6, validation=2, test=2)


def test_cli_trains_a_convnet_on_an_image_folder(tmp_path: Path) -> None:
    root = make_classes(tmp_path / "photos", per_class=12)
    work = tmp_path / "work"
    work.mkdir()
    args = ["data=image_folder", "model=convnet", "trainer.max_epochs=1", "tracking=none"]
    result = run_cli(
        [*args, f"data.root={root}", "data.image_size=16", f"data.cache_dir={tmp_path / 'c'}"],
        cwd=work,
    )
    assert result.returncode == 0, result.output
    assert "test/acc" in result.stdout
    assert list((tmp_path / "c").glob("image_folder-*.pt"))


@pytest.mark.skipif(not SHARED_IMAGES.is_dir(), reason="../shared/data/images is absent")
def test_real_cats_and_dogs_photos(tmp_path: Path) -> None:
    dm = datamodule(SHARED_IMAGES, tmp_path / "cache", image_size=32)
    assert dm.classes == ["cats", "dogs"]
    assert sum(len(labels) for _, labels in dm.splits.values()) == 400
    assert counts(dm) == {"train": [120, 120], "val": [40, 40], "test": [40, 40]}
    assert dm.model_kwargs()["input_shape"] == (3, 32, 32)
