"""Distributed data parallel under Hydra: one tracked run and one output folder per job.

Lightning's DDP launcher starts the other ranks by re-running the command line. Under Hydra
that is wrong in two ways (the known pain point of Lightning + Hydra templates): a sweep's
``-m a=1,2`` re-runs *the whole sweep* in every rank, and Hydra gives each rank a folder of
its own. Here the other ranks run exactly the job that launched them: the job's own
overrides (the trial's values, not the sweep's lists), in the job's output folder, and
they neither open MLflow runs nor print summaries (only rank 0 tracks).

After a DDP run the rank-0 process is returned to a clean single-process state (process
group destroyed, the launcher's environment variables restored), so the next job of an
in-process sweep starts its own ranks instead of waiting for ranks that have exited.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

#: variables Lightning's launcher sets in the rank-0 process, restored after each run
_LAUNCH_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def process_rank() -> int:
    """This process's global rank: 0 unless started as a secondary rank of a DDP job.

    ``RANK`` (torchrun); else ``SLURM_PROCID`` in a SLURM step of several tasks (``srun``,
    or submitit with ``tasks_per_node`` > 1: every task runs the same job, one per rank);
    else ``NODE_RANK``/``LOCAL_RANK`` (Lightning's own launcher). Unset: rank 0.
    """
    if os.environ.get("RANK", "").isdigit():
        return int(os.environ["RANK"])
    if (
        int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1
        and os.environ.get("SLURM_PROCID", "").isdigit()
    ):
        return int(os.environ["SLURM_PROCID"])
    node = int(os.environ.get("NODE_RANK", "0") or 0)
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    return node * 1000 + local  # only "is it zero" matters


def is_secondary_process() -> bool:
    return process_rank() != 0


def rank_command(local_rank: int) -> tuple[Sequence[str], str]:
    """The command and folder that start ``local_rank`` of the Hydra job now running."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd

    hydra = HydraConfig.get()
    command = [sys.executable, "-m", "pipelines.run", *hydra.overrides.task]
    command += [
        f'hydra.run.dir="{hydra.runtime.output_dir}"',
        "hydra.output_subdir=null",
        f"hydra.job.name=ddp_rank_{local_rank}",
    ]
    return command, get_original_cwd()


def use_job_command_for_ranks() -> None:
    """Make Lightning start the other ranks with :func:`rank_command`.

    Replaces the helper Lightning's subprocess launchers call when Hydra is in use
    (``_hydra_subprocess_cmd``, same signature) in both modules that hold a reference to
    it (Fabric's, and the Trainer's which imports it by name); if a Lightning release
    renames it, Lightning's own command is used and this does nothing.
    """
    import importlib

    for name in (
        "lightning.fabric.strategies.launchers.subprocess_script",
        "lightning.pytorch.strategies.launchers.subprocess_script",
    ):
        try:
            module = importlib.import_module(name)
        except ImportError:  # pragma: no cover - Lightning is a dependency
            continue
        if hasattr(module, "_hydra_subprocess_cmd"):
            module._hydra_subprocess_cmd = rank_command


@contextmanager
def single_process_afterwards() -> Iterator[None]:
    """Undo what a DDP launch leaves behind in this process when the run ends."""
    saved = {name: os.environ.get(name) for name in _LAUNCH_VARIABLES}
    try:
        yield
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
