"""The checks of a run's config before anything is loaded or a run is opened.

A typo, a value out of range or a plugin that does not exist is answered in one paragraph
naming the key, and leaves nothing behind: no data downloaded, no MLflow run, no folder
lock. What needs no plugin comes first; a plugin's keys and types need its import.
"""

from __future__ import annotations

import re
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pipelines import registry
from pipelines.errors import ConfigValueError, PipelineError
from pipelines.speed.settings import SpeedSettings
from pipelines.tracking.store import TrackingSettings


def before_run(cfg: DictConfig) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The resolved config and its stage nodes, once every check has passed."""
    require_values(cfg)
    config: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    check_node_shapes(config)
    stages = [stage_node(node) for node in config["pipeline"]["stages"]]
    check_config(config, stages)
    return config, stages


def require_values(cfg: DictConfig) -> None:
    """Mandatory values (``???`` in a config file) must be set before a run is opened."""
    # OmegaConf writes list items as stages[0]; overrides spell them stages.0
    missing = sorted(re.sub(r"\[(\d+)\]", r".\1", key) for key in OmegaConf.missing_keys(cfg))
    if missing:
        keys = ", ".join(f"'{key}'" for key in missing)
        example = " ".join(f"{key}=..." for key in missing)
        raise ConfigValueError(
            f"The config needs a value for {keys}, which has no default. Set it on the command "
            f"line, e.g. `python -m pipelines.run ... {example}`, or in a config file."
        )


def check_config(config: dict[str, Any], stages: list[dict[str, Any]]) -> None:
    """Fail fast on an unknown plugin, key or wrong type: before data loads or a run opens.

    What needs no plugin comes first: a plugin's signature (its keys, types and ranges) is
    known only once its module is imported, and that imports torch and Lightning, 6-8 s on
    a 2-core machine. A misspelt engine key is answered in about a second instead.
    """
    from pipelines.tracking import sweep
    from pipelines.training.trainer import (
        check_hardware,
        check_trainer_settings,
        trainer_arguments,
    )

    check_seed(config.get("seed", 0))
    sweep.check_objective(config.get("objective"))
    check_engine_keys(config)
    SpeedSettings.from_config(config.get("speed"))
    TrackingSettings.from_config(config.get("tracking")).check()
    check_registered_names(config, stages)
    registry.check("data", config["data"], path="data")
    registry.check("model", config["model"], path="model")
    for index, node in enumerate(stages):
        registry.check("stage", node, path=f"pipeline.stages.{index}")
    trainer = trainer_arguments(config.get("trainer") or {})
    check_hardware(trainer)  # first: its message says what this machine has
    check_trainer_settings(trainer)


def check_seed(seed: Any) -> None:
    """``seed`` is a whole number. Checked first: the data plugins take ``${seed}`` as their
    own, so ``seed=abc`` was reported as a wrong ``data.seed``, a key nobody had set."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigValueError(
            f"'seed' must be a whole number, got {seed!r}: it seeds every random draw of the "
            "run (the data split, the initial weights, the shuffling). Write e.g. `seed=42`."
        )
    from pipelines.checks.validation import check_ranges

    check_ranges({"seed": seed}, path="")  # numpy's 0..2**32-1, whatever the data plugin


def check_registered_names(config: dict[str, Any], stages: list[dict[str, Any]]) -> None:
    """A model-registry name MLflow would refuse, refused now: MLflow checks it only when
    the report stage logs the model, after the whole training, which then ended in one
    warning and no logged model. MLflow's rules (``mlflow.utils.validation``), without
    importing MLflow for them: not blank, no '/' or ':', not '.' or '..'."""
    named = [("tracking.register_as", (config.get("tracking") or {}).get("register_as"))]
    named += [
        (f"pipeline.stages.{index}.register_as", node.get("register_as"))
        for index, node in enumerate(stages)
    ]
    for key, name in named:
        if name is None:
            continue
        text = str(name)
        if not text.strip() or any(c in text for c in "/:") or text.strip() in (".", ".."):
            raise ConfigValueError(
                f"'{key}' is the name the model is registered under in MLflow's model "
                f"registry, and MLflow refuses {text!r}: a name cannot be blank, contain '/' "
                f"or ':', or be '.' or '..'. Choose another, e.g. `{key}=digits-mlp`, or "
                f"leave it out (null) to log the model without registering it."
            )


