"""A plugin package registered only by entry point, with its own config, found by name."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import mlflow_runs, run_cli, store_uri

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_plugin"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Install the fixture package into a private directory (the test env stays untouched)."""
    source = tmp_path_factory.mktemp("src") / "tiny_plugin"
    shutil.copytree(FIXTURE, source)
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    return target


def test_third_party_model_runs_by_name(plugin_site: Path, workdir: Path) -> None:
    result = run_cli(
        ["model=tiny", "trainer.max_epochs=2"], cwd=workdir, env={"PYTHONPATH": str(plugin_site)}
    )
    assert result.returncode == 0, result.output
    (run,) = mlflow_runs(store_uri(workdir))
    assert run.data.params["model.name"] == "tiny"
    assert run.data.params["model.width"] == "24", "its own config file was used"
    assert run.data.tags["model"] == "tiny"
    assert "test/acc" in run.data.metrics


def test_third_party_range_from_the_api_is_refused_in_one_paragraph(
    plugin_site: Path, workdir: Path
) -> None:
    """The plugin declares ``width: LayerSize`` (pipelines.api): the range and its message
    are the built-ins', checked before a run opens."""
    result = run_cli(
        ["model=tiny", "model.width=0"], cwd=workdir, env={"PYTHONPATH": str(plugin_site)}
    )
    assert result.returncode == 2, result.output
    assert "'model.width' must be" in result.stderr and "Traceback" not in result.output
    assert not (workdir / "mlruns").exists() or not mlflow_runs(store_uri(workdir))


def test_plugin_is_unknown_when_not_installed(workdir: Path) -> None:
    result = run_cli(["model=tiny"], cwd=workdir)
    assert result.returncode == 2
    assert "Unknown model 'tiny'" in result.stderr
