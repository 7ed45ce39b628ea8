"""Image folders larger than the memory budget are streamed from disk (issue 23).

``data.in_memory=auto`` decodes into memory when the float32 pixels fit
``data.memory_budget``, else streams: the same splits, the same batches in the same order,
so the same metrics; ``evaluate``, ``predict``, ``resume`` and the Python API work on a
streamed run; under DDP each rank reads its own shard; the report covers the whole test
split; the decoding workers persist from epoch to epoch and end with the stage; a damaged
or vanished file is one paragraph naming it, as on the in-memory path.
"""

from __future__ import annotations

import csv
import gc
import io
import multiprocessing
import os
import re
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pipelines
from conftest import mlflow_runs, run_cli, start_until_first_checkpoint, store_uri
from pipelines.errors import ConfigValueError, DataNotFoundError
from pipelines.training.tensor_loader import TensorBatches
from plugins.data.image_folder import ImageFolderDataModule
from plugins.data.memory_budget import memory_budget_bytes
from plugins.data.streamed_images import ImageFiles, SeededPermutation, StreamedBatches

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


#: three epochs: a run killed after its first still has two to go when resumed
EPOCHS = ["trainer.max_epochs=3"]


def run_args(root: Path, extra: list[str]) -> list[str]:
    return [
        "data=image_folder",
        f"data.root={root}",
        "data.image_size=32",
        "data.batch_size=8",
        "data.num_workers=2",
        "model=convnet",
        "seed=7",
        *EPOCHS,
        *extra,
    ]


def train(workdir: Path, root: Path, extra: list[str]) -> tuple[object, float, str]:
    args = run_args(root, extra)
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
    found: dict[str, object] = {"root": root, "limit": limit, "base": base}
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
    print(f"\n3 epochs + test + report: streamed {streamed_seconds:.1f}s, ", end="")
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


# -- resume, the Python API and the report on a streamed run ----------------------------------


def history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    from mlflow import MlflowClient

    return [(m.step, m.value) for m in MlflowClient(uri).get_metric_history(run_id, key)]


def test_a_streamed_run_killed_after_its_first_epoch_resumes_as_if_never_stopped(
    trained, tmp_path: Path
) -> None:
    """``kill -9`` mid-training (its decoding workers orphaned), then ``pipelines.resume``:
    the same run goes on with the epochs' shuffles an uninterrupted run had, to its numbers."""
    workdir, reference, _, _ = trained["streamed"]
    args = run_args(trained["root"], [*trained["limit"], "data.memory_budget=10KB"])
    killed = tmp_path / "killed"
    killed.mkdir()
    proc = start_until_first_checkpoint(killed, *args)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    uri = store_uri(killed)
    (stopped,) = mlflow_runs(uri)
    assert stopped.info.status == "RUNNING", "kill -9 leaves no chance to mark the run"
    before = history(uri, stopped.info.run_id, "val/loss")
    assert 1 <= len(before) < 3

    resumed = run_cli(module="pipelines.resume", args=[stopped.info.run_id], cwd=killed)
    assert resumed.returncode == 0, resumed.output
    assert "Traceback" not in resumed.output
    assert re.search(r"resuming from \S+\.ckpt \(after epoch \d+ of training\)", resumed.stderr)
    (run,) = mlflow_runs(uri)
    assert run.info.run_id == stopped.info.run_id and run.info.status == "FINISHED"
    assert run.data.tags["pipelines.data_path"] == "streamed"
    after = history(uri, run.info.run_id, "val/loss")
    assert [step for step, _ in after] == sorted({step for step, _ in after}), "no epoch twice"
    expected = history(store_uri(workdir), reference.info.run_id, "val/loss")
    assert [v for _, v in after] == pytest.approx([v for _, v in expected], abs=1e-5)
    for key in ("test/acc", "test/loss", "best/val_loss"):
        assert run.data.metrics[key] == pytest.approx(reference.data.metrics[key], abs=1e-5)


