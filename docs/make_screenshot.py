"""Make ``docs/mlflow_ui_run.png``: the MLflow UI on a real run of the default pipeline.

    python docs/make_screenshot.py [--epochs 20] [--output docs/mlflow_ui_run.png]

Trains ``python -m pipelines.run`` (mlp on digits) in a scratch folder, serves
``python -m pipelines.ui`` on it, and photographs the run's "Model metrics" tab (its
per-epoch train and validation curves) in headless Chromium at 1400x930, as a person opening
the UI would see it. Needs Debian's ``chromium`` (or ``PIPELINES_CHROMIUM``) and playwright,
as tests/test_ui.py does. The PNG is quantised to 256 colours with Pillow (~100-200 KB).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: 930: the second row of charts whole, legend included
VIEWPORT = {"width": 1400, "height": 930}
#: metric sections folded away, so the curves (train/, val/) fill the picture
FOLDED = ("best", "test", "time")
#: pixels, the least MLflow allows: two rows of charts fit under the run's name and tabs
CHART_HEIGHT = 300


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(url: str, server: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("the UI server exited")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{url} did not answer in {seconds} s")


def train(folder: Path, epochs: int, env: dict[str, str]):
    """The default pipeline in ``folder``; its MLflow run."""
    from mlflow import MlflowClient

    command = [sys.executable, "-m", "pipelines.run", f"trainer.max_epochs={epochs}"]
    subprocess.run(command, cwd=folder, env=env, check=True)
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("pipelines")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED", run.info.status
    return run


def photograph(url: str, run, output: Path, chromium: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        page = browser.new_page(viewport=VIEWPORT)
        experiment = run.info.experiment_id
        # the runs list in "Model training" mode (not GenAI), without the assistant panel
        page.goto(f"{url}/#/experiments/{experiment}/runs?workflowType=machine_learning")
        page.get_by_text(run.info.run_name).first.wait_for(timeout=60_000)
        close = page.get_by_role("button", name="Close")
        if close.count():
            close.first.click()
        page.get_by_text(run.info.run_name).first.click()
        page.get_by_role("tab", name="Model metrics").click(timeout=60_000)
        headers = page.locator("[role=button][aria-expanded]")  # a metric section each

        def section(name: str):
            return headers.filter(has=page.get_by_text(name, exact=True))

        section("val").first.wait_for(timeout=60_000)
        for name in FOLDED:
            if section(name).count():
                section(name).first.click()
        page.get_by_role("button", name="Toggle sidebar").first.click()  # room for charts
        page.wait_for_timeout(1_000)
        _two_charts_a_row(page)
        section("train").first.evaluate("e => e.scrollIntoView({block: 'start'})")
        # the assistant's floating button would sit on the last chart
        page.add_style_tag(content="button[data-assistant-ui] { display: none !important; }")
        page.mouse.move(0, VIEWPORT["height"] - 1)  # no hover tooltip on a chart
        page.wait_for_timeout(3_000)  # the charts draw
        body = page.inner_text("body")
        for shown in (run.info.run_name, "train/loss", "val/loss", "val/acc"):
            assert shown in body, f"{shown!r} is not on the page"
        page.screenshot(path=str(output))
        browser.close()


def _two_charts_a_row(page) -> None:
    """Drag the first chart of each section wider and lower (the others follow), so that
    both curves of ``train/`` and of ``val/`` fill the picture."""
    handles = page.get_by_test_id("draggable-card-resize-handle")
    for i in range(handles.count()):
        handle = handles.nth(i)
        card = handle.locator("xpath=ancestor::*[contains(@class, 'react-resizable')][1]")
        grid = handle.locator("xpath=ancestor::*[@data-testid='draggable-chart-cards-grid'][1]")
        if not handle.is_visible():
            continue  # in a folded section
        # the mouse drags only what is on the screen
        card.evaluate("e => e.scrollIntoView({block: 'center'})")
        page.wait_for_timeout(1_000)  # the page scrolls smoothly
        card_box, grid_box, box = card.bounding_box(), grid.bounding_box(), handle.bounding_box()
        if card_box["width"] > grid_box["width"] * 0.4:
            continue  # resized with its section's first chart
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        dx = (grid_box["width"] - 16) / 2 - card_box["width"]
        dy = CHART_HEIGHT - card_box["height"]
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + dx / 2, y + dy / 2, steps=5)
        page.mouse.move(x + dx, y + dy, steps=5)
        page.mouse.up()
        page.wait_for_timeout(500)


def shrink(path: Path) -> None:
    """256 colours are plenty for a UI's flat colours: a smaller file, no visible change."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "mlflow_ui_run.png")
    args = parser.parse_args()
    chromium = os.environ.get("PIPELINES_CHROMIUM") or shutil.which("chromium")
    if chromium is None:
        raise SystemExit("needs Debian's chromium (apt-get install chromium)")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["CI"] = "1"  # plain progress lines
    with tempfile.TemporaryDirectory(prefix="pipelines-screenshot-") as scratch:
        folder = Path(scratch)
        run = train(folder, args.epochs, env)
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "pipelines.ui", "--port", str(port)],
            cwd=folder,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_until_up(f"{url}/health", server)
            photograph(url, run, args.output, chromium)
        finally:
            server.terminate()
            server.wait(timeout=30)
    shrink(args.output)
    print(f"{args.output}: {args.output.stat().st_size / 1024:.0f} KB, run {run.info.run_id}")


if __name__ == "__main__":
    main()
