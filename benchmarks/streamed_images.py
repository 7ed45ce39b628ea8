"""Streamed image folders: samples/s of the streamed, in-memory and torchvision paths, peak memory.

Three parts on one folder of images in class sub-folders (``--folder``; by default the 400
real cat/dog photos of the shared data folder when it is there, else ``--generate`` JPEGs
made with PIL in a temporary folder), at ``--size`` (180) with batches of ``--batch-size``
(32) and the book's augmentation (flip, rotation 0.1, zoom 0.2):

* ``throughput``: one epoch of training batches, samples/s and CPU ms a sample (this process
  plus its DataLoader workers), through (a) ``ImageFolderDataModule(in_memory=True)``'s train
  loader after ``setup`` (the one-off decode is timed apart) with the per-batch
  ``BatchAugmentation`` applied to each batch as the run does; (b) the same with
  ``in_memory=False``, decoded per sample in ``--workers`` worker processes; (c) torchvision's
  ``datasets.ImageFolder`` + ``DataLoader``, same files, workers (persistent when ours are)
  and batch size, the augmentation per sample with ``transforms.v2`` (as torchvision's docs
  advise: to a uint8 tensor first, resize, flip, one bilinear ``RandomAffine`` for rotation
  and zoom; it fills with black where ours reflects); (d) the same with the plugin's JPEG
  draft decode as ImageFolder's loader. All in this process, in ``--rounds`` rounds whose
  order reverses each round (ABCD DCBA ...), after one untimed warm-up epoch of each:
  medians, and the median and range of the rounds' ratios of the in-memory path to each.
* ``rss``: real training runs through the CLI (``python -m pipelines.run data=image_folder
  ... augment=book model=convnet trainer.max_epochs=1``), each a fresh process in a
  temporary folder with its own MLflow store, whose process tree (the run and its
  DataLoader workers) is read from /proc (Linux) every ``--interval`` seconds, per stage of
  the run: the run's peak RSS (exact: its VmHWM, reset at each stage), and the memory the
  tree holds privately (:func:`tree_memory`: the run's anonymous and shared-memory pages
  plus the workers' own pages), next to the RSS summed over the tree. Runs: ``baseline``
  (the same command on the first ``--baseline-per-class`` images of each class, in memory:
  the fixed cost of torch, Lightning, MLflow, the model and its activations), ``streamed``
  (``data.in_memory=auto`` with ``data.memory_budget`` = ``--budget-fraction`` of the
  decoded float32 size, so it streams) and ``in_memory`` (``data.in_memory=true``, for
  contrast).
* ``cache``: whether a decoded-and-resized on-disk cache would pay from the second epoch: the
  per-sample CPU of the plugin's decode (``decode_image``: JPEG draft decode + bilinear
  resize) against reading an already decoded ``(H, W, 3)`` uint8 sample from a numpy memmap
  (page cache warm; and cold, after ``posix_fadvise(DONTNEED)``), each also through the
  plugin's ``ImageFiles`` (the float conversion both pay), one thread as in a worker; the
  cost of writing the cache; and the CPU of one training step of the convnet preset, a
  sample, for scale.

    python benchmarks/streamed_images.py [--folder DIR] [--rounds 6] [--workers 2]
        [--parts throughput rss cache] [--size 180] [--run-args model.filters=[8,16]]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "images"
BOOK_AUGMENT = {"flip": "horizontal", "rotation": 0.1, "zoom": 0.2}
MB = 1e6

# -- the folder ------------------------------------------------------------------------------


def generate_folder(folder: Path, count: int, seed: int = 0) -> Path:
    """``count`` JPEGs of two classes, 320x240 to 500x375 (the real photos' range), with
    enough texture that their decode costs what a photo's does."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for index in range(count):
        name = ("cats", "dogs")[index % 2]
        (folder / name).mkdir(parents=True, exist_ok=True)
        width, height = int(rng.integers(320, 501)), int(rng.integers(240, 376))
        base = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
        pixels = np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))[:height, :width]
        noise = rng.integers(-20, 21, pixels.shape)
        pixels = np.clip(pixels.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / name / f"{index:05d}.jpg", quality=90)
    return folder


