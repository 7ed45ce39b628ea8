"""A key's range is what its plugin declares in its signature, not what its name implies.

``dropout`` in a third-party plugin may be anything; a plugin that wants ``0 <= x < 1``
says so (``Annotated[float, Field(ge=0, lt=1)]``, or ``pipelines.api.DropoutRate`` with
its paragraph). The training arguments every built-in model shares are declared once
(``pipelines.api.TrainingArguments``) and taken as ``**training: Unpack[...]``: their keys
are checked as the model's own.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Any

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from pydantic import Field

from pipelines import api, registry
from pipelines.checks.validation import check_arguments, parameters_of, type_hints_of
from pipelines.config import config_dir
from pipelines.errors import ConfigValueError
from plugins.models.base import Classifier


def _refusal(factory: Any, kwargs: dict[str, Any], path: str = "model") -> str:
    with pytest.raises(ConfigValueError) as err:
        check_arguments(factory, kwargs, path=path, what="The model plugin 'x'")
    return str(err.value)


# -- no range by name ------------------------------------------------------------------------


class UnrelatedDropout:
    """A third-party plugin whose ``dropout`` is, say, a count of dropped samples to show."""

    def __init__(self, dropout=2, filters: int = 0, width: float = 0.0, lr=-1.0) -> None:
        self.dropout = dropout


class PlainEpochsStage:
    def __init__(self, max_epochs: int | None = None, seed: int = -5) -> None:
        self.max_epochs = max_epochs

    def run(self, ctx: Any) -> None: ...


def test_a_key_named_like_a_range_is_not_checked_without_an_annotation_saying_so() -> None:
    checked = check_arguments(
        UnrelatedDropout,
        {"dropout": 7, "filters": 0, "width": 0, "lr": -3},
        path="model",
        what="The model plugin 'x'",
    )
    assert checked == {"dropout": 7, "filters": 0, "width": 0.0, "lr": -3}
    check_arguments(
        PlainEpochsStage,
        {"max_epochs": 0, "seed": -1},
        path="pipeline.stages.0",
        what="The stage plugin 'y'",
    )


def test_the_name_tables_are_gone() -> None:
    from pipelines.checks import validation

    assert not hasattr(validation, "RANGES")
    assert not hasattr(validation, "MODEL_RANGES")


# -- a plugin's own range ------------------------------------------------------------------


class OwnRanges:
    def __init__(
        self,
        ratio: Annotated[float, Field(ge=0, lt=1)] = 0.5,
        temperature: Annotated[
            float,
            Field(gt=0),
            api.Range(valid="above 0", why="it divides the logits", example=1.0),
        ] = 2.0,
        sizes: tuple[api.LayerSize, ...] = (4, 8),
        rate: api.DropoutRate | None = None,
    ) -> None:
        self.ratio = ratio


def test_a_plugins_own_annotated_range_is_enforced_in_one_paragraph() -> None:
    message = _refusal(OwnRanges, {"ratio": 1.5})
    assert message == (
        "'model.ratio' must be less than 1, got 1.5. Set it to such a value, e.g. "
        "`model.ratio=0.5` on the command line or in the model config file."
    )
    assert "'model.ratio' must be greater than or equal to 0, got -1.0" in _refusal(
        OwnRanges, {"ratio": -1}
    )


def test_a_plugins_own_range_gives_its_own_words_and_its_default_as_the_example() -> None:
    message = _refusal(OwnRanges, {"temperature": 0})
    assert message == (
        "'model.temperature' must be above 0, got 0.0: it divides the logits. Set it to such "
        "a value, e.g. `model.temperature=2.0` on the command line or in the model config file."
    )


def test_a_range_inside_a_list_names_the_key_and_its_whole_value() -> None:
    message = _refusal(OwnRanges, {"sizes": [4, 0]})
    assert message.startswith("'model.sizes' must be a whole number of at least 1")
    assert "got [4,0]" in message and "`model.sizes=[4,8]`" in message


def test_the_type_is_checked_before_the_range_and_null_stays_allowed() -> None:
    message = _refusal(OwnRanges, {"ratio": "abc"})
    assert message.startswith("Wrong value for 'model.ratio': expected float, got 'abc'")
    assert "Wrong value for 'model.sizes'" in _refusal(OwnRanges, {"sizes": [0, "x"]})
    checked = check_arguments(
        OwnRanges, {"ratio": "0.25", "rate": None}, path="model", what="The model plugin 'x'"
    )
    assert checked == {"ratio": 0.25, "rate": None}
    assert "'model.rate' must be at least 0 and below 1, got 1.0" in _refusal(
        OwnRanges, {"rate": 1}
    )


# -- **training: Unpack[...] -----------------------------------------------------------------


class Settings(api.TypedDict, total=False):
    rate: api.LearningRate
    penalty: api.Penalty
    mode: typing.Literal["fast", "slow"]


class SettingsBase:
    def __init__(self, rate: api.LearningRate = 0.01, penalty: api.Penalty = 0.0) -> None:
        self.rate = rate


class PassesSettingsOn(SettingsBase):
    def __init__(self, units: int = 3, **settings: api.Unpack[Settings]) -> None:
        super().__init__(**settings)


def test_unpacked_keys_are_the_plugins_own_keys_with_the_bases_defaults() -> None:
    parameters = parameters_of(PassesSettingsOn)
    assert list(parameters) == ["units", "rate", "penalty", "mode"]
    assert parameters["rate"].default == 0.01, "the base class's default"
    assert parameters["mode"].default is parameters["mode"].empty, "no base names it"
    assert type_hints_of(PassesSettingsOn)["rate"] == api.LearningRate


def test_unpacked_keys_are_validated_like_named_ones() -> None:
    message = _refusal(PassesSettingsOn, {"rat": 0.1})
    assert "does not accept the key 'model.rat'. Did you mean 'rate'?" in message
    assert "Its keys are: units, rate, penalty, mode." in message
    assert "Wrong value for 'model.rate': expected float" in _refusal(
        PassesSettingsOn, {"rate": "abc"}
    )
    assert "Wrong value for 'model.mode'" in _refusal(PassesSettingsOn, {"mode": "medium"})
    message = _refusal(PassesSettingsOn, {"rate": -1})
    assert message.startswith("'model.rate' must be a finite number above 0, got -1.0")
    assert "`model.rate=0.01`" in message, "the base class's default as the example"
    checked = check_arguments(
        PassesSettingsOn, {"rate": "0.5", "mode": "fast"}, path="m", what="The model plugin"
    )
    assert checked == {"rate": 0.5, "mode": "fast"}


def test_a_plain_var_keyword_still_takes_any_key() -> None:
    def anything(**kwargs: Any) -> None: ...

    assert check_arguments(anything, {"whatever": -1}, path="x", what="f") == {"whatever": -1}


def test_the_builtin_models_training_keys_are_checked() -> None:
    with pytest.raises(ConfigValueError, match="Did you mean 'lr'"):
        registry.check("model", {"name": "lstm", "lrr": 0.1}, path="model")
    with pytest.raises(ConfigValueError, match=r"Wrong value for 'model\.lr': expected float"):
        registry.check("model", {"name": "lstm", "lr": "abc"}, path="model")
    with pytest.raises(ConfigValueError, match=r"'model\.l2' must be 0 or more"):
        registry.check("model", {"name": "bow_dense", "l2": -0.1}, path="model")
    _, kwargs = registry.check("model", {"name": "convnet", "lr": "0.01"}, path="model")
    assert kwargs == {"lr": 0.01}


# -- the shared training arguments, declared once --------------------------------------------

SHARED = ("optimizer", "lr", "weight_decay", "l1", "l2", "optimizer_args", "init")
#: the training arguments each built-in model took before they were declared once: unchanged
TAKES = {
    **dict.fromkeys(("char_lstm", "convnet", "mini_xception", "transfer"), SHARED),
    "vae": ("optimizer", "lr", "weight_decay", "optimizer_args", "init"),
    "dcgan": ("optimizer", "lr", "optimizer_args", "init"),
}


@pytest.mark.parametrize("name", registry.names("model"))
def test_every_builtin_model_takes_the_training_arguments_it_took(name: str) -> None:
    parameters = parameters_of(registry.load("model", name))
    expected = TAKES.get(name, (*SHARED, "task", "target_scale"))
    taken = [key for key in (*SHARED, "task", "target_scale") if key in parameters]
    assert tuple(taken) == expected
    assert not any(p.kind is p.VAR_KEYWORD for p in parameters.values()), "no key goes unchecked"


def test_the_training_arguments_are_the_base_classs_parameters() -> None:
    declared = typing.get_type_hints(api.TrainingArguments, include_extras=True)
    base = typing.get_type_hints(Classifier.__init__, include_extras=True)
    base.pop("return")
    assert declared == base
    assert list(typing.get_type_hints(api.OptimizerArguments)) == list(SHARED)


def _composed_model(name: str) -> dict[str, Any]:
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        config = compose("config", overrides=[f"model={name}", "model.lr=0.01"])
    return OmegaConf.to_container(config.model, resolve=False)


@pytest.mark.parametrize("file", sorted((config_dir() / "model").glob("*.yaml")), ids=str)
def test_model_configs_set_shared_settings_only_where_they_differ(file: Path) -> None:
    node = yaml.safe_load(file.read_text())
    if file.stem in ("dcgan", "vae"):  # adam, and not every shared key
        return
    assert node["defaults"] == ["/_shared/model_training@_here_", "_self_"]
    for key in ("optimizer", "weight_decay", "l1", "l2"):
        assert key not in node, f"{key} comes from conf/_shared/model_training.yaml"
    assert node.get("lr", 0.01) != 0.001, "the shared default is not repeated"
    composed = _composed_model(file.stem)
    assert composed["lr"] == 0.01, "model.lr overrides the composed key (an Optuna sweep too)"
    assert {*SHARED} <= set(composed)
    node = {key: value for key, value in composed.items() if value != "${seed}"}
    registry.check("model", node, path="model")
