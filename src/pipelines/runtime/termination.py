"""SIGTERM (``kill``, a scheduler's pre-emption) ends a run as KILLED, never half-way
through writing a checkpoint.

Python's default action for SIGTERM ends the process on the spot, leaving the MLflow run
RUNNING forever, so the runner installs :func:`install`'s handler, which raises
``SystemExit`` and lets the runner mark the run KILLED on the way out.

Raising at an arbitrary bytecode is only safe outside Lightning, though: inside
``ModelCheckpoint`` it once landed after ``best_model_path`` named a file that was never
written, and the clean-up that logs the best checkpoint then failed, turning a KILLED run
into a FAILED one. While a Lightning ``Trainer`` runs, it owns SIGTERM (its signal
connector wraps our handler) and raises its own ``SIGTERMException`` (a ``SystemExit``)
at the next batch boundary; our handler then only notes the request, and
:func:`stop_if_requested` honours it between pipeline stages for the Lightning calls that
do not check it (``predict``).
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import NoReturn

#: the exit status of a command stopped by Ctrl-C (128 + SIGINT), as shells report it
INTERRUPTED_EXIT_CODE = 128 + signal.SIGINT

_requested = False


def install() -> None:
    """Handle SIGTERM in this process (main thread only, and only if nobody else does)."""
    global _requested
    _requested = False
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None, _on_sigterm):
        signal.signal(signal.SIGTERM, _on_sigterm)


def requested() -> bool:
    """Whether SIGTERM arrived since :func:`install` (the run is then KILLED, whatever
    exception it ends with)."""
    return _requested


def stop_if_requested() -> None:
    """Raise the deferred ``SystemExit`` now, at a point where nothing is half-done."""
    if _requested:
        raise SystemExit(128 + signal.SIGTERM)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    global _requested
    _requested = True
    if signal.getsignal(signal.SIGTERM) is not _on_sigterm:
        # a Lightning Trainer is running and composed its handler around ours: it has
        # noted the signal and stops at its next batch boundary
        return
    raise SystemExit(128 + signum)


def exit_interrupted(outcome: str) -> NoReturn:
    """End a command stopped by Ctrl-C with one line on stderr and the shell's status 130.

    Python's own ending is a traceback of wherever the signal landed (often deep inside
    torch's imports), which reads as a crash. ``outcome`` says what became of the run, e.g.
    "before the run was opened: nothing of it was recorded".
    """
    print(f"Interrupted (Ctrl-C) {outcome}.", file=sys.stderr, flush=True)
    raise SystemExit(INTERRUPTED_EXIT_CODE)