def datamodule(folder: Path, in_memory: bool, options: argparse.Namespace) -> Any:
    """The plugin's data module, built as the ``data=image_folder`` config builds it."""
    from plugins.data.augment import AugmentSettings
    from plugins.data.image_folder import ImageFolderDataModule

    return ImageFolderDataModule(
        root=str(folder),
        image_size=options.size,
        batch_size=options.batch_size,
        cache=False,  # the one-off decode is what setup's time shows, every run
        augment=AugmentSettings(**BOOK_AUGMENT),
        seed=0,
        in_memory=in_memory,
        num_workers=options.workers,
    )


# -- processes, from /proc (Linux) ----------------------------------------------------------


def children(pid: int) -> list[int]:
    """The descendants of ``pid`` (DataLoader workers and anything they start)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, ValueError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found + [grandchild for child in found for grandchild in children(child)]


def proc_fields(path: str) -> dict[str, int]:
    """The ``Name: N kB`` lines of a /proc file (status, smaps_rollup) in bytes."""
    values: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            key, _, rest = line.partition(":")
            if rest.strip().endswith("kB"):
                values[key] = int(rest.split()[0]) * 1024
    return values


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) ``pid`` has used so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- part 1: samples/s of one training epoch -------------------------------------------------


def cpu_seconds() -> float:
    """CPU of this process, its reaped children and its live ones (persistent DataLoader
    workers are reaped only when their loader ends)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    live = sum(proc_cpu(child) for child in children(os.getpid()))
    return own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime + live


def epoch(loader: Iterable[Any], augment: Callable[[torch.Tensor], torch.Tensor] | None):
    """One pass over ``loader`` (augmenting each batch where given): samples, wall s, CPU s."""
    seen = 0
    cpu, started = cpu_seconds(), time.perf_counter()
    for images, _ in loader:
        if augment is not None:
            images = augment(images)
        seen += images.shape[0]
    return seen, time.perf_counter() - started, cpu_seconds() - cpu


def torchvision_loader(
    files: list[Path], options: argparse.Namespace, draft: bool, persistent: bool
) -> Any:
    """torchvision's ImageFolder over ``files`` (a Subset), per-sample v2 augmentation."""
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets
    from torchvision.transforms import v2

    size = (options.size, options.size)
    transform = v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(size, interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomAffine(
                degrees=36, scale=(0.8, 1.2), interpolation=v2.InterpolationMode.BILINEAR
            ),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )
    loader = draft_loader(size) if draft else datasets.folder.default_loader
    folder = datasets.ImageFolder(str(options.folder), transform=transform, loader=loader)
    where = {str(path): index for index, (path, _) in enumerate(folder.samples)}
    subset = Subset(folder, [where[str(path)] for path in files])
    return DataLoader(
        subset,
        batch_size=options.batch_size,
        shuffle=True,
        num_workers=options.workers,
        persistent_workers=persistent and options.workers > 0,
    )


