"""The entry-point registry and argument checks, without running anything."""

from __future__ import annotations

from typing import Literal

import pytest

from pipelines import registry
from pipelines.checks.validation import check_arguments
from pipelines.errors import ConfigValueError, PipelineError, PluginNotFoundError


def test_builtins_are_registered_by_entry_point() -> None:
    assert {"mlp", "convnet"} <= set(registry.names("model"))
    assert "digits" in registry.names("data")
    assert {"prepare", "fit", "test"} <= set(registry.names("stage"))
    assert registry.available("model")["mlp"].group == "pipelines.models"


def test_load_returns_the_registered_class() -> None:
    mlp = registry.load("model", "mlp")
    assert mlp.__name__ == "MLP"


def test_unknown_name_lists_known_and_closest() -> None:
    with pytest.raises(PluginNotFoundError) as err:
        registry.load("model", "mpl")
    message = str(err.value)
    assert "Did you mean 'mlp'?" in message
    assert "convnet" in message and "pipelines.models" in message


def test_unknown_kind() -> None:
    with pytest.raises(PipelineError, match="Known kinds"):
        registry.names("optimizer")


def test_build_passes_config_and_context() -> None:
    model = registry.build(
        "model",
        {"name": "mlp", "hidden_units": [16], "lr": "0.01"},
        input_shape=(1, 8, 8),
        num_classes=10,
    )
    assert model.net[1].in_features == 64 and model.net[1].out_features == 16
    assert model.lr == 0.01, "lax coercion of '0.01' to float"


def test_config_wins_over_context() -> None:
    model = registry.build(
        "model", {"name": "mlp", "num_classes": 3}, input_shape=(4,), num_classes=10
    )
    assert model.net[-1].out_features == 3


def test_context_not_accepted_by_the_plugin_is_dropped() -> None:
    stage = registry.build("stage", {"name": "fit"}, input_shape=(4,))
    assert stage.monitor == "val/loss"


def test_missing_name_key() -> None:
    with pytest.raises(ConfigValueError, match="no 'name' key"):
        registry.build("model", {"lr": 0.1})


def test_unknown_key_suggests_the_right_one() -> None:
    with pytest.raises(ConfigValueError) as err:
        registry.check("model", {"name": "mlp", "hiden_units": [3]}, path="model")
    assert "'model.hiden_units'" in str(err.value)
    assert "Did you mean 'hidden_units'?" in str(err.value)


def _factory(
    count: int, ratio: float = 0.5, shape: tuple[int, ...] = (1,), mode: Literal["a", "b"] = "a"
) -> dict:
    return {"count": count, "ratio": ratio, "shape": shape, "mode": mode}


def test_check_arguments_coerces_to_annotations() -> None:
    checked = check_arguments(
        _factory, {"count": "3", "ratio": 1, "shape": [2, 3]}, path="x", what="f"
    )
    assert checked == {"count": 3, "ratio": 1.0, "shape": (2, 3)}


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"count": "many"}, "x.count"), ({"count": 1, "mode": "c"}, "x.mode")],
)
def test_check_arguments_names_the_bad_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigValueError, match=f"'{key}'"):
        check_arguments(_factory, kwargs, path="x", what="f")


@pytest.mark.parametrize("name", registry.names("data"))
@pytest.mark.parametrize("batch_size", [0, -4])
def test_batch_size_below_one_is_refused_for_every_data_plugin(name: str, batch_size: int) -> None:
    with pytest.raises(ConfigValueError) as err:
        registry.check("data", {"name": name, "batch_size": batch_size}, path="data")
    assert f"'data.batch_size' must be at least 1, got {batch_size}" in str(err.value)


def test_a_positive_batch_size_passes() -> None:
    _, kwargs = registry.check("data", {"name": "digits", "batch_size": "8"}, path="data")
    assert kwargs["batch_size"] == 8
