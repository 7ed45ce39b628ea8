"""Checks on the raw command line, before Hydra composes anything.

Hydra's own message for ``model=lstmm`` lists the available options but not the closest
one; users mistype names, so we answer with a suggestion, fast, and before any heavy import.
:class:`SearchChecks` checks a sweep's composed config, before Hydra builds its sweeper.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from pipelines.errors import ConfigValueError, PipelineError, PluginNotFoundError, did_you_mean

_GROUP_OVERRIDE = re.compile(r"^[+~]{0,2}(?P<group>[A-Za-z_][\w]*)=(?P<value>.*)$")
_SWEEP_FUNCTION = re.compile(r"^\w+\(.*\)$|^\[.*\]$|^\$\{")


#: config keys that moved: old dotted key -> new one, for overrides written the old way
RENAMED_KEYS = {"data.train_windows": "data.windows_per_epoch"}


#: where datasets are cached (conf/config.yaml's paths.data_dir; default ./data_cache)
DATA_DIR_VARIABLE = "PIPELINES_DATA_DIR"


def checked_overrides(argv: Sequence[str]) -> list[str]:
    """The overrides ``python -m pipelines.run`` and ``pipelines.train`` compose: moved keys
    renamed, then refused in one paragraph where a group option, an appended group or a
    search without a sweep is wrong. ``PIPELINES_DATA_DIR`` set but empty (`export
    PIPELINES_DATA_DIR=` in a script) made every data path start at the file system's
    root, /mnist: it is taken as unset, i.e. ./data_cache."""
    if os.environ.get(DATA_DIR_VARIABLE) == "":
        del os.environ[DATA_DIR_VARIABLE]
    overrides = renamed_keys(argv)
    check_group_overrides(overrides)
    check_appended_groups(overrides)
    check_search_is_a_sweep(overrides)
    return overrides


def renamed_keys(argv: Sequence[str]) -> list[str]:
    """``argv`` with every override of a moved key (:data:`RENAMED_KEYS`) written with its
    new key, and a one-line notice on stderr for each: the old spelling keeps working."""
    renamed = []
    for arg in argv:
        prefix = arg[: len(arg) - len(arg.lstrip("+~"))]
        key, equals, value = arg[len(prefix) :].partition("=")
        if key in RENAMED_KEYS:
            new = RENAMED_KEYS[key]
            print(
                f"Note: '{key}' is now '{new}'; taken as `{new}{equals}{value}`.", file=sys.stderr
            )
            arg = f"{prefix.replace('+', '')}{new}{equals}{value}"
        renamed.append(arg)
    return renamed


def check_group_overrides(argv: Sequence[str]) -> None:
    """Raise :class:`PluginNotFoundError` if ``group=value`` names an option that does not exist.

    Sweep expressions (``range(...)``, ``choice(...)``, interpolations) are left to Hydra.
    ``objective.direction=`` is checked here too: a sweep's callbacks cannot stop it (Hydra
    turns their errors into warnings), and every job would fail on it.
    """
    from pipelines.config import config_groups, group_options
    from pipelines.tracking.sweep import check_objective

    groups: list[str] | None = None
    for arg in argv:
        if arg.lstrip("+").startswith("objective.direction="):
            value = arg.split("=", 1)[1].strip()
            for direction in [] if _SWEEP_FUNCTION.match(value) else value.split(","):
                check_objective({"direction": direction.strip().strip("'\"")})
        match = _GROUP_OVERRIDE.match(arg)
        if not match or arg.startswith("~"):
            continue
        group, value = match["group"], match["value"].strip()
        if groups is None:
            groups = config_groups()
        if group not in groups or not value or _SWEEP_FUNCTION.match(value):
            continue
        options = group_options(group)
        for choice in (v.strip().strip("'\"") for v in value.split(",")):
            if choice == "null":
                optional = group in _optional_groups()  # null by default: `~group` is fine
                if "none" in options and not optional:  # tracking: `~` would leave it on
                    fix = f"To turn {group} off, write `{group}=none`"
                elif not optional:
                    fix = f"Every run needs a {group}: pick one"
                else:
                    fix = (
                        f"To leave {group} out, write `~{group}`; to compare with and without "
                        "it in a sweep, sweep over options that include one that turns it off"
                    )
                raise PluginNotFoundError(
                    f"`{arg}`: a config group takes an option name, not null. {fix} (known "
                    f"{group} options: {', '.join(options)})."
                )
            if choice and choice not in options:
                raise PluginNotFoundError(
                    f"Unknown {group} '{choice}' in the override `{arg}`."
                    f"{did_you_mean(choice, options)} Known {group} options: "
                    f"{', '.join(options)}. Each is a config file {group}/<name>.yaml in "
                    "conf/ or in an installed plugin package; pick one of those names."
                )


def check_search_is_a_sweep(argv: Sequence[str]) -> None:
    """``hparams_search=optuna`` without ``-m`` trained one run with the defaults and said
    nothing: Hydra uses a sweeper only in multirun mode. It is refused with the fix."""
    multirun = any(
        arg in ("-m", "--multirun") or arg.replace(" ", "") == "hydra.mode=MULTIRUN" for arg in argv
    )
    if multirun:
        return
    for arg in argv:
        match = _GROUP_OVERRIDE.match(arg)
        if match and match["group"] == "hparams_search" and match["value"] not in ("", "null"):
            rest = " ".join(a for a in argv if a != arg)
            raise ConfigValueError(
                f"`{arg}` searches over many runs, which Hydra does only in multirun mode: "
                f"add -m, as in `python -m pipelines.run -m {arg}{' ' + rest if rest else ''}`. "
                "Without it, one run would train with the default settings."
            )


_MODES = {
    "-m": "-m",
    "--multirun": "-m",
    "-c": "--cfg",
    "--cfg": "--cfg",
    "-i": "--info",
    "--info": "--info",
    "-r": "--run",
    "--run": "--run",
}


def check_one_mode(argv: Sequence[str]) -> None:
    """Hydra takes one of ``-m``, ``--cfg``, ``--info``, ``--run``; two of them ended in its
    ``ValueError`` traceback. ``--cfg job`` prints one run's config, so a sweep's is shown
    job by job: the fix names the command without ``-m``."""
    modes = list(dict.fromkeys(_MODES[arg] for arg in argv if arg in _MODES))
    if len(modes) < 2:
        return
    if "-m" in modes and "--cfg" in modes:
        rest = " ".join(_first_value(a) for a in argv if _MODES.get(a) != "-m")
        raise ConfigValueError(
            "`-m` and `--cfg` cannot be combined: `--cfg` prints the config of one run. Drop "
            f"-m and give one job's values (a single value per key), as in "
            f"`python -m pipelines.run {rest}`."
        )
    raise ConfigValueError(
        f"{' and '.join(f'`{mode}`' for mode in modes)} cannot be combined: Hydra takes one of "
        "-m, --cfg, --info and --run. Keep the one you need."
    )


def _first_value(arg: str) -> str:
    """``key=a,b,c`` as one job of its sweep: ``key=a`` (brackets and quotes kept whole)."""
    key, sep, value = arg.partition("=")
    depth, quote = 0, ""
    for index, char in enumerate(value if sep and not arg.startswith("-") else ""):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[({":
            depth += 1
        elif char in "])}":
            depth -= 1
        elif char == "," and depth == 0:
            return f"{key}={value[:index]}"
    return arg


def _optional_groups() -> set[str]:
    """Groups the primary config leaves out by default (``group: null`` in its defaults)."""
    return {name for name, value in _primary_defaults().items() if value is None}


def _primary_defaults() -> dict[str, object]:
    """The primary config's defaults list as ``group -> option`` (None where left out)."""
    from omegaconf import OmegaConf

    from pipelines.config import config_dir

    defaults = OmegaConf.load(config_dir() / "config.yaml").get("defaults") or []
    return {
        str(name): value
        for entry in defaults
        if isinstance(entry, dict) or OmegaConf.is_dict(entry)
        for name, value in entry.items()
    }


