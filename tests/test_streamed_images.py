"""Image folders larger than the memory budget are streamed from disk (issue 23).

``data.in_memory=auto`` decodes into memory when the float32 pixels fit
``data.memory_budget``, else streams: the same splits, the same batches in the same order,
so the same metrics; ``evaluate`` and ``predict`` work on a streamed run, and a damaged file
is one paragraph naming it, as on the in-memory path.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import FAST, mlflow_runs, run_cli, store_uri
from pipelines.errors import ConfigValueError
from plugins.data.image_folder import ImageFolderDataModule
from plugins.data.memory_budget import memory_budget_bytes

SHARED_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "images"
COLORS = {"blue": (20, 40, 220), "green": (30, 200, 40), "red": (220, 30, 20)}
PER_CLASS = 20


def photo_folder(folder: Path) -> tuple[Path, list[str]]:
    """Real photos (``../shared/data/images``: cats and dogs, 30 of each) when present,
    else 60 generated JPEGs of 3 colours; and the arguments that limit them."""
    if SHARED_IMAGES.is_dir():
        return SHARED_IMAGES, ["data.limit_per_class=30"]
    rng = np.random.default_rng(0)
    for name, color in COLORS.items():
        (folder / name).mkdir(parents=True)
        for index in range(PER_CLASS):
            noise = rng.integers(-40, 41, size=(48, 64, 3))
            pixels = np.clip(np.array(color) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{index:03d}.jpg", quality=90)
    return folder, []


def train(workdir: Path, root: Path, extra: list[str]) -> tuple[object, float, str]:
    args = [
        "data=image_folder",
        f"data.root={root}",
        "data.image_size=32",
        "data.batch_size=8",
        "data.num_workers=2",
        "model=convnet",
        "seed=7",
        *FAST,
        *extra,
    ]
    started = time.perf_counter()
    result = run_cli(args, workdir)
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.output
    return mlflow_runs(store_uri(workdir))[-1], seconds, result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The same folder trained streamed (a 10 KB budget) and in memory."""
    base = tmp_path_factory.mktemp("streamed")
    root, limit = photo_folder(base / "photos")
    found: dict[str, object] = {"root": root, "limit": limit}
    for path, extra in (
        ("streamed", ["data.memory_budget=10KB"]),
        ("in_memory", ["data.in_memory=true"]),
    ):
        workdir = base / path
        workdir.mkdir()
        run, seconds, output = train(workdir, root, [*limit, *extra])
        found[path] = (workdir, run, seconds, output)
    return found


def test_a_budget_below_the_data_streams_it_and_trains_the_same(trained) -> None:
    _, streamed, streamed_seconds, output = trained["streamed"]
    _, in_memory, memory_seconds, memory_output = trained["in_memory"]
    assert streamed.info.status == "FINISHED" and in_memory.info.status == "FINISHED"
    assert streamed.data.tags["pipelines.data_path"] == "streamed"
    assert in_memory.data.tags["pipelines.data_path"] == "in_memory"
    line = re.search(r"image_folder: (\d+) images decoded would take .*", output)
    assert (
        line and "above data.memory_budget 10 KB: streaming from disk with 2 worker(s)" in (line[0])
    ), output
    assert "data.in_memory=true: decoding into memory" in memory_output
    assert "test/acc" in streamed.data.metrics
    # the same files, the same batches in the same order: the same numbers, to float noise
    for key in ("test/acc", "test/loss", "val/loss", "train/loss"):
        assert streamed.data.metrics[key] == pytest.approx(in_memory.data.metrics[key], abs=1e-5)
    print(f"\n2 epochs + test + report: streamed {streamed_seconds:.1f}s, ", end="")
    print(f"in memory {memory_seconds:.1f}s")


