"""The keys each plugin takes, remembered between runs: a misspelt key is refused in a second.

A plugin's keys are its constructor's signature, known only once its module is imported,
and the built-in plugins import torch and Lightning: 6-10 s on a 2-core machine before
``+model.dropuot=0.2`` could be refused. Every run imports the plugins it uses anyway, so
the engine notes their keys then, in a small JSON file of the user's cache folder, with the
size and modification time of every source file the signature comes from (the plugin
class's module and those of its base classes). The next command checks its keys against
that note before importing anything, if every one of those files is unchanged and the
entry point still names the same object; otherwise it learns nothing from the note and the
plugin's import decides, as before. Besides the keys, the note holds the plain types
(``int``, ``float``, ``bool``, ``str``, a ``Literal`` of such values, each optionally
``| None``), so ``model.dropout=lots`` is refused as soon; other types (settings objects,
tuples) wait for the import. The note only ever refuses sooner: whatever it lets through
is checked again with the plugin's own signature after the import.

The file is ``$PIPELINES_CACHE_DIR/plugin-keys.json`` (default: ``$XDG_CACHE_HOME`` or
``~/.cache``, then ``pipelines``). A note that cannot be read or written is ignored.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import json
import os
import re
import tempfile
import time
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pipelines.validation import constructor_of

#: bumped when the note's layout changes, so an older one is ignored
FORMAT = 3
#: the types a note can hold, by name
PLAIN_TYPES: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str}
#: the names an annotation may use to be noted: written out in the constructor's own file,
#: not an alias from elsewhere (whose file the note does not watch)
WRITTEN_OUT = {*PLAIN_TYPES, "None", "Optional", "Literal", "Union"}
#: files changed after this process started may not be what it imported: not noted
_PROCESS_STARTED_NS = time.time_ns()
#: the plugins this process has noted already (a run loads each plugin to check its node,
#: then again to build it): the note is read, compared and written once per plugin
_NOTED_IN_THIS_PROCESS: set[str] = set()


@dataclass(frozen=True)
class NotedKeys:
    """What a note says of a plugin: its keys, whether it takes any key, its plain types."""

    keys: list[str]
    accepts_any: bool
    types: dict[str, Any]


def cache_file() -> Path:
    """Where the keys are noted (see the module's docstring)."""
    folder = os.environ.get("PIPELINES_CACHE_DIR")
    if folder:
        return Path(folder).expanduser() / "plugin-keys.json"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "pipelines" / "plugin-keys.json"


def remember(
    kind: str,
    entry_point: str,
    factory: Any,
    parameters: dict[str, Any],
    hints: dict[str, Any],
) -> None:
    """Note the keys of a plugin just imported (``parameters``: its signature's; ``hints``:
    its resolved annotations)."""
    slot = f"{kind}:{entry_point}"
    if slot in _NOTED_IN_THIS_PROCESS:
        return
    _NOTED_IN_THIS_PROCESS.add(slot)
    files = _source_files(factory)
    origin = _origin(entry_point)
    if files is None or origin is None:
        return
    if any(mtime_ns >= _PROCESS_STARTED_NS for mtime_ns, _ in files.values()):
        return  # edited while this process ran: the keys in memory may be the old ones
    variadic = (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    keys = [name for name, p in parameters.items() if p.kind not in variadic]
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    written = _raw_annotations(factory)
    described = {
        key: _describe(hints[key])
        for key in keys
        if key in hints and _written_out(written.get(key))
    }
    plain = {key: description for key, description in described.items() if description}
    entry = {
        "keys": keys,
        "accepts_any": accepts_any,
        "types": plain,
        "files": files,
        "origin": origin,
    }
    notes = _read()
    if notes.get(slot) == entry:
        return
    notes[slot] = entry
    _write(notes)


def recall(kind: str, entry_point: str) -> NotedKeys | None:
    """What was noted of a plugin, or None where no note is known to still hold (none
    taken, or one of its source files changed since)."""
    entry = _read().get(f"{kind}:{entry_point}")
    if not isinstance(entry, dict):
        return None
    try:
        files, keys, accepts_any = entry["files"], entry["keys"], entry["accepts_any"]
        if entry["origin"] != _origin(entry_point):
            return None  # another checkout or environment shares this cache
        if not files or any(_stat(path) != list(state) for path, state in files.items()):
            return None
        annotations = {key: _rebuild(description) for key, description in entry["types"].items()}
        return NotedKeys([str(key) for key in keys], bool(accepts_any), annotations)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _describe(annotation: Any) -> dict[str, Any] | None:
    """A plain type as JSON (``{"type": "float", "optional": true}``, ``{"literal": [...]}``),
    or None for any other."""
    optional: bool | str = False
    union = typing.get_origin(annotation)
    if union in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(members) != 1:
            return None
        # "Optional" or "|", so the message names the type as the plugin's import does
        annotation, optional = members[0], "Optional" if union is typing.Union else "|"
    for name, plain in PLAIN_TYPES.items():
        if annotation is plain:
            return {"type": name, "optional": optional}
    if typing.get_origin(annotation) is Literal:
        values = list(typing.get_args(annotation))
        if all(isinstance(value, str | int | float | bool) for value in values):
            return {"literal": values, "optional": optional}
    return None


def _rebuild(description: dict[str, Any]) -> Any:
    """The type a :func:`_describe` description stands for."""
    if "literal" in description:
        annotation: Any = Literal.__getitem__(tuple(description["literal"]))
    else:
        annotation = PLAIN_TYPES[description["type"]]
    optional = description.get("optional")
    if optional == "Optional":
        return typing.Optional[annotation]  # noqa: UP045 -- as the plugin wrote it
    return annotation | None if optional else annotation


def _raw_annotations(factory: Any) -> dict[str, Any]:
    """The constructor's annotations as written (text under ``from __future__ import
    annotations``), before any name in them is resolved."""
    constructor = inspect.unwrap(constructor_of(factory))
    return dict(getattr(constructor, "__annotations__", None) or {})


def _written_out(raw: Any) -> bool:
    """Whether an annotation is text that names only plain types (``"float | None"``,
    ``"Literal['same', 'valid']"``), so the watched file holds all it means."""
    if not isinstance(raw, str):
        return False
    unquoted = re.sub(r"'[^']*'|\"[^\"]*\"", "", raw)
    names = re.findall(r"[A-Za-z_][\w.]*", unquoted)
    return all(name.removeprefix("typing.") in WRITTEN_OUT for name in names)


def _origin(entry_point: str) -> str | None:
    """Where the entry point's top-level package is found now (imports nothing), so a cache
    shared by two checkouts or environments never lends one's note to the other."""
    top = entry_point.split(":")[0].split(".")[0].strip()
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    locations = list(spec.submodule_search_locations or [])
    return str(spec.origin) + "|" + "|".join(str(location) for location in locations)


def _source_files(factory: Any) -> dict[str, list[int]] | None:
    """Size and modification time of the files that define ``factory``'s signature: its
    constructor's, its own and, for a class, its base classes' (a constructor may be
    inherited). None where one of them cannot be found (code made from a string, a class
    defined interactively): nothing is noted."""
    if inspect.isclass(factory):
        owners = [cls for cls in factory.__mro__ if cls is not object]
    else:
        owners = [factory]
    if any("__signature__" in vars(owner) for owner in owners if hasattr(owner, "__dict__")):
        return None  # a signature set by hand, from wherever: not noted
    # the files the constructor's code was compiled from, decorators' wrappers included: a
    # class made at run time (exec, type()) names a module it was not written in, code from
    # a string has no file, and a wrapper may set its own signature (then nothing is noted)
    paths: list[str | None] = []
    function = constructor_of(factory)
    for _ in range(100):  # a __wrapped__ chain, however long, ends
        if function is None:
            break
        if "__signature__" in getattr(function, "__dict__", {}):
            return None
        code = getattr(function, "__code__", None)
        if code is not None:
            paths.append(code.co_filename)
        function = getattr(function, "__wrapped__", None)
    for owner in owners:
        try:
            paths.append(inspect.getsourcefile(owner))
        except TypeError:  # a built-in type: no file, nothing to watch
            continue
        except OSError:  # a module without a file (__main__ of an interactive session)
            return None
    files: dict[str, list[int]] = {}
    for path in paths:
        state = _stat(path) if path is not None else None
        if state is None:
            return None
        files[path] = state  # type: ignore[index]
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
    except (OSError, ValueError, RuntimeError):  # RuntimeError: no home folder to be found
        return {}
    if not isinstance(notes, dict) or notes.get("format") != FORMAT:
        return {}
    return notes.get("plugins") if isinstance(notes.get("plugins"), dict) else {}


def _write(plugins: dict[str, Any]) -> None:
    """Replace the note in one step (another process may be reading it)."""
    written = None
    try:
        path = cache_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
            written = f.name
            json.dump({"format": FORMAT, "plugins": plugins}, f)
        os.replace(written, path)
    except (OSError, RuntimeError):
        if written:
            with contextlib.suppress(OSError):
                os.unlink(written)
