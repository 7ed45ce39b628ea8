"""One process per run folder: ``resume`` refuses a run that is still training.

A run holds an exclusive ``flock`` on ``<output_dir>/.pipelines.lock`` while it runs. The
operating system drops the lock when the process ends, however it ends (SIGKILL and power
loss included), so a held lock means a live process, never a stale file. Without it,
``python -m pipelines.resume`` on a run that was merely slow (or paused) trained a second
copy into the same checkpoints folder and MLflow run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipelines.errors import PipelineError

LOCK_FILE = ".pipelines.lock"

#: the descriptors of the locks this process holds, let go of in every forked child
_HELD: set[int] = set()


def _let_go_in_child() -> None:
    """In a forked child (a ``DataLoader`` worker): point its copies of the held locks'
    descriptors at /dev/null. A child shares the lock's open file: a worker still decoding
    after its training process is killed (``kill -9``) would keep the run "still running"
    to ``resume``. The numbers stay taken, so nothing closes them twice.
    """
    for descriptor in list(_HELD):
        devnull = os.open(os.devnull, os.O_RDONLY)
        try:
            os.dup2(devnull, descriptor)
        finally:
            os.close(devnull)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_let_go_in_child)


@contextmanager
def run_lock(output_dir: Path, run_id: str | None) -> Iterator[None]:
    """Hold the run folder's lock for the ``with`` block, or raise if a process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; runs are not guarded there
        yield
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / LOCK_FILE
    handle = open(path, "a+")  # noqa: SIM115 - held open for the whole block
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            if run_id is None:  # a new run given a folder that a live run is using
                raise PipelineError(
                    f"The run folder {output_dir} is in use by another run ({holder} holds "
                    f"{path}). Give this run a folder of its own, e.g. "
                    "`hydra.run.dir=outputs/runs/NAME`, or start it once that run ends."
                ) from None
            raise PipelineError(
                f"Run {run_id} is still running ({holder} holds {path}). Wait for it to "
                "end, or stop it (Ctrl-C, or kill that process) and then resume it."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()}\n")
        handle.flush()
        _HELD.add(handle.fileno())
        yield
    finally:
        _HELD.discard(handle.fileno())
        handle.close()  # releases the lock


#: what a run folder holds before its run opens: Hydra's copy of the config, the job's log
#: and the lock; a folder of nothing else has no result in it
_BEFORE_THE_RUN = {LOCK_FILE, "run.log", ".hydra/config.yaml", ".hydra/hydra.yaml"}
_BEFORE_THE_RUN |= {".hydra/overrides.yaml", ".hydra"}


def remove_unused_folder(output_dir: Path, outputs: Path) -> bool:
    """Remove the folder of a run that was refused before it opened, with the folders above
    it that are left empty, up to and including ``outputs`` (``./outputs``, where Hydra
    makes run folders): a refused command leaves nothing.

    Only a folder inside ``outputs`` is removed (a folder the user named elsewhere, the
    working directory included, is theirs), and only while it holds nothing but Hydra's
    files and the lock and no other process holds its lock. Returns whether it was removed.
    """
    import shutil

    try:
        import fcntl
    except ImportError:  # no flock: a folder in use cannot be told apart; keep it
        return False
    folder, outputs = output_dir.absolute(), outputs.absolute()
    if outputs not in folder.parents or not folder.is_dir():
        return False
    try:
        with open(folder / LOCK_FILE, "a+") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            contents = {str(path.relative_to(folder)) for path in folder.rglob("*")}
            if not contents <= _BEFORE_THE_RUN:
                return False
            shutil.rmtree(folder)
        for parent in folder.parents:
            if any(parent.iterdir()):
                break
            parent.rmdir()
            if parent == outputs:
                break
    except OSError:  # a folder that cannot be read or removed stays; the refusal is the news
        return False
    return True
