"""A tracking store that cannot record the run is refused before any data or training: one
paragraph, exit status 2, naming the setting and the fix; not a traceback, nor minutes of
retries against a server that is not there."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType

from conftest import FAST, CliResult, run_cli, store_uri


def _assert_refused(result: CliResult, *fragments: str) -> None:
    """Exit 2 with one ``Error:`` paragraph holding ``fragments``, no traceback, no stage."""
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert "stage 0:" not in result.output, "refused before any data is prepared"
    assert not (result.cwd / "outputs").exists(), "the refused run's folder is removed"


def _free_port() -> int:
    """A local port nothing listens on (a server that is not running)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("where", ["tracking.uri", "MLFLOW_TRACKING_URI"])
def test_a_file_store_is_refused_with_the_sqlite_uri_to_use(workdir: Path, where: str) -> None:
    sqlite = f"sqlite:///{workdir.resolve() / 'mlruns' / 'mlflow.db'}"
    if where == "tracking.uri":
        result = run_cli([*FAST, "tracking.uri=file:./mlruns"], cwd=workdir)
        _assert_refused(result, "file:./mlruns (set by tracking.uri)", f"`tracking.uri={sqlite}`")
    else:  # a plain folder, as users write it
        result = run_cli(FAST, cwd=workdir, env={"MLFLOW_TRACKING_URI": "./mlruns"})
        _assert_refused(result, "MLFLOW_TRACKING_URI variable", f"MLFLOW_TRACKING_URI={sqlite}")
    assert "file store" in result.stderr and "MLFLOW_ALLOW_FILE_STORE" in result.stderr


def test_an_unreachable_server_is_refused_in_seconds(workdir: Path) -> None:
    uri = f"http://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    # MLflow's own retries took about 255 s here
    result = run_cli([*FAST, f"tracking.uri={uri}"], cwd=workdir, timeout=90)
    _assert_refused(
        result,
        f"{uri} (set by tracking.uri) did not answer",
        "python -m pipelines.ui --port",
        "mlflow server",
        "leave tracking.uri out",
    )
    assert time.monotonic() - started < 60


def test_a_sweep_on_an_unreachable_server_stops_before_its_first_job(workdir: Path) -> None:
    uri = f"http://127.0.0.1:{_free_port()}"
    result = run_cli(["-m", *FAST, f"tracking.uri={uri}", "seed=1,2"], cwd=workdir, timeout=90)
    _assert_refused(result, f"{uri} (set by tracking.uri) did not answer")
    assert "Launching" not in result.output, "no job is started on a store none can use"


@pytest.mark.parametrize("module", ["pipelines.evaluate", "pipelines.resume"])
def test_commands_that_read_a_run_refuse_an_unreachable_server_in_seconds(
    workdir: Path, module: str
) -> None:
    # they open the store on their own (run_loader.fetch_run): minutes of retries there too
    uri = f"http://127.0.0.1:{_free_port()}"
    result = run_cli(["0123abcd", "--tracking-uri", uri], cwd=workdir, module=module, timeout=90)
    assert result.returncode == 2 and "Traceback" not in result.output, result.output
    assert f"The MLflow tracking server {uri} did not answer" in result.stderr
    assert "--tracking-uri" in result.stderr


def test_a_damaged_store_file_is_refused_and_left_alone(workdir: Path) -> None:
    database = workdir / "mlruns" / "mlflow.db"
    database.parent.mkdir()
    garbage = bytes(range(256)) * 64
    database.write_bytes(garbage)
    result = run_cli(FAST, cwd=workdir)
    _assert_refused(
        result,
        f"{database.resolve()} (the default store",
        "is not a database MLflow can read",
        "mlflow.db.broken",
        "tracking.uri=sqlite:///",
    )
    assert database.read_bytes() == garbage


