"""Every experiment preset composes, and names only plugins and keys that exist."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from pipelines.config import config_dir, group_options
from pipelines.runner import _stage_node, check_config


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_experiment_composes_and_validates(experiment: str) -> None:
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=False)
    config = OmegaConf.to_container(cfg, resolve=True)
    check_config(config, [_stage_node(node) for node in config["pipeline"]["stages"]])