class draft_loader:  # a picklable function for the workers
    """ImageFolder's loader with the plugin's JPEG draft (decode at 1/2, 1/4 or 1/8 scale)."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = size

    def __call__(self, path: str) -> Any:
        from PIL import Image

        with Image.open(path) as image:
            image.draft("RGB", (self.size[1], self.size[0]))
            return image.convert("RGB")


def throughput(options: argparse.Namespace) -> None:
    in_memory = datamodule(options.folder, True, options)
    started = time.perf_counter()
    in_memory.setup("fit")
    memory_setup = time.perf_counter() - started
    streamed = datamodule(options.folder, False, options)
    started = time.perf_counter()
    streamed.setup("fit")
    streamed_setup = time.perf_counter() - started
    assert in_memory.data_path == "in_memory" and streamed.data_path == "streamed"
    files = streamed.streams["train"][0]
    images = sum(len(files) for files, _ in streamed.streams.values())
    print(
        f"throughput: {len(files)} training images of {images} at {options.size}x"
        f"{options.size}, batches of {options.batch_size}, {options.workers} workers, "
        f"{torch.get_num_threads()} torch threads, {options.rounds} rounds",
        flush=True,
    )
    print(f"  setup: in memory {memory_setup:.2f} s (decodes all {images} images: "
          f"{images / memory_setup:.0f} images/s), streamed {streamed_setup:.2f} s "
          "(lists the files)", flush=True)  # fmt: skip
    ours = streamed.train_dataloader()
    persistent = bool(getattr(ours, "persistent_workers", False))  # the same as ours
    paths: dict[str, tuple[Any, Any]] = {
        "in-memory (ours)": (in_memory.train_dataloader(), in_memory.augmentation),
        "streamed (ours)": (ours, streamed.augmentation),
        "torchvision ImageFolder": (torchvision_loader(files, options, False, persistent), None),
        "torchvision + draft decode": (torchvision_loader(files, options, True, persistent), None),
    }
    print(f"  workers persistent from one epoch to the next: {persistent}", flush=True)
    for loader, augment in paths.values():  # warm-up: page cache, first-call costs
        epoch(loader, augment)
    rates: dict[str, list[float]] = {name: [] for name in paths}
    cpus: dict[str, list[float]] = {name: [] for name in paths}
    for round_ in range(options.rounds):
        order = list(paths) if round_ % 2 == 0 else list(reversed(paths))
        for name in order:
            seen, wall, cpu = epoch(*paths[name])
            rates[name].append(seen / wall)
            cpus[name].append(cpu / seen * 1e3)
        done = ", ".join(f"{name} {rates[name][-1]:.0f}" for name in paths)
        print(f"  round {round_ + 1}: {done} samples/s", flush=True)
    streamed.teardown("fit")  # its persistent workers end here
    base = rates["in-memory (ours)"]
    print(f"  {'path':28s} {'samples/s':>10s} {'CPU ms/sample':>14s}  in-memory / this "
          "(median of rounds, range)")  # fmt: skip
    for name in paths:
        ratios = [b / r for b, r in zip(base, rates[name], strict=True)]
        print(f"  {name:28s} {statistics.median(rates[name]):10.0f} "
              f"{statistics.median(cpus[name]):14.2f}  {statistics.median(ratios):.2f}x "
              f"({min(ratios):.2f}-{max(ratios):.2f})", flush=True)  # fmt: skip
    plain = rates["torchvision ImageFolder"]
    ratios = [r / t for r, t in zip(rates["streamed (ours)"], plain, strict=True)]
    print(f"  streamed (ours) / torchvision ImageFolder, samples/s: "
          f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})",
          flush=True)  # fmt: skip


# -- part 2: peak memory of real runs -------------------------------------------------------


#: what :func:`tree_memory` measures, in bytes
MEASURES = ("main", "main_private", "workers_private", "tree", "tree_rss", "workers")


def tree_memory(pid: int) -> dict[str, int]:
    """The memory of ``pid`` (the run) and its descendants (its DataLoader workers).

    ``main``: the run's RSS (with the pages of shared libraries it maps). ``main_private``:
    its anonymous and shared-memory pages (RssAnon + RssShmem: the heap, tensors, batches
    received from workers), which no other run would hold. ``workers_private``: the pages
    only the workers map (their USS: what forking cost, what they allocate). ``tree``: the
    two summed, the memory the run holds that a second run beside it would not share.
    ``tree_rss``: every process's RSS summed (counts the libraries and the pages the forked
    workers still share with the run once per process). Shared libraries' pages are left
    out of ``tree`` because every torch process on the machine shares them; PSS, which
    splits them between those processes, moved with what else ran on this machine."""
    status = proc_fields(f"/proc/{pid}/status")
    found = dict.fromkeys(MEASURES, 0)
    found["main"] = status.get("VmRSS", 0)
    found["main_private"] = status.get("RssAnon", 0) + status.get("RssShmem", 0)
    found["tree_rss"] = found["main"]
    for child in children(pid):
        rollup = proc_fields(f"/proc/{child}/smaps_rollup")
        if not rollup:
            continue  # a worker that just ended
        found["workers"] += 1
        found["workers_private"] += rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0)
        found["tree_rss"] += rollup.get("Rss", 0)
    found["tree"] = found["main_private"] + found["workers_private"]
    return found


def high_water(pid: int) -> int:
    """``pid``'s peak RSS (VmHWM) since it started or since :func:`reset_high_water`."""
    return proc_fields(f"/proc/{pid}/status").get("VmHWM", 0)