def test_both_paths_split_the_same_files(trained, tmp_path: Path) -> None:
    root = trained["root"]
    limit = 30 if root == SHARED_IMAGES else None
    kwargs = dict(root=str(root), image_size=16, limit_per_class=limit, seed=7, cache=False)
    in_memory = ImageFolderDataModule(in_memory=True, **kwargs)
    streamed = ImageFolderDataModule(memory_budget=1000, num_workers=0, **kwargs)
    in_memory.setup()
    streamed.setup()
    assert streamed.data_path == "streamed" and in_memory.data_path == "in_memory"
    assert streamed.classes == in_memory.classes
    assert streamed.model_kwargs() == in_memory.model_kwargs()
    for split in ("train", "val", "test"):
        images, labels = in_memory.splits[split]
        batches = list(streamed._batches(split, shuffle=False))
        assert torch.equal(torch.cat([b[0] for b in batches]), images)
        assert torch.equal(torch.cat([b[1] for b in batches]), labels)
    shuffled = [labels for _, labels in streamed._batches("train", shuffle=True)]
    expected = [labels for _, labels in in_memory._batches("train", shuffle=True)]
    assert all(torch.equal(a, b) for a, b in zip(shuffled, expected, strict=True))


def test_predict_and_evaluate_a_streamed_run(trained) -> None:
    workdir, run, _, _ = trained["streamed"]
    root = trained["root"]
    image = sorted(root.glob("*/*.jpg"))[0]
    result = run_cli(module="pipelines.predict", args=[run.info.run_id, str(image)], cwd=workdir)
    assert result.returncode == 0, result.output
    assert str(image) in result.stdout
    result = run_cli(module="pipelines.evaluate", args=[run.info.run_id], cwd=workdir)
    assert result.returncode == 0, result.output
    # evaluate streams the test split again and gets the numbers the run recorded
    found = re.search(r"test/acc\s+([\d.]+)\s+\(recorded ([\d.]+)\)", result.stdout)
    assert found and found[1] == found[2], result.output


def test_a_truncated_jpeg_while_streaming_is_one_paragraph(tmp_path: Path) -> None:
    root, _ = photo_folder(tmp_path / "gen")
    if root == SHARED_IMAGES:  # copy a few real photos, to damage one
        copy = tmp_path / "photos"
        for folder in ("cats", "dogs"):
            (copy / folder).mkdir(parents=True)
            for path in sorted((root / folder).glob("*.jpg"))[:10]:
                shutil.copy(path, copy / folder / path.name)
        root = copy
    damaged = sorted(root.glob("*/*.jpg"))[3]
    damaged.write_bytes(damaged.read_bytes()[:300])  # truncated
    outputs = {}
    for path, extra in (("streamed", "data.memory_budget=1KB"), ("in_memory", "data.cache=false")):
        args = ["data=image_folder", f"data.root={root}", "data.image_size=16", "model=mlp"]
        args += ["pipeline.stages=[prepare,fit,test]", "trainer.max_epochs=1", extra]
        (tmp_path / path).mkdir()
        result = run_cli(args, tmp_path / path)
        assert result.returncode == 2, result.output
        assert "Traceback" not in result.output, result.output
        assert str(damaged) in result.stderr and "Cannot decode 1 image file(s)" in result.stderr
        outputs[path] = result.stderr
    assert "delete it" in outputs["streamed"]


def test_the_memory_budget(monkeypatch) -> None:
    gb = 10**9
    assert memory_budget_bytes(1_000_000) == (1_000_000, "1 MB")
    assert memory_budget_bytes("2GB")[0] == 2 * gb
    assert memory_budget_bytes("500 MiB")[0] == 500 * 2**20
    assert memory_budget_bytes(1e9)[0] == gb
    assert memory_budget_bytes(0.5, available=8 * gb) == (4 * gb, "0.5 of the 8 GB available")
    assert memory_budget_bytes(1.0, available=8 * gb)[0] == 8 * gb
    assert memory_budget_bytes(None, available=8 * gb)[0] == 2 * gb
    assert memory_budget_bytes(None)[0] > 0  # this machine's available memory
    for bad in (0, -5, 0.0, 1.5, "lots", "2 parsecs", True, [1]):
        with pytest.raises(ConfigValueError) as error:
            memory_budget_bytes(bad)
        message = str(error.value)
        assert "data.memory_budget" in message and repr(bad) in message
        assert "\n" not in message
    with pytest.raises(ConfigValueError, match=r"data\.in_memory must be auto, true or false"):
        ImageFolderDataModule(root="x", in_memory="sometimes")
