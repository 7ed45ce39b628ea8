"""User-facing errors.

Every error a user can fix by changing a command line, a config file or a file on disk is a
:class:`PipelineError`. The CLI prints its message as one paragraph and exits with status 2,
without a traceback: a traceback is for bugs in our code, not for a typo in an override.
"""

from __future__ import annotations

import difflib
import errno
import sys
from collections.abc import Iterable
from pathlib import Path


class PipelineError(Exception):
    """An error the user can fix; its message says what went wrong and how to fix it."""


class PluginNotFoundError(PipelineError):
    """A config names a plugin that no installed package registers."""


class ConfigValueError(PipelineError):
    """A config value has the wrong type or a key is not accepted by its plugin."""


class TrainingDiverged(PipelineError):
    """The training loss became NaN or infinite: a result of the settings, not a crash."""


class DataNotFoundError(PipelineError):
    """Dataset files are missing and cannot be downloaded."""


class TrackingStoreError(PipelineError):
    """The MLflow tracking store cannot record the run (unreachable, damaged, locked,
    read-only, or its experiment deleted): found when the run opens, before any data or
    training, since a run that cannot be recorded should not spend its time."""


def closest_match(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``name`` (for "did you mean ...?"), or None if none is close."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.5)
    return matches[0] if matches else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """A ``" Did you mean 'x'?"`` suffix, or an empty string when nothing is close."""
    match = closest_match(name, candidates)
    return f" Did you mean '{match}'?" if match else ""


def exception_chain(error: BaseException) -> list[BaseException]:
    """``error`` and what it was raised from or while handling, outermost first: what a
    library wraps (MLflow around SQLAlchemy around sqlite, torch around an OSError) is
    where the cause a user can act on is found."""
    chain = [error]
    while (cause := chain[-1].__cause__ or chain[-1].__context__) and cause not in chain:
        chain.append(cause)
    return chain


def _full_disk(exc: BaseException) -> OSError | None:
    """The "no space left" (or quota) error in ``exc``'s chain, if any."""
    return next(
        (
            e
            for e in exception_chain(exc)
            if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)
        ),
        None,
    )


def disk_full_before_run_error(exc: BaseException) -> PipelineError | None:
    """A full disk while the data was read or cached before the run opened: one paragraph
    (nothing was recorded); None for any other error."""
    full = _full_disk(exc)
    if full is None:
        return None
    where = f" while writing {full.filename}" if full.filename else ""
    return PipelineError(
        f"The disk is full ({full.strerror}){where}, before the run opened: nothing was "
        "recorded. Free some space (or point `data.cache_dir` at a disk that has it), then "
        "run the command again."
    )


def disk_full_error(
    exc: BaseException, run_id: str | None, output_dir: Path
) -> PipelineError | None:
    """A full disk (or quota) while the run wrote a checkpoint, a figure or the store, as
    one paragraph that says the work done is kept and how to continue it, instead of a
    traceback from deep inside torch or fsspec; None for any other error."""
    full = _full_disk(exc)
    if full is None:
        return None
    where = f" while writing {full.filename}" if full.filename else ""
    resume = (
        f"continue the run where its last complete checkpoint left it with `python -m "
        f"pipelines.resume {run_id}`"
        if run_id
        else "run it again"
    )
    return PipelineError(
        f"The disk is full ({full.strerror}){where}. What the run finished is kept: its "
        f"checkpoints in {output_dir.resolve() / 'checkpoints'} (a damaged one is skipped "
        f"on resume) and its recorded metrics. Free some space, then {resume}."
    )


def report_error(exc: BaseException) -> None:
    """Print a user-facing error as one paragraph on stderr."""
    print(f"Error: {exc}", file=sys.stderr, flush=True)
