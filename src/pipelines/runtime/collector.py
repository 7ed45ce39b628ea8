"""Keep Python's garbage collector off torch's million start-up objects.

Importing torch, Lightning and MLflow creates about a million objects that live until the
process ends. CPython's collector walks all of them in every full (oldest-generation)
collection: seven of those during the imports, ~0.1 s each here, and one more at
interpreter exit that took 1.0-1.3 s. Together about a quarter of a short run's wall time,
spent finding almost nothing to free (~27k objects, ~10 MB, mostly import-time metadata).

So a command defers collection while it starts up (:func:`defer_during_startup`), then,
once everything heavy is imported and before any data is loaded, moves the survivors to
the collector's permanent generation and turns it back on (:func:`resume_after_startup`):
the garbage created during training is collected as usual, and later collections never
walk the start-up objects again. The cyclic garbage of start-up stays allocated (a
one-time ~10 MB, not a growing leak). At exit the final collection is skipped the same way:
atexit handlers (MLflow's flush among them) still run first; Python does not promise
``__del__`` for objects alive at exit either. This is the pattern ``gc.freeze``'s
documentation describes for forking servers.

Only a command's own process does this: the engine, called from Python (tests, notebooks),
leaves the collector alone.
"""

from __future__ import annotations

import atexit
import gc

_deferred = False


def defer_during_startup() -> None:
    """Turn collection off until :func:`resume_after_startup`, and skip it at exit."""
    global _deferred
    if _deferred or not gc.isenabled():
        return
    gc.disable()
    atexit.register(gc.freeze)  # registered first, so it runs after every later handler
    _deferred = True


def resume_after_startup() -> None:
    """Freeze what start-up created and collect as usual from here on (once; no-op if not
    deferred by :func:`defer_during_startup` in this process)."""
    global _deferred
    if not _deferred:
        return
    gc.freeze()
    gc.enable()
    _deferred = False
