"""examples/quickstart.ipynb runs top to bottom in a fresh kernel, as a newcomer runs it
(nbclient, nbformat and ipykernel come with the ``test`` extra)."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def test_the_notebook_is_committed_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


def test_the_quickstart_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a folder of its own (its ./mlruns, ./outputs, image files), with no cell erring."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend: PNGs
    copy = tmp_path / NOTEBOOK.name
    shutil.copy(NOTEBOOK, copy)
    notebook = nbformat.read(copy, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()  # a cell's error raises CellExecutionError with its traceback
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    assert not [output for output in outputs if output.output_type == "error"]
    shown = "".join(str(output.get("data", {}).get("text/plain", "")) for output in outputs)
    assert "TrainResult(run " in shown and "test/acc" in shown and "probability" in shown
    printed = "".join(output.get("text", "") for output in outputs)
    assert "epoch 5  train/acc " in printed  # the notebook's progress: a line per epoch
    assert any("image/png" in output.get("data", {}) for output in outputs)  # the curves
    assert len(list((tmp_path / "outputs" / "runs").glob("*/*"))) == 1
