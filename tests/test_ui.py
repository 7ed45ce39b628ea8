"""The MLflow UI (``python -m pipelines.ui``) in a real headless Chromium, driven by Playwright.

.ci/run installs Debian's ``chromium``; without it (or without playwright) the browser test
is skipped, and says so.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import mlflow_runs, run_cli, store_uri

CHROMIUM = os.environ.get("PIPELINES_CHROMIUM") or shutil.which("chromium")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(url: str, server: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, "the UI server exited"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in {seconds} s")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_ui_shows_a_finished_run_with_its_metrics_in_a_browser(workdir: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    assert run_cli(["trainer.max_epochs=2"], workdir).returncode == 0
    (run,) = mlflow_runs(store_uri(workdir))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    server = subprocess.Popen(
        [sys.executable, "-m", "pipelines.ui", "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/health", server)
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
            )
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            experiment = run.info.experiment_id
            page.goto(f"http://127.0.0.1:{port}/#/experiments/{experiment}/runs")
            # as a person would: find the run by its name in the list, open it
            page.get_by_text(run.info.run_name).first.click(timeout=60_000)
            page.get_by_text("test/acc", exact=True).first.wait_for(timeout=60_000)
            page.screenshot(path=str(workdir / "run_page.png"), full_page=True)
            if os.environ.get("PIPELINES_UI_SCREENSHOT"):  # to look at it by hand
                page.screenshot(path=os.environ["PIPELINES_UI_SCREENSHOT"], full_page=True)
            body = page.inner_text("body")
            browser.close()
        assert run.info.run_id in body
        for key in ("test/acc", "test/loss", "val/loss"):
            assert key in body
        shown = f"{run.data.metrics['test/acc']}"[:6]
        assert shown in body, f"test/acc {shown} not on the page"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_ui_without_runs_says_how_to_make_one(workdir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.ui"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "No runs here yet" in result.stderr and "python -m pipelines.run" in result.stderr


def test_ui_on_a_busy_port_says_so_and_fails(workdir: Path) -> None:
    """On a port another program holds, MLflow's server printed its own error and the
    command still exited 0, as if the UI were up."""
    (workdir / "mlruns").mkdir()
    (workdir / "mlruns" / "mlflow.db").touch()  # a store, so only the port is wrong
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "pipelines.ui", "--port", str(port)],
            cwd=workdir, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"Port {port} on 127.0.0.1 is in use" in result.stderr
    assert f"--port {port + 1}" in result.stderr and "Traceback" not in result.stderr


def test_ui_on_a_file_store_names_the_sqlite_store_to_use(workdir: Path) -> None:
    """MLflow 3's server refuses a folder of files with a traceback, after the command had
    printed that the UI was up."""
    (workdir / "old_runs").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.ui", "--tracking-uri", "file:./old_runs"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "(given to --tracking-uri) is a folder of files" in result.stderr
    assert f"`--tracking-uri sqlite:///{workdir.resolve() / 'old_runs' / 'mlflow.db'}`" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr and "MLflow UI on" not in result.stdout