def test_the_python_api_trains_and_predicts_a_streamed_run_as_the_cli_does(
    trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pipelines.train`` streams in this process: the CLI's numbers, and no decoding worker
    left running once it returns (they end with each stage, not at the process's exit);
    ``pipelines.load(run_id).predict`` gives what ``python -m pipelines.predict`` prints."""
    _, cli_run, _, _ = trained["streamed"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = run_args(trained["root"], [*trained["limit"], "data.memory_budget=10KB"])
    result = pipelines.train(*args, tracking_uri=store_uri(tmp_path), progress=False)
    assert not multiprocessing.active_children(), "decoding workers outlived the run"
    assert result.datamodule.data_path == "streamed"
    for key in ("test/acc", "test/loss", "best/val_loss"):
        assert result.metrics[key] == pytest.approx(cli_run.data.metrics[key], abs=1e-5)

    images = sorted(trained["root"].glob("*/*.jpg"))[:3]
    predicted = pipelines.load(result.run_id, tracking_uri=store_uri(tmp_path)).predict(images)
    cli = run_cli(
        module="pipelines.predict",
        args=[result.run_id, *map(str, images), "--tracking-uri", store_uri(tmp_path)],
        cwd=tmp_path,
    )
    assert cli.returncode == 0, cli.output
    rows = list(csv.DictReader(io.StringIO(cli.stdout)))
    assert [row["prediction"] for row in rows] == list(predicted["prediction"])
    assert [float(row["probability"]) for row in rows] == pytest.approx(
        list(predicted["probability"]), abs=1e-4
    )


def test_the_report_covers_the_whole_streamed_test_split(trained) -> None:
    """The confusion matrix counts every test image, streamed batch by batch; the sample
    figure and the network's input example are logged as on the in-memory path."""
    import mlflow
    from mlflow import MlflowClient

    workdir, run, _, output = trained["streamed"]
    assert "Traceback" not in output
    tests = re.search(r"the confusion matrix covers its (\d+) test items", output)
    split = re.search(r"\(train \d+, val \d+, test (\d+)\), streamed", output)
    assert tests and split and tests[1] == split[1], output
    client = MlflowClient(store_uri(workdir))
    report = {item.path for item in client.list_artifacts(run.info.run_id, "report")}
    assert {"report/confusion_matrix.png", "report/sample_predictions.png"} <= report
    assert "pipelines.log_network_error" not in run.data.tags
    earlier = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(store_uri(workdir))
    try:
        network = mlflow.models.get_model_info(f"runs:/{run.info.run_id}/network")
    finally:
        mlflow.set_tracking_uri(earlier)
    (example,) = network.signature.inputs.to_dict()
    assert list(example["tensor-spec"]["shape"]) == [-1, 3, 32, 32]


# -- DDP: each rank its own shard ---------------------------------------------------------------


def numbered_files(count: int) -> ImageFiles:
    """``count`` fake files whose one pixel is their index: batches say which files they hold."""

    def decode(path: Path, size: tuple[int, int], color_mode: str) -> np.ndarray:
        return np.full((1, 1, 1), int(path.name), dtype=np.uint8)

    return ImageFiles([Path(str(i)) for i in range(count)], [0] * count, (1, 1), "L", decode)


def read_indices(batches: StreamedBatches) -> list[int]:
    return [round(v * 255) for images, _ in batches for v in images.flatten().tolist()]


@pytest.mark.parametrize("count", [10, 11])
def test_ranks_share_out_every_streamed_training_file_of_an_epoch(count: int) -> None:
    """As torch's ``DistributedSampler``: the same seeded permutation on each rank, disjoint
    shards of equal length (padded by one repeat when odd), reshuffled every epoch; and the
    very shards the in-memory path's ranks take (``TensorBatches``)."""
    ranks = [
        StreamedBatches(numbered_files(count), 3, True, 5, 0, False, str, rank=rank, world_size=2)
        for rank in (0, 1)
    ]
    in_memory = [
        TensorBatches(torch.arange(count), batch_size=3, shuffle=True, seed=5, rank=r, world_size=2)
        for r in (0, 1)
    ]
    epochs = []
    for epoch in range(2):
        for loader in (*ranks, *in_memory):
            loader.sampler.set_epoch(epoch)
        shards = [read_indices(loader) for loader in ranks]
        assert len(shards[0]) == len(shards[1]) == (count + 1) // 2 == len(ranks[0].sampler)
        assert len(ranks[0]) == len(in_memory[0]) == 2
        together = shards[0] + shards[1]
        assert sorted(set(together)) == list(range(count)), "every file read"
        assert len(together) - len(set(together)) == count % 2, "once each but the padding"
        for shard, tensors in zip(shards, in_memory, strict=True):
            assert shard == torch.cat([batch[0] for batch in tensors]).tolist()
        epochs.append(shards[0])
    assert epochs[0] != epochs[1], "reshuffled every epoch"
    with pytest.raises(ValueError, match="rank 2"):
        SeededPermutation(10, 0, rank=2, world_size=2)


@pytest.mark.slow
def test_a_streamed_ddp_run_trains_as_the_in_memory_one(trained, tmp_path: Path) -> None:
    """Two CPU ranks (gloo): each streams its shard of every epoch, so the run's numbers are
    the in-memory DDP run's."""
    root, limit = trained["root"], trained["limit"]
    found = {}
    for path, extra in (
        ("streamed", "data.memory_budget=10KB"),
        ("in_memory", "data.in_memory=true"),
    ):
        workdir = tmp_path / path
        workdir.mkdir()
        args = run_args(root, [*limit, extra, "trainer=ddp_cpu"])
        result = run_cli(args, workdir, timeout=600)
        assert result.returncode == 0, result.output
        (found[path],) = mlflow_runs(store_uri(workdir))
    streamed, in_memory = found["streamed"], found["in_memory"]
    assert streamed.data.tags["pipelines.data_path"] == "streamed"
    for key in ("test/acc", "test/loss", "val/loss", "train/loss"):
        assert streamed.data.metrics[key] == pytest.approx(in_memory.data.metrics[key], abs=1e-5)


# -- the workers: persistent, ended with the stage; the global random numbers untouched --------


class Cycle:
    """An object in a reference cycle holding a loader, as Lightning's trainer holds it."""

    def __init__(self, batches: StreamedBatches) -> None:
        self.batches = batches
        self.me = self


def test_persistent_workers_end_at_once_when_a_cycle_holding_them_is_collected(
    tmp_path: Path,
) -> None:
    """The workers persist across epochs; collected in a cycle, their loader used to wait
    out torch's join timeout (5 s a worker): they end at once now, as they do on close."""
    root, _ = photo_folder(tmp_path / "gen")
    files = sorted(root.glob("*/*.jpg"))[:16]
    dataset = ImageFiles(files, [0] * len(files), (8, 8), "rgb", _decode)
    batches = StreamedBatches(dataset, 4, True, 0, 2, False, str)
    for _ in range(2):
        assert len(list(batches)) == 4
    workers = multiprocessing.active_children()
    assert len(workers) == 2, "the same two workers served both epochs"
    Cycle(batches)
    del batches
    started = time.perf_counter()
    gc.collect()
    assert time.perf_counter() - started < 2.5
    assert not any(worker.is_alive() for worker in workers)

    closed = StreamedBatches(dataset, 4, False, 0, 2, False, str)
    assert len(list(closed)) == 4 and len(multiprocessing.active_children()) == 2
    closed.close()
    assert not multiprocessing.active_children()
    assert len(list(closed)) == 4, "a closed loader starts its workers again"
    closed.close()


def _decode(path: Path, size: tuple[int, int], color_mode: str) -> np.ndarray:
    from plugins.data.image_folder import decode_image

    return decode_image(path, size, color_mode)


def test_streaming_draws_nothing_from_the_global_random_numbers(tmp_path: Path) -> None:
    """Augmentation and dropout draw from torch's global generator: a streamed run must
    leave it as the in-memory path does, or both would train on different random numbers."""
    root, _ = photo_folder(tmp_path / "gen")
    files = sorted(root.glob("*/*.jpg"))[:8]
    dataset = ImageFiles(files, [0] * len(files), (8, 8), "rgb", _decode)
    batches = StreamedBatches(dataset, 4, True, 0, 1, False, str)
    torch.manual_seed(3)
    list(batches)
    after = torch.rand(4)
    batches.close()
    torch.manual_seed(3)
    assert torch.equal(after, torch.rand(4))


# -- bad data while streaming ----------------------------------------------------------------------


def test_a_file_gone_while_streaming_is_named_and_one_added_is_not_read(tmp_path: Path) -> None:
    """The files are those the folder held at set-up, on both paths: one deleted since is one
    paragraph naming it (from a worker process, not its traceback), one added is not read."""
    root, _ = photo_folder(tmp_path / "gen")
    if root == SHARED_IMAGES:
        root = tmp_path / "photos"
        for folder in ("cats", "dogs"):
            (root / folder).mkdir(parents=True)
            for path in sorted((SHARED_IMAGES / folder).glob("*.jpg"))[:10]:
                shutil.copy(path, root / folder / path.name)
    module = ImageFolderDataModule(
        root=str(root), image_size=16, memory_budget=1000, num_workers=1, cache=False
    )
    module.setup()
    paths, _ = module.streams["train"]
    count = sum(map(len, (labels for _, labels in module._batches("train", shuffle=False))))
    newcomer = paths[0].parent / "added-later.jpg"
    shutil.copy(paths[0], newcomer)
    assert sum(len(labels) for _, labels in module._batches("train", shuffle=False)) == count
    gone = paths[1]
    gone.unlink()
    with pytest.raises(DataNotFoundError) as error:
        list(module._batches("train", shuffle=False))
    message = str(error.value)
    assert str(gone) in message and "no longer there" in message, message
    assert "\n" not in message and "Traceback" not in message
    module.teardown("fit")
