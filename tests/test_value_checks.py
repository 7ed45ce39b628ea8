"""Values of the right type but outside their range are refused before a run opens.

``model.dropout=1.5`` and ``model.lr=-0.1`` ended in torch's traceback once training began,
``seed=-1`` in numpy's; ``model.l2=-1``, ``model.hidden_units=[0]`` and
``trainer.max_epochs=0`` trained (or not) to the end without a word; a single-class text
file "scored" a test accuracy of 1.0.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from conftest import run_cli
from pipelines import registry
from pipelines.checks.validation import SEED_MAX, check_ranges, parameters_of
from pipelines.config import config_dir
from pipelines.errors import ConfigValueError


def _refusal(kind: str, node: dict[str, Any], path: str | None = None) -> str:
    with pytest.raises(ConfigValueError) as err:
        registry.check(kind, node, path=path or kind)
    return str(err.value)


def _models_with(key: str) -> list[str]:
    """Every installed model plugin whose constructor takes ``key``."""
    return [
        name
        for name in registry.names("model")
        if key in parameters_of(registry.load("model", name))
    ]


# -- dropout -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", _models_with("dropout"))
@pytest.mark.parametrize("value", [1.5, 1.0, -0.1, math.nan])
def test_dropout_outside_0_to_1_is_refused_for_every_model(name: str, value: float) -> None:
    message = _refusal("model", {"name": name, "dropout": value})
    assert "'model.dropout' must be at least 0 and below 1" in message
    assert "`model.dropout=" in message, "an example of a valid value"


@pytest.mark.parametrize("name", _models_with("recurrent_dropout"))
def test_recurrent_dropout_of_1_is_refused(name: str) -> None:
    message = _refusal("model", {"name": name, "recurrent_dropout": 1.0})
    assert "'model.recurrent_dropout' must be at least 0 and below 1, got 1.0" in message


def test_dropout_in_range_passes() -> None:
    _, kwargs = registry.check("model", {"name": "mlp", "dropout": "0.5"}, path="model")
    assert kwargs["dropout"] == 0.5


# -- optimizer numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [-0.1, 0, math.inf, math.nan])
def test_a_learning_rate_not_above_0_is_refused(value: float) -> None:
    message = _refusal("model", {"name": "mlp", "lr": value})
    assert "'model.lr' must be a finite number above 0" in message
    assert "`model.lr=0.001`" in message, "the plugin's default as the example"


def test_the_gans_discriminator_lr_and_fine_tunings_lr_factor_are_checked_too() -> None:
    assert "'model.discriminator_lr' must be a finite number above 0" in _refusal(
        "model", {"name": "dcgan", "discriminator_lr": -1e-4}
    )
    registry.check("model", {"name": "dcgan", "discriminator_lr": None}, path="model")
    path = "pipeline.stages.3"
    message = _refusal("stage", {"name": "fine_tuning", "lr_factor": 0}, path=path)
    assert f"'{path}.lr_factor' must be a finite number above 0" in message


def test_a_stage_keys_refusal_names_it_as_an_override_spells_it(workdir: Path) -> None:
    """The fix a refusal names is one Hydra accepts: ``pipeline.stages.1.k``, not ``[1]``."""
    args = ["pipeline=kfold", "data=housing", "model=regressor"]
    refused = run_cli([*args, "pipeline.stages.1.k=abc"], cwd=workdir)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "'pipeline.stages.1.k'" in refused.stderr and "stages[" not in refused.stderr
    assert run_cli([*args, "pipeline.stages.1.k=2", "--cfg", "job"], cwd=workdir).returncode == 0


@pytest.mark.parametrize("key", ["l1", "l2", "weight_decay"])
def test_a_negative_weight_penalty_is_refused(key: str) -> None:
    message = _refusal("model", {"name": "mlp", key: -1})
    assert f"'model.{key}' must be 0 or more (0 turns it off), got -1.0" in message
    assert "rewards large weights" in message
    registry.check("model", {"name": "mlp", key: 0.0}, path="model")


# -- seed ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [-1, SEED_MAX + 1])
def test_a_seed_numpy_cannot_take_is_refused_where_a_data_plugin_takes_it(seed: int) -> None:
    message = _refusal("data", {"name": "digits", "seed": seed})
    assert f"'data.seed' must be a whole number from 0 to {SEED_MAX}" in message
    assert "`seed=42` sets both" in message, "the run's seed is what the user set"


def test_the_top_level_seed_range() -> None:
    for seed in (0, SEED_MAX):
        check_ranges({"seed": seed}, path="")
    with pytest.raises(ConfigValueError) as err:
        check_ranges({"seed": -1}, path="")
    assert str(err.value).startswith("'seed' must be a whole number from 0 to 4294967295")
    assert "`seed=42` on the command line" in str(err.value)


# -- layer sizes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key", "value"),
    [
        ("mlp", "hidden_units", [0]),
        ("mlp", "hidden_units", [64, -3]),
        ("transfer", "hidden_units", -1),
        ("convnet", "filters", [32, 0]),
        ("mini_xception", "sizes", [0]),
        ("conv1d_forecaster", "filters", 0),
        ("lstm", "units", 0),
        ("transformer", "num_heads", 0),
        ("vae", "latent_dim", 0),
    ],
)
def test_a_layer_size_below_1_is_refused(name: str, key: str, value: Any) -> None:
    message = _refusal("model", {"name": name, key: value})
    assert f"'model.{key}' must be " in message and "at least 1" in message
    assert "passes nothing on" in message


def test_no_hidden_layer_is_still_allowed() -> None:
    registry.check("model", {"name": "mlp", "hidden_units": []}, path="model")
    registry.check("model", {"name": "transfer", "hidden_units": 0}, path="model")


@pytest.mark.parametrize("value", [0, -1])
def test_width_must_be_above_0(value: float) -> None:
    message = _refusal("model", {"name": "mlp", "width": value})
    assert "'model.width' must be a finite number above 0" in message


def test_size_names_mean_sizes_only_in_the_model_node() -> None:
    # the visualize stage's `filters` is how many filters to show, not a layer
    check_ranges({"filters": 0, "width": 0}, path="pipeline.stages.4")


# -- epochs ----------------------------------------------------------------------------------------


def test_max_epochs_0_is_refused_and_minus_1_allowed() -> None:
    from pipelines.training.trainer import trainer_arguments

    with pytest.raises(ConfigValueError) as err:
        trainer_arguments({"max_epochs": 0})
    message = str(err.value)
    assert "'trainer.max_epochs' must be at least 1, or -1 for no limit, got 0" in message
    assert "untrained model" in message
    assert trainer_arguments({"max_epochs": -1})["max_epochs"] == -1
    assert trainer_arguments({"max_epochs": None})["max_epochs"] is None


def test_a_stages_own_max_epochs_of_0_is_refused() -> None:
    path = "pipeline.stages.1"
    message = _refusal("stage", {"name": "fit", "max_epochs": 0}, path=path)
    assert f"'{path}.max_epochs' must be at least 1, or -1 for no limit" in message
    registry.check("stage", {"name": "fit", "max_epochs": None}, path=path)


# -- every shipped default passes ------------------------------------------------------------


@pytest.mark.parametrize("file", sorted((config_dir() / "model").glob("*.yaml")), ids=str)
def test_every_model_config_passes_the_range_checks(file: Path) -> None:
    from hydra import compose, initialize_config_dir

    # composed, as a run sees it: the shared training arguments come from its defaults list
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        config = compose("config", overrides=[f"model={file.stem}"])
    node = OmegaConf.to_container(config.model, resolve=False)
    node = {key: value for key, value in node.items() if value != "${seed}"}
    registry.check("model", node, path="model")


# -- a single class ------------------------------------------------------------------------------


def test_a_text_file_of_one_class_is_refused_naming_it_and_the_class(tmp_path: Path) -> None:
    from plugins.data.text import TextClassificationDataModule, class_names

    path = tmp_path / "oneclass.csv"
    path.write_text("text,label\na,x\nb,x\nc,x\nd,x\ne,x\nf,x\n")
    with pytest.raises(ConfigValueError) as err:
        TextClassificationDataModule(path=str(path)).load_texts()
    message = str(err.value)
    assert str(path) in message and "only the class 'x'" in message
    assert "at least 2 classes" in message
    assert class_names(["b", "a", "b"]) == ["a", "b"]


# -- the command line ----------------------------------------------------------------------------


def test_an_out_of_range_value_is_one_paragraph_before_any_training(workdir: Path) -> None:
    result = run_cli(["model.dropout=1.5", "trainer.max_epochs=1", "tracking=none"], workdir)
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output, result.output
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert "'model.dropout' must be at least 0 and below 1, got 1.5" in error
    assert "stage 0" not in result.output, "refused before the first stage"


def test_the_runner_refuses_a_seed_numpy_cannot_take_whatever_the_data_plugin() -> None:
    """A data plugin without a ``seed`` key still gets a run-level ``seed=-1`` refused."""
    from pipelines.checks.before_run import check_seed

    check_seed(SEED_MAX)
    with pytest.raises(ConfigValueError, match="'seed' must be a whole number from 0"):
        check_seed(-1)


# -- the GAN's own numbers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "valid"),
    [
        ("label_noise", -0.1, "at least 0 and below 0.5 (0 turns it off)"),
        ("label_noise", 0.5, "at least 0 and below 0.5 (0 turns it off)"),
        ("label_noise", math.nan, "at least 0 and below 0.5 (0 turns it off)"),
        ("clip_value", -1.0, "a finite number above 0, or null for no clipping"),
        ("clip_value", 0, "a finite number above 0, or null for no clipping"),
        ("leaky_slope", -0.2, "at least 0 and below 1 (0 is a plain ReLU)"),
        ("leaky_slope", 1.0, "at least 0 and below 1 (0 is a plain ReLU)"),
        ("leaky_slope", 1.5, "at least 0 and below 1 (0 is a plain ReLU)"),
    ],
)
def test_the_gans_label_noise_clip_and_slope_outside_their_range_are_refused(
    key: str, value: float, valid: str
) -> None:
    message = _refusal("model", {"name": "dcgan", key: value})
    assert f"'model.{key}' must be {valid}, got {value}" in message
    assert f"`model.{key}=" in message, "an example of a valid value"


def test_the_gans_numbers_in_range_pass_and_the_examples_are_valid() -> None:
    for settings in (
        {"label_noise": 0.0, "clip_value": None, "leaky_slope": 0.0},
        {"label_noise": 0.49, "clip_value": 1.0, "leaky_slope": 0.2},
    ):
        registry.check("model", {"name": "dcgan", **settings}, path="model")
    # the example each message gives is itself accepted
    message = _refusal("model", {"name": "dcgan", "clip_value": -1})
    assert "`model.clip_value=1.0`" in message
    assert "`model.label_noise=0.05`" in _refusal("model", {"name": "dcgan", "label_noise": 0.7})
    assert "`model.leaky_slope=0.2`" in _refusal("model", {"name": "dcgan", "leaky_slope": 2})


# -- the search's sampler seed ---------------------------------------------------------------------


def _search_config(seed: Any) -> Any:
    """A composed multirun config as Hydra hands it to callbacks: the sampler's seed is the
    run's ``${seed}`` unless set for the sampler alone."""
    return OmegaConf.create({"seed": seed, "hydra": {"sweeper": {"sampler": {"seed": "${seed}"}}}})


