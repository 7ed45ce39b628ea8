"""Start-up: how long the CLI takes to answer, against a bare ``import torch, lightning``.

Each command runs in a fresh process ``--repeats`` times (median wall seconds):

* ``--help``, ``--cfg job`` and a config error that needs no plugin (``model=mpl``):
  targets under 1 s, which needs lazy imports (no torch, Lightning or MLflow before they
  are needed); a key the plugin does not take (``+model.dropuot=0.2``) or a value out of
  its range (``model.dropout=2``), which need the plugin's signature, so its import;
* a run that stops after its first training step (``trainer.max_steps=1``, no validation,
  no tracking): the time from the command to the first step (and its exit), against the
  bare import (and its exit); and the same run with Python's garbage collector left on
  through start-up and exit, the baseline for :mod:`pipelines.runtime.collector`.

    python benchmarks/startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN = [sys.executable, "-m", "pipelines.run"]
FIRST_STEP = [
    "tracking=none",
    "pipeline.stages=[prepare,fit]",
    "+trainer.max_steps=1",
    "+trainer.limit_val_batches=0",
]
#: the same command with the garbage collector left on through start-up and exit (the
#: baseline for pipelines.runtime.collector): its deferral is replaced by a no-op
COLLECTOR_AS_USUAL = (
    "import sys, pipelines.run as r; "
    "r.defer_during_startup = lambda: None; sys.argv[0] = 'pipelines.run'; r.main()"
)
COMMANDS = {
    "bare `import torch, lightning`": [sys.executable, "-c", "import torch, lightning"],
    "--help": [*RUN, "--help"],
    "--cfg job": [*RUN, "model=convnet", "--cfg", "job"],
    "config error (model=mpl)": [*RUN, "model=mpl"],
    "config error (model.dropout=2)": [*RUN, "model.dropout=2"],
    "config error (model.dropuot=0.2)": [*RUN, "+model.dropuot=0.2"],
    "to the first training step": [*RUN, *FIRST_STEP],
    "same, collector on throughout": [sys.executable, "-c", COLLECTOR_AS_USUAL, *FIRST_STEP],
}


def wall(command: list[str], cwd: Path, expect_success: bool) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if (done.returncode == 0) != expect_success:
        raise SystemExit(f"unexpected exit {done.returncode}: {' '.join(command)}\n{done.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        times: dict[str, list[float]] = {name: [] for name in COMMANDS}
        for _ in range(options.repeats):  # interleaved, so load changes hit every command
            for name, command in COMMANDS.items():
                expect_success = not name.startswith("config error")
                times[name].append(wall(command, Path(tmp), expect_success))
    bare = statistics.median(times["bare `import torch, lightning`"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:32s} {median:6.2f} s  ({median / bare:.2f}x the bare import)")


if __name__ == "__main__":
    main()