def reset_high_water(pid: int) -> None:
    """Set ``pid``'s VmHWM back to its RSS now (Linux; a process of this user)."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def sampled_run(args: list[str], cwd: Path, interval: float) -> dict[str, Any]:
    """Run the CLI in ``cwd``, sampling its process tree: the peaks in each stage of the run
    (read off its log, ``stage N: NAME``; before the first, ``start``), which path the data
    took, and the seconds it ran (a failed run: exit with its log)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONUNBUFFERED"] = "1"  # its log lines as they happen: they say the stage
    log_path = cwd / "run.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.run", *args],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    stages: dict[str, dict[str, int]] = {}
    stage, pending = "start", ""
    started = time.perf_counter()
    with log_path.open() as reader:
        while True:
            pid, status = os.waitpid(proc.pid, os.WNOHANG)
            if pid:
                break
            sample = tree_memory(proc.pid)
            # the kernel's exact peak RSS of the run's process since the stage began
            sample["main"] = max(sample["main"], high_water(proc.pid))
            peaks = stages.setdefault(stage, dict.fromkeys(MEASURES, 0))
            for key, value in sample.items():
                peaks[key] = max(peaks[key], value)
            pending += reader.read()
            lines, _, pending = pending.rpartition("\n")
            for found in re.finditer(r"\] - stage \d+: (\w+)", lines):
                stage = found[1]
                reset_high_water(proc.pid)
            time.sleep(interval)
    proc.returncode = os.waitstatus_to_exitcode(status)
    output = log_path.read_text()
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(args)}\n{output[-3000:]}")
    path = re.search(r"(decoding into memory|streaming from disk)", output)
    return {
        "stages": stages,
        "seconds": time.perf_counter() - started,
        "path": {"decoding into memory": "in memory", "streaming from disk": "streamed"}.get(
            path[1] if path else "", "?"
        ),
    }


def peaks_over(stages: dict[str, dict[str, int]], names: Iterable[str]) -> dict[str, int]:
    """The peaks over the stages ``names`` (those the run had)."""
    chosen = [stages[name] for name in names if name in stages] or [dict.fromkeys(MEASURES, 0)]
    return {key: max(peaks[key] for peaks in chosen) for key in MEASURES}


