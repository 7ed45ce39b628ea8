"""Distributed data parallel: sharded training batches, one run and one folder per job."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import mlflow_runs, run_cli, store_uri
from pipelines.runtime.distributed import process_rank
from pipelines.training.tensor_loader import TensorBatches


@pytest.mark.parametrize("size", [10, 11])
def test_ranks_share_out_every_sample_of_an_epoch(size: int) -> None:
    """Same permutation on each rank, disjoint shards, equal lengths (padded when odd)."""
    data = torch.arange(size)
    loaders = [
        TensorBatches(data, batch_size=3, shuffle=True, seed=5, rank=rank, world_size=2)
        for rank in (0, 1)
    ]
    epochs = [[torch.cat([b[0] for b in loader]) for _ in range(2)] for loader in loaders]
    for epoch in range(2):
        shards = [epochs[rank][epoch] for rank in (0, 1)]
        assert len(shards[0]) == len(shards[1]) == (size + 1) // 2
        together = torch.cat(shards)
        assert set(together.tolist()) == set(range(size))
        assert len(together) - len(set(together.tolist())) == size % 2  # one repeat if odd
    assert not torch.equal(epochs[0][0], epochs[0][1])  # reshuffled every epoch
    assert len(loaders[0]) == len(list(loaders[0])) == 2


def test_process_rank_reads_the_launchers_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "NODE_RANK", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    assert process_rank() == 0
    monkeypatch.setenv("SLURM_PROCID", "1")  # a task of a one-task job array: not a rank
    assert process_rank() == 0
    monkeypatch.setenv("SLURM_NTASKS", "4")  # one of four tasks of the same job
    assert process_rank() == 1
    monkeypatch.delenv("SLURM_PROCID")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert process_rank() == 0
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert process_rank() != 0
    monkeypatch.setenv("RANK", "0")  # torchrun's global rank wins
    assert process_rank() == 0


def test_cpu_ddp_sweep_keeps_one_run_and_one_folder_per_job(workdir: Path) -> None:
    """Two jobs, two gloo processes each: the second rank runs its job, not the sweep."""
    result = run_cli(
        ["-m", "trainer=ddp_cpu", "trainer.max_epochs=2", "seed=1,2"], workdir, timeout=600
    )
    assert result.returncode == 0, result.output
    runs = mlflow_runs(store_uri(workdir))
    assert len(runs) == 3  # the sweep's parent and one run per job, none from rank 1
    jobs = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert sorted(r.data.params["seed"] for r in jobs) == ["1", "2"]
    for run in jobs:
        assert run.info.status == "FINISHED"
        assert run.data.metrics["test/acc"] > 0.5
        assert len(run.data.params) == len(jobs[0].data.params)
    assert not (workdir / "outputs" / "runs").exists()  # rank 1 made no folder of its own
    (sweep_dir,) = (workdir / "outputs" / "sweeps").glob("*/*")
    job_dirs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit())
    assert job_dirs == ["0", "1"]
    for job in job_dirs:
        assert (sweep_dir / job / "ddp_rank_1.log").is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason="about machines without a GPU")
def test_without_a_gpu_the_per_step_cuda_check_is_the_plain_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Lightning's NVML-based check would run again on every optimizer step."""
    from pipelines.training.trainer import plain_cuda_check_without_gpu

    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    plain_cuda_check_without_gpu()
    import os

    assert "PYTORCH_NVML_BASED_CUDA_CHECK" not in os.environ
