"""``--help`` and ``--cfg job`` answer fast: no torch, Lightning or MLflow import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import run_cli

#: runs the CLI in-process, then reports which heavy modules were imported
_PROBE = """
import runpy, sys
sys.argv = ["pipelines.run", *sys.argv[1:]]
try:
    runpy.run_module("pipelines.run", run_name="__main__")
except SystemExit:
    pass
print("HEAVY", sorted(m for m in ("torch", "lightning", "mlflow") if m in sys.modules))
"""


def heavy_modules(args: list[str], cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], cwd=cwd, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_help_lists_groups_defaults_and_plugins(workdir: Path) -> None:
    result = run_cli(["--help"], workdir)
    assert result.returncode == 0, result.output
    out = result.stdout
    assert "usage: python -m pipelines.run" in out
    assert "mlp*" in out and "classify*" in out and "digits*" in out  # the defaults
    assert "deepdream" in out and "hparams_search:" in out and "ddp_cpu" in out
    assert "stage:" in out and "style_transfer" in out  # installed stage plugins
    assert "--hydra-help" in out


def test_help_and_cfg_job_import_no_framework(workdir: Path) -> None:
    assert heavy_modules(["--help"], workdir) == "HEAVY []"
    assert heavy_modules(["model=convnet", "--cfg", "job"], workdir) == "HEAVY []"


def test_an_engine_key_error_is_refused_before_any_framework_import(workdir: Path) -> None:
    """What needs no plugin is answered without importing torch or Lightning: a misspelt
    engine key, an unknown plugin. A plugin's own keys, types and ranges are in its
    signature, so they are checked once it is imported (:mod:`pipelines.api`)."""
    for args in (["+tracking.experimnt=x"], ["model=mpl"], ["seed=abc"]):
        assert heavy_modules(args, workdir) == "HEAVY []", args


def test_a_value_out_of_range_is_one_paragraph(workdir: Path) -> None:
    refused = run_cli(["model=convnet", "model.kernel_size=0"], workdir)
    assert refused.returncode == 2
    assert "`model.kernel_size=3`" in refused.stderr, "an example that suits the key"
    assert "Traceback" not in refused.output