def peak_memory(options: argparse.Namespace) -> None:
    from plugins.data.image_folder import ImageFolderDataModule

    scan = ImageFolderDataModule(root=str(options.folder)).scan()
    classes, entries = scan
    count = len(entries)
    sample_bytes = 3 * options.size * options.size
    decoded = count * sample_bytes * 4  # float32, what data.memory_budget is compared with
    budget = int(decoded * options.budget_fraction)
    smallest = min(sum(1 for _, label, _ in entries if label == c) for c in range(len(classes)))
    per_class = min(options.baseline_per_class, smallest)
    batch_bytes = options.batch_size * sample_bytes * 4
    in_flight = options.workers * 2 * batch_bytes  # DataLoader's prefetch_factor 2 per worker
    common = [
        "data=image_folder", f"data.root={options.folder}", f"data.image_size={options.size}",
        f"data.batch_size={options.batch_size}", f"data.num_workers={options.workers}",
        "data.cache=false", "augment=book", "model=convnet", "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false", "seed=0",
    ]  # fmt: skip
    runs = {
        "baseline": ["data.in_memory=true", f"data.limit_per_class={per_class}"],
        "streamed": ["data.in_memory=auto", f"data.memory_budget={budget}"],
        "in_memory": ["data.in_memory=true"],
    }
    print(f"rss: {count} images, decoded {decoded / MB:.1f} MB as float32 "
          f"({count * sample_bytes / MB:.1f} MB as uint8); budget {budget / MB:.1f} MB "
          f"({options.budget_fraction:g} of it); baseline: {per_class} images a class in "
          f"memory ({per_class * len(classes) * sample_bytes * 4 / MB:.1f} MB float32); a "
          f"batch is {batch_bytes / MB:.1f} MB, {in_flight / MB:.1f} MB in flight at most "
          f"({options.workers} workers x 2 prefetched); sampled every "
          f"{options.interval * 1e3:.0f} ms", flush=True)  # fmt: skip
    print(f"  python -m pipelines.run {' '.join(common)} tracking.uri=sqlite:///TMP/mlflow.db "
          f"{' '.join(options.run_args)} + per run:", flush=True)  # fmt: skip
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in options.rss_runs}
    with tempfile.TemporaryDirectory(prefix="streamed-rss-") as tmp:
        for repeat in range(options.rss_repeats):  # order reversed on each repeat
            order = options.rss_runs if repeat % 2 == 0 else options.rss_runs[::-1]
            for name in order:
                cwd = Path(tmp) / f"{name}-{repeat}"
                cwd.mkdir()
                store = f"tracking.uri=sqlite:///{cwd / 'mlflow.db'}"
                result = sampled_run(
                    [*common, *runs[name], store, *options.run_args], cwd, options.interval
                )
                stages = result["stages"]
                result["data"] = peaks_over(stages, [s for s in stages if s != "report"])
                results[name].append(result)
                each = ", ".join(
                    f"{stage} {peaks['main'] / MB:.0f}/{peaks['tree'] / MB:.0f}"
                    for stage, peaks in stages.items()
                )
                print(f"  {name:9s} [{' '.join(runs[name])}] took the {result['path']} path "
                      f"({result['seconds']:.0f} s); peak main RSS / tree MB by stage: {each}",
                      flush=True)  # fmt: skip
    print("  peak MB while the data is in use (from the start to the report stage, which "
          "predicts and logs the model): main RSS exact (VmHWM), the rest sampled (see "
          f"tree_memory); medians of {options.rss_repeats} runs, tree's range; then the whole "
          "run's peaks")  # fmt: skip
    print(f"  {'run':9s} {'main RSS':>8s} {'main private':>12s} {'workers private':>15s} "
          f"{'tree (range)':>16s} {'tree RSS summed':>15s}  whole run: main RSS, tree")  # fmt: skip
    data: dict[str, dict[str, float]] = {}
    for name, repeats in results.items():
        data[name] = p = {
            key: statistics.median(r["data"][key] for r in repeats) for key in MEASURES
        }
        trees = [r["data"]["tree"] / MB for r in repeats]
        whole = [peaks_over(r["stages"], r["stages"]) for r in repeats]
        print(f"  {name:9s} {p['main'] / MB:8.0f} {p['main_private'] / MB:12.0f} "
              f"{p['workers_private'] / MB:15.0f} {p['tree'] / MB:6.0f} "
              f"({min(trees):.0f}-{max(trees):.0f}) {p['tree_rss'] / MB:15.0f}  "
              f"{statistics.median(w['main'] for w in whole) / MB:8.0f}, "
              f"{statistics.median(w['tree'] for w in whole) / MB:.0f}  "
              f"[{max(r['data']['workers'] for r in repeats)} children at most]")  # fmt: skip
    if "baseline" not in data:
        return
    own = per_class * len(classes) * sample_bytes * 4
    fixed = data["baseline"]["tree"] - own
    print(f"  fixed cost: the baseline's tree {data['baseline']['tree'] / MB:.0f} MB less its "
          f"own decoded images {own / MB:.0f} MB = {fixed / MB:.0f} MB", flush=True)  # fmt: skip
    if "streamed" in data:
        extra = data["streamed"]["tree"] - fixed
        print(f"  streamed tree = fixed cost {extra / MB:+.0f} MB = fixed + budget "
              f"{budget / MB:.0f} MB + margin {(extra - budget) / MB:.0f} MB; its workers' private "
              f"pages peaked at {data['streamed']['workers_private'] / MB:.0f} MB, batches in "
              f"flight are at most {in_flight / MB:.0f} MB; main RSS "
              f"{data['streamed']['main'] / MB:.0f} MB vs the baseline's "
              f"{data['baseline']['main'] / MB:.0f} MB", flush=True)  # fmt: skip
    if "in_memory" in data:
        extra = data["in_memory"]["tree"] - fixed
        print(f"  in_memory tree = fixed cost {extra / MB:+.0f} MB (its decoded images: "
              f"{decoded / MB:.0f} MB float32, and {count * sample_bytes / MB:.0f} MB uint8 "
              f"while setting up); main RSS {data['in_memory']['main'] / MB:.0f} MB",
              flush=True)  # fmt: skip


