"""A refused command leaves nothing behind: no MLflow run, no run folder, no traceback.

Everything that can be known about the data, the model and the settings is checked before
the MLflow run and the output folder exist: the ``prepare`` stage loads and splits the data
and builds the model (a dry forward pass) in its ``before_run`` hook, and the folder Hydra
made for the run is removed again. Each case is a mistake a user makes, through the CLI.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import mlflow_runs, run_cli, store_uri


def _images(root: Path, classes: tuple[str, ...], count: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for index in range(count):
            pixels = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{index}.jpg")
    return root


def _table(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _case(name: str, tmp_path: Path) -> tuple[list[str], str]:
    """The command's overrides and a fragment its one paragraph must hold."""
    housing = ["data=housing", "model=regressor"]
    if name == "empty_csv":
        table = _table(tmp_path / "empty.csv", "")
        return [*housing, f"data.path={table}"], "is empty"
    if name == "header_only_csv":
        table = _table(tmp_path / "header.csv", "a,b,price\n")
        return [*housing, f"data.path={table}"], "has a header (a, b, price) but no rows"
    if name == "missing_target":
        table = _table(tmp_path / "t.csv", "a,b,price\n1,2,3\n4,5,6\n7,8,9\n1,1,1\n2,2,2\n")
        return [*housing, f"data.path={table}", "data.target=cost"], "No column 'cost'"
    if name == "single_class":
        root = _images(tmp_path / "one", ("cats",))
        return ["data=image_folder", f"data.root={root}"], "a classifier needs at least 2"
    if name == "undecodable_image":
        root = _images(tmp_path / "bad", ("cats", "dogs"))
        (root / "dogs" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
        return ["data=image_folder", f"data.root={root}"], "broken.jpg"
    if name == "unknown_run":
        root = _images(tmp_path / "good", ("cats", "dogs"))
        backbone = "runs:/0123456789abcdef0123456789abcdef"
        args = ["pipeline=transfer", "model=transfer", f"model.backbone={backbone}"]
        return [*args, "data=image_folder", f"data.root={root}"], "No run '0123456789abcdef"
    if name == "negative_epochs":
        return ["trainer.max_epochs=-3"], "'trainer.max_epochs' must be at least 1"
    if name == "wrong_type":
        return ["trainer.max_epochs=abc"], "Wrong value for 'trainer.max_epochs'"
    raise AssertionError(name)


CASES = [
    "empty_csv",
    "header_only_csv",
    "missing_target",
    "single_class",
    "undecodable_image",
    "unknown_run",
    "negative_epochs",
    "wrong_type",
]


def _assert_left_nothing(result, workdir: Path, fragment: str) -> None:
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output, result.output
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert fragment in error, error
    assert "stage 0:" not in result.output, "no stage ran"
    assert not (workdir / "mlruns").exists(), "no store was made: no run, FAILED or other"
    assert not (workdir / "outputs").exists(), "the run's folder was removed again"


@pytest.mark.parametrize("name", CASES)
def test_a_refused_command_leaves_no_run_and_no_folder(
    workdir: Path, tmp_path: Path, name: str
) -> None:
    args, fragment = _case(name, tmp_path)
    result = run_cli(args, cwd=workdir)
    _assert_left_nothing(result, workdir, fragment)


def test_a_backbone_trained_on_other_data_is_refused_naming_both_shapes(
    workdir: Path, tmp_path: Path
) -> None:
    forecast = ["data=co2", "model=dense_forecaster", "pipeline=forecast"]
    trained = run_cli([*forecast, "trainer.max_epochs=1"], cwd=workdir)
    assert trained.returncode == 0, trained.output
    (run,) = mlflow_runs(store_uri(workdir))
    root = _images(tmp_path / "photos", ("cats", "dogs"))
    folders = set((workdir / "outputs").rglob("*"))
    args = ["pipeline=transfer", "model=transfer", f"model.backbone=runs:/{run.info.run_id}"]
    data = ["data=image_folder", f"data.root={root}", "data.image_size=[40,40]"]
    result = run_cli([*args, *data], cwd=workdir)
    assert result.returncode == 2 and "Traceback" not in result.output, result.output
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    shape = run.data.params["data.input_shape"].replace("[", "(").replace("]", ")")
    assert f"trained on samples of shape {shape}" in error, error
    assert "this run's data gives (3, 40, 40)" in error, error
    assert "model.backbone=resnet18" in error
    assert len(mlflow_runs(store_uri(workdir))) == 1, "no second run, FAILED or other"
    assert set((workdir / "outputs").rglob("*")) == folders, "and no second folder"


def test_a_folder_that_holds_anything_else_is_kept(workdir: Path) -> None:
    folder = workdir / "outputs" / "runs" / "mine"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("the user's own file")
    result = run_cli(["trainer.max_epochs=abc", f"hydra.run.dir={folder}"], cwd=workdir)
    assert result.returncode == 2, result.output
    assert (folder / "notes.txt").read_text() == "the user's own file"


def test_a_folder_outside_outputs_is_the_users_and_kept(workdir: Path) -> None:
    """``hydra.run.dir=.`` (no run folders) or a folder the user made: never removed."""
    result = run_cli(["trainer.max_epochs=-3", "hydra.run.dir=."], cwd=workdir)
    assert result.returncode == 2, result.output
    assert workdir.is_dir(), "the working directory stays"
    mine = workdir / "results"
    mine.mkdir()
    result = run_cli(["trainer.max_epochs=-3", f"hydra.run.dir={mine}"], cwd=workdir)
    assert result.returncode == 2 and mine.is_dir(), result.output


def test_a_folder_whose_lock_another_process_holds_is_kept(tmp_path: Path) -> None:
    import fcntl

    from pipelines.runtime.run_lock import LOCK_FILE, remove_unused_folder

    folder = tmp_path / "outputs" / "runs" / "busy"
    folder.mkdir(parents=True)
    with open(folder / LOCK_FILE, "a+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert not remove_unused_folder(folder, tmp_path / "outputs")
    assert folder.is_dir()
    assert remove_unused_folder(folder, tmp_path / "outputs"), "once no one holds it"
    assert not (tmp_path / "outputs").exists(), "with the folders above it left empty"


def test_a_forked_child_lets_go_of_the_run_lock(tmp_path: Path) -> None:
    """A DataLoader worker orphaned by ``kill -9`` must not keep a run "still running"."""
    import fcntl
    import os
    import signal

    from pipelines.runtime.run_lock import LOCK_FILE, run_lock

    ready, started = os.pipe()
    with run_lock(tmp_path, None):
        child = os.fork()
        if child == 0:  # pragma: no cover - the child sleeps until it is killed
            os.write(started, b"1")  # the fork's hooks have run by now
            signal.pause()
            os._exit(0)
    os.read(ready, 1)
    try:
        with open(tmp_path / LOCK_FILE, "a+") as probe:
            fcntl.flock(probe.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: no raise
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


def test_blank_lines_before_a_table_do_not_make_it_empty(tmp_path: Path) -> None:
    """pandas skips blank lines: the header is the first line holding text."""
    from plugins.data.tabular import read_table

    table = _table(tmp_path / "t.csv", "\n\na,b,price\n1,2,3\n4,5,6\n")
    frame = read_table(table, None)
    assert list(frame.columns) == ["a", "b", "price"] and len(frame) == 2