#: the config groups every run needs, and the engine's own nodes of settings
REQUIRED_GROUPS = ("pipeline", "data", "model", "trainer")
SETTINGS_NODES = ("speed", "tracking", "objective", "paths")


def check_node_shapes(config: dict[str, Any]) -> None:
    """Every run has its groups, each a mapping, and ``pipeline.stages`` is a list.

    ``~model`` and ``speed=fast`` compose without complaint; the run then failed with a bare
    ``KeyError`` or "dictionary update sequence element" deep in the engine.
    """
    from pipelines.config import group_options

    for name in REQUIRED_GROUPS:
        if not isinstance(config.get(name), dict):
            options = ", ".join(group_options(name))
            got = "removed" if name not in config else f"set to {config[name]!r}"
            raise ConfigValueError(
                f"Every run needs a '{name}' config group, and it was {got}. Choose one with "
                f"`{name}=<option>` (known: {options}), or leave it at its default."
            )
    for name in SETTINGS_NODES:
        if name in config and not isinstance(config[name], dict | None):
            raise ConfigValueError(
                f"'{name}' is a group of settings, not a value (got `{name}={config[name]}`): "
                f"set its keys instead, e.g. `{name}.KEY=VALUE`."
            )
    stages = config["pipeline"].get("stages")
    if not isinstance(stages, list):
        raise ConfigValueError(
            f"'pipeline.stages' must be a list of stage names, e.g. "
            f"`pipeline.stages=[prepare,fit]`; got {stages!r}."
        )


#: keys of the config nodes the engine itself reads (plugins' nodes are checked against their
#: constructors by the registry)
ENGINE_NODES = {
    "pipeline": ("name", "stages"),
    "tracking": ("enabled", "uri", "experiment", "register_as"),
    "objective": ("metric", "direction"),
}
#: top-level keys that are not config groups
ENGINE_KEYS = ("seed", "paths", "speed", "objective")


def check_engine_keys(config: dict[str, Any]) -> None:
    """No misspelt key in the engine's own nodes, and none at the top level.

    ``+tracking.experimnt=foo`` or ``+seeed=3`` composed fine and were then never read: the
    run went on with the defaults, without a word. A top-level key with no close match to
    a known one is left alone (a plugin of the user's may read it).
    """
    from pipelines.config import config_groups
    from pipelines.errors import closest_match, did_you_mean

    for node, keys in ENGINE_NODES.items():
        for key in config.get(node) or {}:
            if key not in keys:
                raise ConfigValueError(
                    f"Unknown key '{node}.{key}'.{did_you_mean(key, keys)} The {node} keys "
                    f"are: {', '.join(keys)}. Remove or rename `{node}.{key}`."
                )
    known = {*config_groups(), *ENGINE_KEYS}
    for key in config:
        match = None if key in known else closest_match(key, known)
        if match:
            raise ConfigValueError(
                f"Unknown top-level key '{key}': nothing reads it. Did you mean '{match}'? "
                f"Remove or rename `{key}`."
            )


def stage_node(node: Any) -> dict[str, Any]:
    """``fit`` or ``{name: fit, monitor: val/acc}`` -> a plugin node with a ``name``."""
    if isinstance(node, str):
        return {"name": node}
    if isinstance(node, dict) and "name" in node:
        return node
    raise PipelineError(
        f"Each entry of pipeline.stages must be a stage name or a mapping with a 'name' key; "
        f"got {node!r}. Known stages: {', '.join(registry.names('stage'))}."
    )