# -- part 3: would a decoded on-disk cache pay? ---------------------------------------------


def evict(paths: Iterable[Path]) -> None:
    """Drop the files' pages from the page cache (no root needed for clean pages)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def per_sample(items: list[Any], read: Callable[[Any], Any]) -> tuple[float, float]:
    """CPU and wall seconds a sample of ``read`` over ``items``, in a shuffled order."""
    order = list(items)
    random.Random(0).shuffle(order)
    cpu, started = time.process_time(), time.perf_counter()
    for item in order:
        read(item)
    return (time.process_time() - cpu) / len(order), (time.perf_counter() - started) / len(order)


def step_seconds(options: argparse.Namespace, classes: int) -> float:
    """CPU seconds a sample of one training step of the convnet preset (RMSprop)."""
    from plugins.models.convnet import ConvNet

    model = ConvNet(input_shape=(3, options.size, options.size), num_classes=classes)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3)
    images = torch.rand(options.batch_size, 3, options.size, options.size)
    labels = torch.randint(0, classes, (options.batch_size,))
    times = []
    for _ in range(options.steps + 1):
        started = time.process_time()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
        times.append(time.process_time() - started)
    return statistics.median(times[1:]) / options.batch_size


class DecodedCache:
    """Decoded uint8 samples ``(N, H, W, C)`` in one memmapped file; called as
    ``ImageFiles``' decode function with a sample's index for its path."""

    def __init__(self, path: Path, shape: tuple[int, ...]) -> None:
        self.path = path
        self.shape = shape
        self.pixels: np.memmap | None = None

    def write(self, pixels: np.ndarray) -> float:
        """Write the samples one by one, as a first epoch would, to disk; seconds taken."""
        started = time.perf_counter()
        out = np.memmap(self.path, dtype=np.uint8, mode="w+", shape=self.shape)
        for index in range(len(pixels)):
            out[index] = pixels[index]
        out.flush()
        del out
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return time.perf_counter() - started

    def __call__(self, index: int, size: Any = None, color_mode: Any = None) -> np.ndarray:
        if self.pixels is None:
            self.pixels = np.memmap(self.path, dtype=np.uint8, mode="r", shape=self.shape)
        return self.pixels[index]

    def copy(self, index: int) -> np.ndarray:
        return np.array(self(index))

    def close(self) -> None:
        """Unmap the file (its pages can then leave the page cache)."""
        self.pixels = None  # the last reference: numpy unmaps it


def decoded_cache(options: argparse.Namespace) -> None:
    from plugins.data.image_folder import ImageFolderDataModule, decode_image, decode_images
    from plugins.data.streamed_images import ImageFiles

    classes, entries = ImageFolderDataModule(root=str(options.folder)).scan()
    files = [path for path, _, _ in entries]
    size = (options.size, options.size)
    indices = list(range(len(files)))
    labels = np.zeros(len(files), dtype=np.int64)
    with tempfile.TemporaryDirectory(prefix="streamed-cache-") as tmp:
        cache = DecodedCache(Path(tmp) / "decoded.u8", (len(files), *size, 3))
        write = cache.write(decode_images(files, size, "rgb")) / len(files)
        decode_files = ImageFiles(files, labels, size, "rgb", decode_image)
        cache_files = ImageFiles(indices, labels, size, "rgb", cache)
        ways: dict[str, Callable[[], tuple[float, float]]] = {
            "decode_image (JPEG draft decode + resize)": lambda: per_sample(
                files, lambda path: decode_image(path, size, "rgb")
            ),
            "memmap read of a decoded sample": lambda: per_sample(indices, cache.copy),
            "ImageFiles[i], decoding (streamed path)": lambda: per_sample(
                indices, decode_files.__getitem__
            ),
            "ImageFiles[i], from the memmap": lambda: per_sample(indices, cache_files.__getitem__),
        }
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as in a DataLoader worker
        try:
            for name in ways:  # warm-up: the page cache holds both
                ways[name]()
            for round_ in range(options.rounds):
                order = list(ways) if round_ % 2 == 0 else list(reversed(ways))
                for name in order:
                    times[name].append(ways[name]())
            cache.close()
            evict(files)
            cold_decode = per_sample(files, lambda path: decode_image(path, size, "rgb"))
            evict([cache.path])
            cold_read = per_sample(indices, cache.copy)
            cache.close()
        finally:
            torch.set_num_threads(threads)
        on_disk = cache.path.stat().st_size
    jpeg_bytes = sum(path.stat().st_size for path in files)
    step = step_seconds(options, len(classes))
    print(f"cache: {len(files)} images to {options.size}x{options.size}, one thread (as in a "
          f"worker), page cache warm, ms a sample: CPU (medians of {options.rounds} rounds, "
          "range), wall", flush=True)  # fmt: skip
    cpu = {name: statistics.median(c for c, _ in values) for name, values in times.items()}
    for name, values in times.items():
        cpus = [c * 1e3 for c, _ in values]
        wall = statistics.median(w for _, w in values)
        print(f"  {name:44s} {cpu[name] * 1e3:8.3f} ({min(cpus):.3f}-{max(cpus):.3f}), "
              f"wall {wall * 1e3:.3f}")  # fmt: skip
    print(f"  {'cold page cache, wall: decode_image / memmap':44s} {cold_decode[1] * 1e3:8.3f} / "
          f"{cold_read[1] * 1e3:.3f}")  # fmt: skip
    print(f"  {'writing the memmap (first epoch), wall':44s} {write * 1e3:8.3f}")
    print(f"  {'convnet training step (CPU, batch ' + str(options.batch_size) + ')':44s} "
          f"{step * 1e3:8.3f}")  # fmt: skip
    decode = cpu["ImageFiles[i], decoding (streamed path)"]
    saved = decode - cpu["ImageFiles[i], from the memmap"]
    print(f"  a cache would save {saved * 1e3:.2f} ms of CPU a sample from the second epoch: "
          f"{saved / (decode + step):.1%} of a streamed epoch's CPU (decode + step); "
          f"{on_disk / MB:.1f} MB on disk for {jpeg_bytes / MB:.1f} MB of JPEGs "
          f"({on_disk / jpeg_bytes:.1f}x)", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--folder", type=Path, default=SHARED, help="class sub-folders of images (default: shared)"
    )
    parser.add_argument("--generate", type=int, default=400,
                        help="JPEGs to make when --folder is absent")  # fmt: skip
    parser.add_argument("--parts", nargs="+", default=["throughput", "rss", "cache"],
                        choices=("throughput", "rss", "cache"))  # fmt: skip
    parser.add_argument("--size", type=int, default=180)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--budget-fraction", type=float, default=0.1)
    parser.add_argument("--baseline-per-class", type=int, default=28,
                        help="images a class in the baseline run (28: a batch of 32)")  # fmt: skip
    parser.add_argument("--rss-runs", nargs="+", default=["baseline", "streamed", "in_memory"],
                        choices=("baseline", "streamed", "in_memory"))  # fmt: skip
    parser.add_argument("--rss-repeats", type=int, default=2, help="runs of each, rss")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between samples")
    parser.add_argument("--steps", type=int, default=5, help="timed convnet steps (cache)")
    parser.add_argument("--run-args", nargs="*", default=[],
                        help="more overrides for the CLI runs: model.filters=[8,16]")  # fmt: skip
    options = parser.parse_args()
    import PIL
    import torchvision

    with tempfile.TemporaryDirectory(prefix="streamed-images-") as tmp:
        if not options.folder.is_dir():
            print(f"{options.folder} not found: generating {options.generate} JPEGs", flush=True)
            options.folder = generate_folder(Path(tmp) / "images", options.generate)
        options.folder = options.folder.resolve()
        print(f"{options.folder}: torch {torch.__version__}, torchvision "
              f"{torchvision.__version__}, Pillow {PIL.__version__}, {os.cpu_count()} CPUs",
              flush=True)  # fmt: skip
        if "throughput" in options.parts:
            throughput(options)
        if "rss" in options.parts:
            peak_memory(options)
        if "cache" in options.parts:
            decoded_cache(options)


if __name__ == "__main__":
    main()