def check_appended_groups(argv: Sequence[str]) -> None:
    """``+model=convnet``: Hydra answered "Multiple values for model. To override a value use
    'override model: convnet'", the syntax of a defaults list, not of the command line. A
    group the config already lists takes ``group=option``; ``+`` adds one it does not."""
    listed: dict[str, object] | None = None
    for arg in argv:
        match = _GROUP_OVERRIDE.match(arg)
        if not match or not arg.startswith("+") or arg.startswith("++"):
            continue
        if listed is None:
            listed = _primary_defaults()
        group = match["group"]
        if group in listed:
            plain = arg[1:]
            current = listed[group]
            has = f"its {group} is '{current}'" if current else f"{group} is one of its groups"
            raise ConfigValueError(
                f"`{arg}`: the config already lists the {group} group ({has}), so choose with "
                f"`{plain}`, without the `+` (which adds a group the config does not list)."
            )


class SearchChecks(Callback):
    """Checks of a multirun's composed config before Hydra builds its sweeper.

    Registered in ``conf/config.yaml`` before :class:`pipelines.tracking.sweep.SweepCallback`, so a
    refused setting opens no MLflow parent run. Hydra builds the sweeper (Optuna: its
    sampler) right after this hook, before any job: ``hydra.sweeper.sampler.seed=-1`` (or
    ``seed=-1``, which it takes through ``${seed}``) ended there in a traceback of Hydra's
    instantiation. Hydra turns a callback's exception into a warning and goes on, so the
    refusal is printed here and the command exits with status 2 (SystemExit passes).
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from pipelines.checks.validation import check_search_ranges

        try:
            check_search_ranges(config)
        except PipelineError as exc:
            print(f"Error: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
