"""Shared helpers: run the CLI in a subprocess and read what it tracked in MLflow."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# The suite runs in two workers (pyproject: -n 2) on tiny networks: one intra-op thread per
# process keeps them from fighting over the cores (OpenMP threads spin while they wait).
# Every CLI subprocess inherits it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

#: keeps CLI tests fast: two epochs are enough to check wiring, not accuracy
FAST = ["trainer.max_epochs=2"]


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str
    cwd: Path

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(
    args: list[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    module: str = "pipelines.run",
    prefix: list[str] | None = None,
) -> CliResult:
    """``python -m pipelines.run ARGS`` (or another ``module``) in ``cwd``, with a clean
    tracking environment; ``prefix`` is a command that runs it (e.g. in a mount namespace)."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI",)}
    full_env.pop("HYDRA_FULL_ERROR", None)
    full_env.update(env or {})
    proc = subprocess.run(
        [*(prefix or []), sys.executable, "-m", module, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr, cwd)


def store_uri(directory: Path) -> str:
    return f"sqlite:///{directory / 'mlruns' / 'mlflow.db'}"


def mlflow_runs(uri: str, experiment: str = "pipelines") -> list:
    """All runs of an experiment, oldest first."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r} in {uri}"
    return client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"])


@pytest.fixture
def one_thread():
    """Tiny networks run fastest on one torch thread, and do not fight a busy machine's cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty working directory, so runs land in a fresh ./mlruns and ./outputs."""
    path = tmp_path / "work"
    path.mkdir()
    return path


def quiet_trainer(**kwargs):
    """A Lightning ``Trainer`` on CPU that logs, saves and prints nothing (unit tests)."""
    import lightning as L

    settings = {
        "max_epochs": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "accelerator": "cpu",
    }
    return L.Trainer(**{**settings, **kwargs})