def test_a_store_locked_by_another_process_is_refused(workdir: Path) -> None:
    database = workdir / "mlruns" / "mlflow.db"
    database.parent.mkdir()
    holder = sqlite3.connect(database, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # a program holding a write open
        result = run_cli(FAST, cwd=workdir, timeout=120)
    finally:
        holder.close()
    _assert_refused(result, f"{database.resolve()} (the default store", "is locked", "fuser")


def test_a_read_only_store_folder_is_refused(workdir: Path) -> None:
    store = workdir / "mlruns"
    store.mkdir()
    prefix = None
    if os.geteuid() == 0:  # root writes through permissions: mount the folder read-only
        usable = (
            shutil.which("unshare")
            and not subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode
        )
        if not usable:
            pytest.skip("as root, a read-only folder needs a mount namespace (unshare -m)")
        mount = 'mount --bind -o ro "$0" "$0" && exec "$@"'
        prefix = ["unshare", "-m", "sh", "-c", mount, str(store)]
    else:
        store.chmod(0o555)
    try:
        result = run_cli(FAST, cwd=workdir, prefix=prefix)
    finally:
        store.chmod(0o755)
    _assert_refused(
        result,
        "cannot be written",
        f"make {store.resolve()} writable",
        "tracking.uri=sqlite:///",
    )


def test_a_deleted_experiment_is_refused_with_how_to_restore_it(workdir: Path) -> None:
    client = MlflowClient(tracking_uri=store_uri(workdir))
    experiment_id = client.create_experiment("gone")
    client.delete_experiment(experiment_id)  # as the UI's delete does
    result = run_cli([*FAST, "tracking.experiment=gone"], cwd=workdir)
    _assert_refused(
        result,
        "The MLflow experiment 'gone' (tracking.experiment) is deleted",
        f"mlflow experiments restore --experiment-id {experiment_id}",
        "tracking.experiment=NAME",
    )
    assert client.search_runs([experiment_id], run_view_type=ViewType.ALL) == []


@pytest.mark.parametrize("value", ["", "null"])
def test_an_empty_experiment_name_is_refused(workdir: Path, value: str) -> None:
    result = run_cli([*FAST, f"tracking.experiment={value}"], cwd=workdir)
    _assert_refused(
        result,
        "'tracking.experiment' is empty or null",
        "`tracking.experiment=pipelines`",
        "`tracking=none`",
    )
    assert not (workdir / "mlruns").exists(), "checked before a run is opened"


def test_a_store_whose_lock_cannot_be_created_is_refused_not_waited_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """filelock takes a lock file it may not create for one another process holds, and
    polled for minutes without a word; root ignores permissions, hence the patched check."""
    from pipelines.errors import TrackingStoreError
    from pipelines.tracking import store
    from pipelines.tracking.store import TrackingSettings
    from pipelines.tracking.store_checks import explained_store_errors

    folder = tmp_path / "read-only"
    folder.mkdir()
    real_access = os.access

    def access(path: str, mode: int) -> bool:
        return False if Path(path) == folder else real_access(path, mode)

    monkeypatch.setattr(store.os, "access", access)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    started = time.monotonic()
    settings = TrackingSettings(uri=uri)
    with pytest.raises(TrackingStoreError) as refused, explained_store_errors(settings, uri):
        store.open_client(uri)
    assert time.monotonic() - started < 5
    message = str(refused.value)
    assert "cannot be written" in message and f"make {folder} writable" in message


def test_a_store_locked_by_another_process_is_named_after_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from filelock import FileLock

    from pipelines.errors import TrackingStoreError
    from pipelines.tracking import store

    monkeypatch.setattr(store, "LOCK_TIMEOUT_SECONDS", 0.3)
    database = tmp_path / "mlflow.db"
    with FileLock(str(database) + ".lock"), pytest.raises(TrackingStoreError) as refused:
        store.open_client(f"sqlite:///{database}")
    message = str(refused.value)
    assert "stayed locked for 0.3 s" in message and f"delete {database}.lock" in message
