"""Hydra's composition errors, said in one paragraph that names the fix.

Hydra prints these itself, over several lines and with exit status 1: ``Could not override
'trainer.max_epoch'`` then ``Key 'max_epoch' is not in struct`` with no hint of the key
meant; a parse error without the override it came from; a missing launcher plugin as
"Could not load". The command line asks Hydra to raise them instead
(:func:`hydra_raises_composition_errors`) and reports them like every other user error.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pipelines.errors import closest_match, did_you_mean

_FULL_ERROR = "HYDRA_FULL_ERROR"
#: Hydra's launcher and sweeper plugins that come with one of this package's extras
_PLUGIN_EXTRAS = {"ray": "ray", "submitit_slurm": "slurm", "joblib": "sweep", "optuna": "sweep"}


@contextmanager
def hydra_raises_composition_errors() -> Iterator[None]:
    """Let Hydra's errors reach the caller instead of being printed (``HYDRA_FULL_ERROR``).

    Left as it is where the user set it. The job's own failures are reported by the runner
    before they reach Hydra, so only composition errors and bugs come through here.
    """
    if os.environ.get(_FULL_ERROR) == "1":
        yield
        return
    os.environ[_FULL_ERROR] = "1"
    try:
        yield
    finally:
        os.environ.pop(_FULL_ERROR, None)


#: what the file system answers for a folder the user cannot have
_REFUSED_PATHS = {
    errno.ENOENT,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOSPC,
    errno.ENOTDIR,
}


def describe(error: Exception, argv: Sequence[str]) -> str | None:
    """One paragraph for a Hydra composition error; None for anything else."""
    from hydra.errors import (
        ConfigCompositionException,
        MissingConfigException,
        OverrideParseException,
    )

    if isinstance(error, OverrideParseException):
        return _parse_error(error, argv)
    if isinstance(error, MissingConfigException):
        return _missing_config(error)
    if isinstance(error, ConfigCompositionException):
        return _override_error(error, argv)
    if isinstance(error, OSError) and error.filename and error.errno in _REFUSED_PATHS:
        # Hydra creates the run's folder before the engine runs: a folder the user named
        # that cannot be made (read-only, a pseudo file system, a full disk)
        return (
            f"Cannot create {error.filename}: {error.strerror}. A run writes its outputs "
            "there (hydra.run.dir, or hydra.sweep.dir with -m): point it at a folder you "
            "can write in, e.g. `hydra.run.dir=outputs/my-run`, or run from such a folder."
        )
    if isinstance(error, RuntimeError) and "slurm" in str(error).lower():
        return (
            f"The SLURM launcher cannot submit jobs from this machine ({_flat(str(error))}). "
            "Run the sweep where SLURM's sbatch and srun are (a cluster's login node), or "
            "leave out `hydra/launcher=slurm` to run its jobs here."
        )
    return None


def _flat(text: str) -> str:
    return " ".join(str(text).split())


def _override_error(error: Exception, argv: Sequence[str]) -> str:
    message = str(error)
    cause = error.__cause__
    full_key = getattr(cause, "full_key", None)
    parent = getattr(cause, "parent_node", None)
    schema = re.search(r"Key '[^']+' not in '(\w+)'", str(cause))  # a Hydra dataclass node
    if ("not in struct" in str(cause) or schema) and full_key:
        written = _argument_for(full_key, argv)
        *path, key = str(full_key).split(".")
        section = ".".join(path) or "the config"
        known = [str(name) for name in parent] if hasattr(parent, "keys") else []
        listing = f" The keys of {section}: {', '.join(known)}." if known else ""
        if schema:
            return _schema_key_error(full_key, key, written, schema[1], known, listing)
        if path == ["trainer"]:
            arguments = trainer_argument_names()
            if key in arguments:
                return (
                    f"'{full_key}' is a lightning.Trainer argument that the trainer config "
                    f"does not set, so it is added with a plus: `+{written}`."
                )
            return (
                f"Unknown key '{full_key}' in `{written}`: lightning.Trainer has no argument "
                f"'{key}'.{did_you_mean(key, arguments or known)}{listing} Any other Trainer "
                "argument is added with a plus, e.g. `+trainer.gradient_clip_val=1.0`."
            )
        return (
            f"Unknown key '{full_key}' in `{written}`.{did_you_mean(key, known)}{listing} To "
            f"add a key that the config does not have, put a plus in front: `+{written}`."
        )
    match = re.search(r"An item is already at '([^']+)'", message)
    if match:
        key = match[1]
        written = _argument_for(key, argv).lstrip("+")
        return (
            f"`+{written}` adds a key, but '{key}' is already in the config: write `{written}` "
            f"to change it (or `++{written}` to add or change it)."
        )
    return _flat(f"{message} {cause or ''}")


#: settings of Hydra's Optuna sweeper, misplaced on the basic sweeper a plain -m uses
_OPTUNA_SWEEPER_KEYS = (
    "n_trials", "n_jobs", "direction", "sampler", "storage", "study_name", "max_failure_rate",
)  # fmt: skip


def _schema_key_error(
    full_key: str, key: str, written: str, schema: str, known: list[str], listing: str
) -> str:
    """An unknown key of one of Hydra's own nodes (``hydra.sweeper.n_trial``): those are
    dataclasses, so a `+` cannot add it either; the likely mix-up is an Optuna setting
    given without ``hparams_search=optuna``."""
    if schema == "BasicSweeperConf":
        optuna_key = (
            key if key in _OPTUNA_SWEEPER_KEYS else closest_match(key, _OPTUNA_SWEEPER_KEYS)
        )
        if optuna_key:
            return (
                f"`{written}`: '{optuna_key}' is a setting of the Optuna sweeper, but this "
                "sweep uses Hydra's basic one. Add `hparams_search=optuna` (with -m), as in "
                "`python -m pipelines.run -m hparams_search=optuna "
                f"hydra.sweeper.{optuna_key}=...`."
            )
    return (
        f"Unknown key '{full_key}' in `{written}`: {schema} has no '{key}'."
        f"{did_you_mean(key, known)}{listing}"
    )


def _parse_error(error: Exception, argv: Sequence[str]) -> str:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    culprit = None
    for argument in argv:
        if argument.startswith("-"):
            continue
        try:
            parser.parse_overrides([argument])
        except Exception:
            culprit = argument
            break
    which = f"the override `{culprit}`" if culprit else "an override"
    reason = _flat(str(error).split("See https://")[0])
    return (
        f"Cannot read {which}: {reason}. Overrides are KEY=VALUE; lists are [a,b], and a value "
        "with spaces, brackets or commas goes in quotes inside the shell's quotes, e.g. "
        "'data.path=\"my texts.csv\"'. See `python -m pipelines.run --help`."
    )


def _missing_config(error: Exception) -> str:
    message = str(error)
    load = re.search(r"Could not load '([\w/]+)/(\w+)'", message)
    if load:
        group, plugin = load[1], load[2]
        extra = _PLUGIN_EXTRAS.get(plugin)
        install = f" It comes with an extra: `pip install -e '.[{extra}]'`." if extra else ""
        return (
            f"Hydra's '{plugin}' plugin for {group} is not installed, so `{group}=` cannot use "
            f"it.{install}"
        )
    message = message.split("Config search path")[0]
    find = re.search(r"Could not find '([\w/]+)/([^']+)'", message)
    options = re.search(r"Available options in '[^']+':(.*)", message, re.S)
    if find:
        group, name = find[1], find[2]
        known = options[1].split() if options else []
        listing = f" Known {group} options: {', '.join(known)}." if known else ""
        return f"Unknown {group} '{name}'.{did_you_mean(name, known)}{listing}"
    return _flat(message)


def _argument_for(key: str, argv: Sequence[str]) -> str:
    """The command-line argument that set ``key`` or a key below it (as written), else
    ``key=...``."""
    for argument in argv:
        name = argument.split("=", 1)[0].lstrip("+~")
        if name == key or name.startswith(f"{key}."):
            return argument
    return f"{key}=..."


def trainer_argument_names() -> list[str]:
    """``lightning.Trainer``'s argument names, read from its source without importing it.

    Importing Lightning takes seconds; a config error answers in well under one.
    """
    import ast
    import importlib.util

    spec = importlib.util.find_spec("lightning")
    if spec is None or not spec.submodule_search_locations:
        return []
    source = Path(spec.submodule_search_locations[0]) / "pytorch" / "trainer" / "trainer.py"
    try:
        tree = ast.parse(source.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "Trainer":
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    return [arg.arg for arg in item.args.kwonlyargs + item.args.args[1:]]
    return []
