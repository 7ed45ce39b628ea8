"""Shared helpers: run the CLI in a subprocess and read what it tracked in MLflow."""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# The suite runs in two workers (pyproject: -n 2) on tiny networks: one intra-op thread per
# process keeps them from fighting over the cores (OpenMP threads spin while they wait).
# Every CLI subprocess inherits it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

#: keeps CLI tests fast: two epochs are enough to check wiring, not accuracy
FAST = ["trainer.max_epochs=2"]


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str
    cwd: Path

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(
    args: list[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    module: str = "pipelines.run",
    prefix: list[str] | None = None,
) -> CliResult:
    """``python -m pipelines.run ARGS`` (or another ``module``) in ``cwd``, with a clean
    tracking environment; ``prefix`` is a command that runs it (e.g. in a mount namespace).

    Run by the fork server (tests/cli_server.py) where it can be: a real process, minus
    the seconds of imports. A prefix, or an environment that changes how the interpreter
    starts (``PYTHON*``), gets a fresh interpreter, as does every command when
    ``PIPELINES_TEST_FORK=0``.
    """
    full_env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI",)}
    full_env.pop("HYDRA_FULL_ERROR", None)
    full_env.update(env or {})
    if not prefix:
        forked = _FORK_SERVER.run(module, args, cwd, full_env, timeout)
        if forked is not None:
            return forked
    proc = subprocess.run(
        [*(prefix or []), sys.executable, "-m", module, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr, cwd)


class _ForkServer:
    """The client of tests/cli_server.py: one server per test process, started on first use.

    Falls back (returns None) wherever the server cannot stand in for a fresh interpreter,
    or is not there: commands are never lost to it.
    """

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.replies: Any = None
        self.env: dict[str, str] = {}
        self.lock = threading.Lock()

    def run(
        self, module: str, args: list[str], cwd: Path, env: dict[str, str], timeout: float
    ) -> CliResult | None:
        if os.environ.get("PIPELINES_TEST_FORK", "1") == "0" or not hasattr(os, "fork"):
            return None
        if sys.platform != "linux" or not self.lock.acquire(blocking=False):
            return None  # macOS cannot fork after some imports; a second thread waits less
        try:
            if not self._started():
                return None
            starting = {key: value for key, value in self.env.items() if key.startswith("PYTHON")}
            if starting != {key: value for key, value in env.items() if key.startswith("PYTHON")}:
                return None
            return self._ask(module, args, cwd, env, timeout)
        finally:
            self.lock.release()

    def _started(self) -> bool:
        """The server, started on first use with the test process's own environment (not
        one command's: a first command given PYTHONPATH would send all others to fresh
        interpreters, their start-up settings differing from the server's)."""
        if self.process is not None and self.process.poll() is None:
            return True
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI",)}
        env.pop("HYDRA_FULL_ERROR", None)
        read_fd, write_fd = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("cli_server.py")), str(write_fd)],
            stdin=subprocess.PIPE,
            env=env,
            pass_fds=(write_fd,),
        )
        os.close(write_fd)
        self.replies = os.fdopen(read_fd, "rb")
        self.env = dict(env)
        atexit.register(self.process.kill)
        return True

    def _ask(
        self, module: str, args: list[str], cwd: Path, env: dict[str, str], timeout: float
    ) -> CliResult | None:
        assert self.process is not None and self.process.stdin is not None
        with tempfile.TemporaryDirectory() as tmp:
            out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
            request = {
                "module": module, "args": [str(arg) for arg in args], "cwd": str(cwd),
                "env": env, "stdout": str(out), "stderr": str(err), "timeout": timeout,
            }  # fmt: skip
            try:
                self.process.stdin.write((json.dumps(request) + "\n").encode())
                self.process.stdin.flush()
                reply = json.loads(self.replies.readline() or b"{}")
            except (OSError, ValueError):
                reply = {}
            if "returncode" not in reply and not reply.get("timed_out"):
                self.process.kill()  # dead or confused: the next command starts another
                self.process = None
                return None
            stdout = out.read_text(errors="replace") if out.exists() else ""
            stderr = err.read_text(errors="replace") if err.exists() else ""
        if reply.get("timed_out"):
            raise subprocess.TimeoutExpired(
                [sys.executable, "-m", module, *args], timeout, stdout, stderr
            )
        return CliResult(reply["returncode"], stdout, stderr, cwd)


_FORK_SERVER = _ForkServer()


def default_sigint() -> None:
    """Ctrl-C's default action in the child: a test runner's worker may ignore SIGINT."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_until_first_checkpoint(cwd: Path, *args: str) -> subprocess.Popen:
    """Start ``python -m pipelines.run *args`` in ``cwd``; return it, still training, once its
    first ``last.ckpt`` is on disk (for tests that kill or interrupt a run mid-training)."""
    import time

    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.run", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=default_sigint,
    )
    deadline = time.monotonic() + 120
    while not any((cwd / "outputs").rglob("last.ckpt")):
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    return proc


def store_uri(directory: Path) -> str:
    return f"sqlite:///{directory / 'mlruns' / 'mlflow.db'}"


def mlflow_runs(uri: str, experiment: str = "pipelines") -> list:
    """All runs of an experiment, oldest first."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r} in {uri}"
    return client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"])


#: the repository's own run folders: tests write under their temporary folders only
_REPOSITORY = Path(__file__).resolve().parent.parent
_RUN_FOLDERS = ("mlruns", "outputs", "multirun", "lightning_logs")


def _run_files() -> dict[str, int]:
    """Every file under the repository's run folders, with its modification time."""
    found: dict[str, int] = {}
    for name in _RUN_FOLDERS:
        for path in (_REPOSITORY / name).rglob("*"):
            if path.is_file():
                found[str(path.relative_to(_REPOSITORY))] = path.stat().st_mtime_ns
    return found


@pytest.fixture(autouse=True, scope="session")
def _repository_run_folders_stay_as_they_were():
    """Fails the session where a test wrote into the repository's ``mlruns/``,
    ``outputs/``, ``multirun/`` or ``lightning_logs/`` (an MLflow model logged where a
    store's experiment pointed at the working directory, a run started in it)."""
    before = _run_files()
    yield
    after = _run_files()
    touched = sorted(path for path in after if before.get(path) != after[path])
    touched += sorted(set(before) - set(after))
    if touched:
        more = f" and {len(touched) - 10} more" if len(touched) > 10 else ""
        pytest.fail(
            "The tests changed the repository's run folders; a test must write under its "
            f"tmp_path: {', '.join(touched[:10])}{more}",
            pytrace=False,
        )


@pytest.fixture
def one_thread():
    """Tiny networks run fastest on one torch thread, and do not fight a busy machine's cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty working directory, so runs land in a fresh ./mlruns and ./outputs."""
    path = tmp_path / "work"
    path.mkdir()
    return path


def quiet_trainer(**kwargs):
    """A Lightning ``Trainer`` on CPU that logs, saves and prints nothing (unit tests)."""
    import lightning as L

    settings = {
        "max_epochs": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "accelerator": "cpu",
    }
    return L.Trainer(**{**settings, **kwargs})
