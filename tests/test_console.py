"""A terminal gets a config tree and the rich progress bar; pipes and CI get plain lines."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

from conftest import run_cli

ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")


def _run_in_terminal(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    """The CLI with a pseudo-terminal as stdout, as in a person's shell; what it showed."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.run", *args],
        cwd=cwd,
        env=env,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the process is done
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    assert proc.wait(timeout=300) == 0
    return ANSI.sub("", b"".join(chunks).decode(errors="replace"))


def test_a_terminal_gets_the_config_tree_and_the_rich_bar(workdir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "MLFLOW_TRACKING_URI")}
    shown = _run_in_terminal(["trainer.max_epochs=1", "tracking=none"], workdir, env)
    assert "├── model" in shown and "name: 'mlp'" in shown, shown[:2000]
    assert "━" in shown and "Epoch 0/0" in shown, shown[-2000:]


def test_ci_and_pipes_get_plain_lines(workdir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    in_ci = _run_in_terminal(["trainer.max_epochs=1", "tracking=none"], workdir, {**env, "CI": "1"})
    piped = run_cli(["trainer.max_epochs=1", "tracking=none"], workdir).output
    for shown in (in_ci, piped):
        assert "├──" not in shown and "━" not in shown
        assert "test/acc" in shown
