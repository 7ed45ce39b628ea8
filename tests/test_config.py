"""Config discovery, flattening and the command-line pre-check."""

from __future__ import annotations

import pytest

from pipelines.checks.command_line import check_group_overrides
from pipelines.config import config_dir, config_groups, flatten, group_options
from pipelines.errors import PluginNotFoundError


def test_config_dir_holds_the_primary_config() -> None:
    assert (config_dir() / "config.yaml").is_file()


def test_groups_and_options() -> None:
    assert {"data", "model", "pipeline", "trainer", "tracking"} <= set(config_groups())
    assert {"mlp", "convnet"} <= set(group_options("model"))
    assert "classify" in group_options("pipeline")


def test_flatten_uses_dotted_keys_and_keeps_lists() -> None:
    node = {"model": {"name": "mlp", "units": [1, 2]}, "seed": 1, "empty": {}}
    assert dict(flatten(node)) == {
        "model.name": "mlp",
        "model.units": [1, 2],
        "seed": 1,
        "empty": {},
    }


@pytest.mark.parametrize(
    "argv",
    [
        ["model=mlp"],
        ["-m", "model=mlp,convnet"],
        ["model.name=anything", "trainer.max_epochs=3"],
        ["hydra/launcher=basic"],
        ["model=choice(mlp,convnet)"],
        ["~tracking"],
    ],
)
def test_valid_command_lines_pass(argv: list[str]) -> None:
    check_group_overrides(argv)


@pytest.mark.parametrize(
    ("argv", "suggestion"),
    [
        (["model=mlpp"], "mlp"),
        (["-m", "model=mlp,convnett"], "convnet"),
        (["+data=digit"], "digits"),
    ],
)
def test_unknown_option_suggests_closest(argv: list[str], suggestion: str) -> None:
    with pytest.raises(PluginNotFoundError, match=f"Did you mean '{suggestion}'"):
        check_group_overrides(argv)
