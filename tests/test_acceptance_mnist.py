"""Acceptance on real MNIST (the 10,000 real test images in ../shared, split 8,000/2,000).

Long runs: ``pytest -m slow``. Skipped where ../shared/data/mnist is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import mlflow_runs, run_cli, store_uri
from plugins.data.mnist import read_idx, write_idx

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="../shared/data/mnist is absent"),
]


@pytest.fixture(scope="module")
def real_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    images = read_idx(SHARED_MNIST / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(SHARED_MNIST / "t10k-labels-idx1-ubyte.gz")
    root = tmp_path_factory.mktemp("mnist")
    write_idx(root / "train-images-idx3-ubyte.gz", images[:8000])
    write_idx(root / "train-labels-idx1-ubyte.gz", labels[:8000])
    write_idx(root / "t10k-images-idx3-ubyte", images[8000:])
    write_idx(root / "t10k-labels-idx1-ubyte", labels[8000:])
    return root


@pytest.mark.parametrize(("model", "threshold"), [("mlp", 0.95), ("convnet", 0.98)])
def test_real_mnist_accuracy(real_mnist: Path, workdir: Path, model: str, threshold: float):
    result = run_cli(
        ["data=mnist", f"data.root={real_mnist}", f"model={model}", "trainer.max_epochs=10"],
        cwd=workdir,
        timeout=1200,
    )
    assert result.returncode == 0, result.output
    (run,) = mlflow_runs(store_uri(workdir))
    assert run.data.metrics["test/acc"] >= threshold


def test_transfer_from_an_earlier_run_beats_scratch_and_fine_tuning_helps(
    real_mnist: Path, workdir: Path
) -> None:
    """The network of a real-MNIST run, moved to 50 labelled digits (means over 3 seeds)."""
    source = run_cli(
        ["data=mnist", f"data.root={real_mnist}", "experiment=book_mnist_convnet"],
        cwd=workdir,
        timeout=1200,
    )
    assert source.returncode == 0, source.output
    (source_run,) = mlflow_runs(store_uri(workdir))
    scratch, extracted, tuned = [], [], []
    for seed in (1, 2, 3):
        base = run_cli(
            ["data=digits_few", "augment=digits", "model=convnet", "model.padding=valid",
             "trainer.max_epochs=30", f"seed={seed}"],
            cwd=workdir,
        )  # fmt: skip
        moved = run_cli(
            ["experiment=transfer_digits", f"model.backbone=runs:/{source_run.info.run_id}",
             f"seed={seed}"],
            cwd=workdir,
        )  # fmt: skip
        assert base.returncode == 0 and moved.returncode == 0, base.output + moved.output
        base_run, moved_run = mlflow_runs(store_uri(workdir))[-2:]
        scratch.append(base_run.data.metrics["test/acc"])
        extracted.append(moved_run.data.metrics["feature_extraction/test/acc"])
        tuned.append(moved_run.data.metrics["test/acc"])
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    assert mean(extracted) > mean(scratch), (scratch, extracted)
    assert mean(tuned) > mean(extracted), (extracted, tuned)
