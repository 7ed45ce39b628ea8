"""The keys each plugin takes, remembered between runs: a misspelt key is refused in a second.

A plugin's keys are its constructor's signature, known only once its module is imported,
and the built-in plugins import torch and Lightning: 6-10 s on a 2-core machine before
``+model.dropuot=0.2`` could be refused. Every run imports the plugins it uses anyway, so
the engine notes their keys then, in a small JSON file of the user's cache folder, with the
size and modification time of every source file the signature comes from (the plugin
class's module and those of its base classes). The next command checks its keys against
that note before importing anything, if every one of those files is unchanged and the
entry point still names the same object; otherwise it learns nothing from the note and the
plugin's import decides, as before. The note only ever refuses sooner: a key it knows is
still checked with the plugin's types after the import.

The file is ``$PIPELINES_CACHE_DIR/plugin-keys.json`` (default: ``$XDG_CACHE_HOME`` or
``~/.cache``, then ``pipelines``). A note that cannot be read or written is ignored.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import tempfile
from pathlib import Path
from typing import Any

#: bumped when the note's layout changes, so an older one is ignored
FORMAT = 1


def cache_file() -> Path:
    """Where the keys are noted (see the module's docstring)."""
    folder = os.environ.get("PIPELINES_CACHE_DIR")
    if folder:
        return Path(folder).expanduser() / "plugin-keys.json"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "pipelines" / "plugin-keys.json"


def remember(kind: str, entry_point: str, factory: Any, parameters: dict[str, Any]) -> None:
    """Note the keys of a plugin just imported (``parameters``: its signature's)."""
    files = _source_files(factory)
    if files is None:
        return
    variadic = (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    keys = [name for name, p in parameters.items() if p.kind not in variadic]
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    entry = {"keys": keys, "accepts_any": accepts_any, "files": files}
    notes = _read()
    slot = f"{kind}:{entry_point}"
    if notes.get(slot) == entry:
        return
    notes[slot] = entry
    _write(notes)


def recall(kind: str, entry_point: str) -> tuple[list[str], bool] | None:
    """The keys noted for a plugin and whether it takes any key, or None where no note is
    known to still hold (none taken, or one of its source files changed since)."""
    entry = _read().get(f"{kind}:{entry_point}")
    if not isinstance(entry, dict):
        return None
    try:
        files, keys, accepts_any = entry["files"], entry["keys"], entry["accepts_any"]
        if not files or any(_stat(path) != list(state) for path, state in files.items()):
            return None
        return [str(key) for key in keys], bool(accepts_any)
    except (KeyError, TypeError, ValueError):
        return None


def _source_files(factory: Any) -> dict[str, list[int]] | None:
    """Size and modification time of the files that define ``factory``'s signature: its
    constructor's, its own and, for a class, its base classes' (a constructor may be
    inherited). None where one of them cannot be found (code made from a string, a class
    defined interactively): nothing is noted."""
    if inspect.isclass(factory):
        owners = [cls for cls in factory.__mro__ if cls is not object]
    else:
        owners = [factory]
    files: dict[str, list[int]] = {}
    # the file the constructor's code was compiled from: a class made at run time (exec,
    # type()) names a module it was not written in, and code from a string has no file
    target = factory.__init__ if inspect.isclass(factory) else factory
    code = getattr(inspect.unwrap(target), "__code__", None)
    if code is not None:
        state = _stat(code.co_filename)
        if state is None:
            return None
        files[code.co_filename] = state
    for owner in owners:
        try:
            path = inspect.getsourcefile(owner)
        except TypeError:  # a built-in type
            continue
        if path is None:
            return None
        state = _stat(path)
        if state is None:
            return None
        files[path] = state
    return files


def _stat(path: str) -> list[int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_mtime_ns, info.st_size]


def _read() -> dict[str, Any]:
    try:
        notes = json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(notes, dict) or notes.get("format") != FORMAT:
        return {}
    return notes.get("plugins") if isinstance(notes.get("plugins"), dict) else {}


def _write(plugins: dict[str, Any]) -> None:
    """Replace the note in one step (another process may be reading it)."""
    path = cache_file()
    written = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
            written = f.name
            json.dump({"format": FORMAT, "plugins": plugins}, f)
        os.replace(written, path)
    except OSError:
        if written:
            with contextlib.suppress(OSError):
                os.unlink(written)
