"""The CLI tests' fork server stands in for a fresh interpreter, or the suite tests nothing.

``run_cli`` runs commands in a child forked from a server that imported torch, Lightning and
MLflow once (tests/cli_server.py). Each check here runs the same command both ways and
expects the same exit status and output.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import run_cli

PROBE = """
import json, os, sys
import torch
print(json.dumps({"cwd": os.getcwd(), "argv": sys.argv[1:], "path0": sys.path[0],
                  "env": os.environ.get("PROBE_SETTING"), "main": __name__}))
print("to stderr", file=sys.stderr)
sys.exit(int(sys.argv[1]))
"""


def both_ways(monkeypatch: pytest.MonkeyPatch, **kwargs):
    forked = run_cli(**kwargs)
    monkeypatch.setenv("PIPELINES_TEST_FORK", "0")
    fresh = run_cli(**kwargs)
    monkeypatch.delenv("PIPELINES_TEST_FORK")
    return forked, fresh


def test_a_module_sees_its_folder_arguments_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written after the server started, in the command's folder: found as `python -m`
    finds it; the exit status, both streams and the environment are the command's own."""
    (tmp_path / "probe_module.py").write_text(PROBE, encoding="utf-8")
    forked, fresh = both_ways(
        monkeypatch, args=["3", "x=1"], cwd=tmp_path, module="probe_module",
        env={"PROBE_SETTING": "on"},
    )  # fmt: skip
    assert forked.returncode == fresh.returncode == 3
    assert forked.stdout == fresh.stdout
    assert '"env": "on"' in forked.stdout and f'"path0": "{tmp_path}"' in forked.stdout
    assert forked.stderr == fresh.stderr == "to stderr\n"


def test_a_refused_run_reads_the_same_either_way(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forked, fresh = both_ways(monkeypatch, args=["model.dropout=2"], cwd=workdir)
    assert forked.returncode == fresh.returncode == 2
    assert (forked.stdout, forked.stderr) == (fresh.stdout, fresh.stderr)
    assert "'model.dropout' must be at least 0" in forked.stderr


def test_an_uncaught_exception_prints_its_traceback_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "crash_module.py").write_text("raise ValueError('boom')\n", encoding="utf-8")
    result = run_cli(args=[], cwd=tmp_path, module="crash_module")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "ValueError: boom" in result.stderr


def test_a_pythonpath_of_its_own_gets_a_fresh_interpreter(tmp_path: Path) -> None:
    """PYTHONPATH acts when an interpreter starts, so a forked child would not see it: such
    a command (the third-party plugin test's) runs in a fresh interpreter, and the server,
    started with the test process's environment, still serves the commands after it."""
    import conftest

    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "only_on_pythonpath.py").write_text("print('found')\n", encoding="utf-8")
    result = run_cli(
        args=[], cwd=tmp_path, module="only_on_pythonpath", env={"PYTHONPATH": str(extra)}
    )
    assert result.returncode == 0 and result.stdout == "found\n", result.output
    assert conftest._FORK_SERVER.env.get("PYTHONPATH") == os.environ.get("PYTHONPATH")
