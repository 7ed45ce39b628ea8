"""Data path: in-memory tensor batches with per-batch augmentation vs torchvision's per-sample path.

The book's cats-vs-dogs augmentation (flip, rotation 0.1, zoom 0.2) on 180x180 RGB images,
one epoch of batches of 32, both paths in this process on the same images:

* ours: ``TensorBatches`` slicing whole batches out of a uint8 tensor kept in memory,
  converted to float and augmented per batch by ``plugins.data.augment.BatchAugmentation``
  (one affine grid per batch; on a GPU this runs on the device);
* torchvision: a ``Dataset`` of the same uint8 images with ``transforms.v2`` applied per
  sample (RandomHorizontalFlip, RandomRotation(36), RandomAffine(scale=(0.8, 1.2))) in a
  ``DataLoader``, with 0 workers and with ``--workers`` worker processes.

Prints samples per second of each and the ratios, measured in one run.

    python benchmarks/data_path.py [--images 2048] [--size 180] [--workers 2]
"""

from __future__ import annotations

import argparse
import time

import torch


def ours(images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> float:
    from pipelines.training.tensor_loader import TensorBatches
    from plugins.data.augment import AugmentSettings, BatchAugmentation

    augment = BatchAugmentation(AugmentSettings(flip="horizontal", rotation=0.1, zoom=0.2))
    batches = TensorBatches(images, labels, batch_size=batch_size, shuffle=True, seed=0)
    started = time.perf_counter()
    seen = 0
    for pixels, _ in batches:
        out = augment(pixels.float().div_(255))
        seen += out.shape[0]
    return seen / (time.perf_counter() - started)


def torchvision_path(
    images: torch.Tensor, labels: torch.Tensor, batch_size: int, workers: int
) -> float:
    from torch.utils.data import DataLoader, Dataset
    from torchvision.transforms import v2

    transform = v2.Compose(
        [
            v2.RandomHorizontalFlip(),
            v2.RandomRotation(36),
            v2.RandomAffine(degrees=0, scale=(0.8, 1.2)),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )

    class Images(Dataset):
        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
            return transform(images[index]), labels[index]

    loader = DataLoader(Images(), batch_size=batch_size, shuffle=True, num_workers=workers)
    started = time.perf_counter()
    seen = 0
    for pixels, _ in loader:
        seen += pixels.shape[0]
    return seen / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--size", type=int, default=180)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    options = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    shape = (options.images, 3, options.size, options.size)
    images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 2, (options.images,), generator=generator)
    print(f"{options.images} images {options.size}x{options.size}, batches of "
          f"{options.batch_size}, {torch.get_num_threads()} torch threads", flush=True)  # fmt: skip
    ours(images[:256], labels[:256], options.batch_size)  # warm-up
    rates = {"in-memory tensors + per-batch augmentation": ours(images, labels, options.batch_size)}
    for workers in (0, options.workers):
        name = f"torchvision per-sample transforms, {workers} workers"
        rates[name] = torchvision_path(images, labels, options.batch_size, workers)
    base = rates["in-memory tensors + per-batch augmentation"]
    for name, rate in rates.items():
        print(f"  {name:48s} {rate:8.0f} samples/s  ({base / rate:.2f}x slower than ours)"
              if rate != base else f"  {name:48s} {rate:8.0f} samples/s", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
