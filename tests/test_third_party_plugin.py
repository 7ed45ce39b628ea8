"""A plugin package registered only by entry point, with its own config, found by name.

The package is tests/fixtures/tiny_plugin, the example of docs/plugins.md (whose code blocks
tests/test_plugin_docs.py keeps equal to it): a model, a data module and a stage."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import mlflow_runs, run_cli, store_uri

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_plugin"
#: what a build or a test run of the fixture leaves behind, not copied with it
BUILD_ARTEFACTS = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", ".pytest_cache")


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Install the fixture package into a private directory (the test env stays untouched)."""
    source = tmp_path_factory.mktemp("src") / "tiny_plugin"
    shutil.copytree(FIXTURE, source, ignore=BUILD_ARTEFACTS)
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


def test_the_plugins_own_tests_pass(plugin_site: Path, tmp_path: Path) -> None:
    """The package's own test file (docs/plugins.md's "Testing a plugin"), run as its author
    runs it: pytest in the package's folder, the package installed, without this repository's
    conftest. It runs the model, the data and the stage through the CLI and reads MLflow."""
    source = tmp_path / "tiny_plugin"
    shutil.copytree(FIXTURE, source, ignore=BUILD_ARTEFACTS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MLFLOW_"))}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"],
        cwd=source,
        env={**env, "PYTHONPATH": str(plugin_site)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout and "skipped" not in result.stdout, result.stdout
