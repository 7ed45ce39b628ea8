"""Run ``python -m pipelines.run`` as a user would and read its summary (benchmarks only)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class CliRun:
    metrics: dict[str, float]
    run_id: str
    seconds: float


def run(args: list[str], cwd: Path) -> CliRun:
    """Run the CLI; its summary metrics, MLflow run id and wall seconds (exit on failure)."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.run", *args], cwd=cwd, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{proc.stderr[-3000:]}")
    metrics = {
        m[1]: float(m[2]) for m in re.finditer(r"^\s+(\S+/\S+)\s+([-+0-9.eE]+)$", proc.stdout, re.M)
    }
    run_id = re.search(r"MLflow run\s+([0-9a-f]{32})", proc.stdout)
    return CliRun(metrics, run_id[1] if run_id else "", seconds)
