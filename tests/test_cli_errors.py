"""Bad input: a one-paragraph error naming the fix, a non-zero exit, no traceback wall."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import mlflow_runs, run_cli, store_uri


def _assert_clean_error(result, *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_unknown_model_option_lists_known_and_closest(workdir: Path) -> None:
    result = run_cli(["model=mpl"], cwd=workdir)
    _assert_clean_error(result, "Unknown model 'mpl'", "Did you mean 'mlp'?", "convnet")
    assert result.returncode == 2
    assert not (workdir / "mlruns").exists(), "no run is opened for a bad command line"


def test_unknown_option_inside_a_sweep_list(workdir: Path) -> None:
    result = run_cli(["-m", "model=mlp,convnett"], cwd=workdir)
    _assert_clean_error(result, "Unknown model 'convnett'", "Did you mean 'convnet'?")


def test_unknown_plugin_name_lists_entry_points(workdir: Path) -> None:
    result = run_cli(["model.name=convnot"], cwd=workdir)
    _assert_clean_error(
        result, "Unknown model plugin 'convnot'", "Did you mean 'convnet'?", "pipelines.models"
    )
    assert result.returncode == 2


def test_unknown_stage_is_caught_before_training(workdir: Path) -> None:
    result = run_cli(["pipeline.stages=[prepare,fitt]"], cwd=workdir)
    _assert_clean_error(result, "Unknown stage plugin 'fitt'", "Did you mean 'fit'?")


def test_unknown_key_names_the_key(workdir: Path) -> None:
    result = run_cli(["model.hiden_units=[64]"], cwd=workdir)
    _assert_clean_error(result, "model.hiden_units")


@pytest.mark.parametrize(
    ("override", "key"),
    [("trainer.max_epochs=abc", "trainer.max_epochs"), ("model.dropout=lots", "model.dropout")],
)
def test_wrong_type_names_the_key(workdir: Path, override: str, key: str) -> None:
    result = run_cli([override], cwd=workdir)
    _assert_clean_error(result, f"'{key}'", "expected")
    assert result.returncode == 2
    assert not (workdir / "mlruns").exists(), "checked before a run is opened"


def test_bad_nested_setting_names_the_inner_key(workdir: Path) -> None:
    result = run_cli(["augment=book", "data.augment.rotation=3"], cwd=workdir)
    _assert_clean_error(result, "'data.augment.rotation'", "less than or equal to 1")


def test_key_the_plugin_does_not_accept(workdir: Path) -> None:
    result = run_cli(["+model.hidden=3"], cwd=workdir)
    _assert_clean_error(result, "'model.hidden'", "hidden_units")


def test_missing_dataset_files_say_where_and_how(workdir: Path, tmp_path: Path) -> None:
    root = tmp_path / "nowhere"
    result = run_cli(["data=mnist", f"data.root={root}"], cwd=workdir)
    _assert_clean_error(result, str(root), "data.download=true")
    assert result.returncode == 2


@pytest.mark.parametrize("batch_size", ["0", "-4"])
def test_batch_size_below_one_is_refused_before_a_run_opens(workdir: Path, batch_size: str):
    result = run_cli([f"data.batch_size={batch_size}"], cwd=workdir)
    _assert_clean_error(result, f"'data.batch_size' must be at least 1, got {batch_size}")
    assert result.returncode == 2
    assert "-128" not in result.output, "not the fused batch size (times speed.steps_per_call)"
    assert not (workdir / "mlruns").exists(), "checked before a run is opened"


def test_mandatory_value_is_asked_for_before_a_run_opens(workdir: Path) -> None:
    result = run_cli(["data=image_folder"], cwd=workdir)
    _assert_clean_error(result, "'data.root'", "data.root=")
    assert not (workdir / "mlruns").exists(), "checked before a run is opened"


def test_null_group_choice_points_to_the_delete_syntax(workdir: Path) -> None:
    result = run_cli(["augment=null"], cwd=workdir)
    _assert_clean_error(result, "`~augment`", "book, digits, none")


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        # hidden GPUs stand for a machine without one, so this runs the same on a GPU box
        (["trainer=gpu"], ["trainer.accelerator=gpu", "no CUDA GPU", "`trainer=default`"]),
        (["trainer.devices=0"], ["trainer.devices=0", "not a valid input"]),
    ],
)
def test_hardware_this_machine_lacks_is_refused_before_data_or_a_run(
    workdir: Path, overrides: list[str], fragments: list[str]
) -> None:
    result = run_cli(overrides, cwd=workdir, env={"CUDA_VISIBLE_DEVICES": ""})
    _assert_clean_error(result, "Lightning's Trainer cannot run", *fragments)
    assert result.returncode == 2
    assert "stage 0: prepare" not in result.output, "refused before the data is prepared"
    assert not (workdir / "mlruns").exists(), "and before a run is opened"


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (["trainer.max_epoch=1"], ["'trainer.max_epoch'", "Did you mean 'max_epochs'?"]),
        (["trainer.gradient_clip_val=1.0"], ["`+trainer.gradient_clip_val=1.0`"]),
        (["+trainer.max_epochs=3"], ["already in the config", "`trainer.max_epochs=3`"]),
        (["model.hidden_units=[64"], ["the override `model.hidden_units=[64`"]),
        (["hydra/launcher=jobib"], ["Unknown hydra/launcher 'jobib'", "Did you mean 'joblib'?"]),
    ],
)
def test_overrides_hydra_cannot_compose_get_one_paragraph(
    workdir: Path, overrides: list[str], fragments: list[str]
) -> None:
    result = run_cli(overrides, cwd=workdir)
    _assert_clean_error(result, *fragments)
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("Error: "), result.stderr


@pytest.mark.skipif(shutil.which("srun") is not None, reason="a SLURM machine can submit")
def test_a_sweep_whose_launcher_cannot_start_closes_its_parent_run(workdir: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    result = run_cli(["-m", "hydra/launcher=slurm", "seed=1,2"], cwd=workdir)
    _assert_clean_error(result, "SLURM", "leave out `hydra/launcher=slurm`")
    assert result.returncode == 2
    (parent,) = mlflow_runs(store_uri(workdir))
    assert parent.info.status == "FAILED", "not RUNNING for ever"
    assert "srun" in parent.data.tags["error"]


def test_an_objective_direction_other_than_minimize_or_maximize_stops_the_sweep(
    workdir: Path,
) -> None:
    # "max" used to count as minimize: the sweep then called its worst job the best
    result = run_cli(["-m", "model.lr=0.01,0.001", "objective.direction=max"], cwd=workdir)
    _assert_clean_error(result, "'objective.direction' is 'max'", "Did you mean 'maximize'?")
    assert result.returncode == 2
    assert not (workdir / "mlruns").exists(), "before any job ran"


def test_a_registry_name_mlflow_refuses_is_refused_before_training(workdir: Path) -> None:
    # MLflow checked it in the report stage: the whole run trained, exited 0, and its model
    # was neither logged nor registered, said in one warning line among the output
    result = run_cli(["tracking.register_as=digits/mlp"], cwd=workdir)
    _assert_clean_error(result, "'tracking.register_as'", "'digits/mlp'", "cannot be blank")
    assert result.returncode == 2
    assert not (workdir / "mlruns").exists(), "no run is opened for it"


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("+tracking.experimnt=foo", "Unknown key 'tracking.experimnt'. Did you mean 'experiment'?"),
        ("+seeed=3", "Unknown top-level key 'seeed': nothing reads it. Did you mean 'seed'?"),
        ("+pipeline.stage=[fit]", "Unknown key 'pipeline.stage'. Did you mean 'stages'?"),
    ],
)
def test_an_added_key_nothing_reads_is_an_error_not_ignored(
    workdir: Path, override: str, fragment: str
) -> None:
    result = run_cli([override], cwd=workdir)
    _assert_clean_error(result, fragment)
    assert result.returncode == 2
    assert not (workdir / "mlruns").exists()


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("speed=fast", "'speed' is a group of settings, not a value"),
        ("~model", "Every run needs a 'model' config group, and it was removed"),
        ("pipeline.stages=fit", "'pipeline.stages' must be a list of stage names"),
        ("tracking=null", "To turn tracking off, write `tracking=none`"),
        ("trainer.max_epochs=-5", "must be at least 1, or -1 for no limit, got -5"),
        (
            "+trainer.gradient_clip_algorithm=bogus",
            "Lightning's Trainer refused the trainer settings: `gradient_clip_algorithm` bogus",
        ),
    ],
)
def test_config_shapes_the_engine_cannot_use_are_named(
    workdir: Path, override: str, fragment: str
) -> None:
    result = run_cli(
        [override, "tracking=none"] if override != "tracking=null" else [override], cwd=workdir
    )
    _assert_clean_error(result, fragment)
    assert result.returncode == 2


def test_a_hyperparameter_search_without_multirun_says_to_add_m(workdir: Path) -> None:
    # Hydra uses a sweeper only with -m: one run trained with the defaults, without a word
    result = run_cli(["hparams_search=optuna", "trainer.max_epochs=1"], cwd=workdir)
    _assert_clean_error(result, "add -m", "python -m pipelines.run -m hparams_search=optuna")
    assert result.returncode == 2
    assert not (workdir / "mlruns").exists(), "nothing trained"


def test_a_sweep_with_cfg_names_one_jobs_command(workdir: Path) -> None:
    """Hydra refuses -m with --cfg in a ValueError traceback; the fix prints one job."""
    argv = ["-m", "model=mlp,convnet", "model.hidden_units=[64,64]", "--cfg", "job"]
    result = run_cli(argv, cwd=workdir)
    fix = "python -m pipelines.run model=mlp model.hidden_units=[64,64] --cfg job"
    _assert_clean_error(result, "`-m` and `--cfg` cannot be combined", fix)
    assert run_cli(fix.split()[3:], cwd=workdir).returncode == 0


@pytest.mark.parametrize("argument", ["+model=convnet", "+augment=book"])
def test_a_plus_on_a_group_the_config_lists_says_to_drop_it(workdir: Path, argument: str) -> None:
    # Hydra's answer was "Multiple values for model. To override a value use 'override
    # model: convnet'": defaults-list syntax, of no use on a command line
    result = run_cli([argument], cwd=workdir)
    _assert_clean_error(result, f"`{argument}`", f"choose with `{argument[1:]}`, without the `+`")
    assert result.returncode == 2


@pytest.mark.parametrize(
    ("arguments", "fragments"),
    [
        (["-m", "hydra.sweeper.n_trials=3"], ["of the Optuna sweeper", "hparams_search=optuna"]),
        (["hydra.job.chdirr=true"], ["JobConf has no 'chdirr'", "Did you mean 'chdir'?"]),
    ],
)  # fmt: skip
def test_an_unknown_key_of_hydras_own_nodes_is_named(
    workdir: Path, arguments: list[str], fragments: list[str]
) -> None:
    # Hydra's "Key 'n_trials' not in 'BasicSweeperConf'" came with advice to add a `+`,
    # which its dataclass nodes refuse as well
    result = run_cli(arguments, cwd=workdir)
    _assert_clean_error(result, *fragments)
    assert result.returncode == 2 and "put a plus" not in result.stderr


def test_an_empty_data_dir_variable_counts_as_unset(workdir: Path) -> None:
    # set but empty, it made every data path start at the root: /mnist/...
    result = run_cli(["data=mnist"], cwd=workdir, env={"PIPELINES_DATA_DIR": ""})
    assert result.returncode == 2
    assert f"{workdir.resolve() / 'data_cache' / 'mnist'}" in result.stderr, result.stderr
    assert "for /mnist/" not in result.stderr and "into /mnist," not in result.stderr


@pytest.mark.parametrize("seed", ["abc", "1.5"])
def test_a_seed_that_is_not_a_whole_number_is_named_as_seed(workdir: Path, seed: str) -> None:
    # the data plugins take ${seed} as their own: it was reported as a wrong 'data.seed'
    result = run_cli([f"seed={seed}"], cwd=workdir)
    _assert_clean_error(result, "'seed' must be a whole number", "seed=42")
    assert result.returncode == 2 and "data.seed" not in result.stderr


def test_a_moved_key_keeps_working_with_a_notice() -> None:
    from pipelines.checks.command_line import renamed_keys

    argv = ["model=char_lstm", "data.train_windows=null", "+data.train_windows=8", "seed=1"]
    assert renamed_keys(argv) == [
        "model=char_lstm",
        "data.windows_per_epoch=null",
        "data.windows_per_epoch=8",
        "seed=1",
    ]


def test_an_output_folder_that_cannot_be_created_is_one_paragraph(workdir: Path) -> None:
    """Hydra makes the run's folder before the engine runs: a 38-line traceback before."""
    (workdir / "a-file").write_text("not a folder\n")
    result = run_cli(["hydra.run.dir=a-file/run", "trainer.max_epochs=1"], cwd=workdir)
    _assert_clean_error(result, "Cannot create", "a-file/run", "hydra.run.dir=")
    assert result.returncode == 2
    assert not (workdir / "mlruns").exists(), "no run is opened"