@pytest.mark.parametrize("seed", [-1, SEED_MAX + 1, "abc", 1.5])
def test_a_sampler_seed_numpy_cannot_take_is_refused(seed: Any) -> None:
    from pipelines.checks.validation import check_search_ranges

    with pytest.raises(ConfigValueError) as err:
        check_search_ranges(_search_config(seed))
    message = str(err.value)
    assert f"'hydra.sweeper.sampler.seed' must be a whole number from 0 to {SEED_MAX}" in message
    assert f"got {seed}" in message
    assert "`hydra.sweeper.sampler.seed=42` on the command line or in the hparams_search" in (
        message
    )
    assert "`seed=42` sets both" in message


def test_a_valid_or_absent_sampler_seed_passes() -> None:
    from pipelines.checks.validation import check_search_ranges

    for seed in (0, 42, SEED_MAX, None):
        check_search_ranges(_search_config(seed))
    check_search_ranges({"hydra": {"sweeper": {"params": {}}}})  # a sweep without a sampler
    check_search_ranges(OmegaConf.create({"hydra": {"sweeper": {"sampler": {"seed": "${x}"}}}}))


def test_the_search_checks_callback_exits_2_with_the_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pipelines.checks.command_line import SearchChecks

    with pytest.raises(SystemExit) as exit_:
        SearchChecks().on_multirun_start(config=_search_config(-1))
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("Error: 'hydra.sweeper.sampler.seed' must be")
    SearchChecks().on_multirun_start(config=_search_config(7))


@pytest.mark.parametrize("override", ["hydra.sweeper.sampler.seed=-1", "seed=-1"])
def test_the_cli_refuses_a_bad_sampler_seed_before_the_sweep_opens_a_run(
    workdir: Path, override: str
) -> None:
    args = ["-m", "hparams_search=optuna", override, "hydra.sweeper.n_trials=1"]
    result = run_cli([*args, "trainer.max_epochs=1"], workdir)
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output, result.output
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert "'hydra.sweeper.sampler.seed' must be a whole number from 0" in error
    assert "got -1" in error
    assert not (workdir / "mlruns").exists(), "no parent run was opened"
