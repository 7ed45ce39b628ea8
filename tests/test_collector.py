"""Start-up without full garbage collections over torch's objects (pipelines.runtime.collector)."""

from __future__ import annotations

import gc
import subprocess
import sys

from pipelines.runtime.collector import resume_after_startup

_COMMAND_PROCESS = """
import gc
from pipelines.runtime.collector import defer_during_startup, resume_after_startup

defer_during_startup()
assert not gc.isenabled(), "no collection while the command starts"
import torch  # start-up objects, alive until exit

resume_after_startup()
assert gc.isenabled(), "collection is back on once started"
frozen = gc.get_freeze_count()
assert frozen > 10_000, frozen


class Node:
    pass


node = Node()
node.itself = node
del node
assert gc.collect() >= 1, "garbage made after start-up is still collected"
resume_after_startup()
assert gc.get_freeze_count() == frozen, "frozen once, not again by a second job"
print("ok")
"""


def test_a_command_defers_collection_then_collects_what_it_makes_afterwards() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _COMMAND_PROCESS], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_the_engine_called_from_python_leaves_the_collector_alone() -> None:
    frozen = gc.get_freeze_count()
    resume_after_startup()  # run_pipeline calls it; nothing was deferred in this process
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen
