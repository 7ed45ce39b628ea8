"""Every experiment preset composes, and names only plugins and keys that exist."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from pipelines.checks.before_run import check_config
from pipelines.checks.before_run import stage_node as _stage_node
from pipelines.config import config_dir, group_options


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_experiment_composes_and_validates(experiment: str) -> None:
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=False)
    config = OmegaConf.to_container(cfg, resolve=True)
    check_config(config, [_stage_node(node) for node in config["pipeline"]["stages"]])


def _leaves(node: object, prefix: str = "") -> dict[str, object]:
    if isinstance(node, dict):
        found: dict[str, object] = {}
        for key, value in node.items():
            found.update(_leaves(value, f"{prefix}{key}."))
        return found
    return {prefix.rstrip("."): node}


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_every_value_a_preset_writes_is_what_the_run_gets(experiment: str) -> None:
    """A preset's value that composition drops (``???`` over a data config's ``null`` did)
    would run something else than the preset says, silently."""
    written = OmegaConf.to_container(
        OmegaConf.load(config_dir() / "experiment" / f"{experiment}.yaml"), resolve=False
    )
    written.pop("defaults", None)
    written.pop("hydra", None)  # the sweep's settings, not the run's config
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=False)
    composed = _leaves(OmegaConf.to_container(cfg, resolve=False))
    for key, value in _leaves(written).items():
        assert key in composed, f"{experiment}: {key} is not in the composed config"
        assert composed[key] == value, f"{experiment}: {key} is {composed[key]!r}, not {value!r}"
