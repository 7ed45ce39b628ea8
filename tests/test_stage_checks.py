"""Stages check the model and data they will get right after ``prepare``, before training.

An impossible combination (``model=vae`` in the classify pipeline, ``pipeline=generative``
with a classifier, ...) is one paragraph and exit 2 before the fit, never a traceback after
it. The hook is ``check(ctx)`` on a stage, which the runner calls on every later stage once
a stage has built the model and data, third-party stages included.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir

from conftest import run_cli
from pipelines import registry
from pipelines.checks.later_stages import check_later_stages
from pipelines.config import config_dir
from pipelines.context import RunContext
from pipelines.errors import ConfigValueError, PipelineError
from pipelines.runner import run_pipeline
from pipelines.tracking.tracker import Tracker
from plugins.models.char_lstm import CharLSTM
from plugins.models.dense import MLP
from plugins.models.vae import VAE
from plugins.stages.deepdream import DeepDream
from plugins.stages.fit import Fit
from plugins.stages.forecast import NaiveBaseline
from plugins.stages.generate import Generate
from plugins.stages.report import Report
from plugins.stages.style_transfer import StyleTransfer
from plugins.stages.transfer import FeatureExtraction, FineTune
from plugins.stages.visualize import Visualize

DIGITS = (1, 8, 8)

# -- the hook ---------------------------------------------------------------------------


class RefusingStage:
    """A third-party stage whose check refuses every model; it must never run."""

    def check(self, ctx: RunContext) -> None:
        raise PipelineError(f"refused by {ctx.stage_key}: '{ctx.config['model']['name']}'")

    def run(self, ctx: RunContext) -> None:
        raise AssertionError("a refused stage ran")


def test_only_the_stages_after_the_builder_are_checked_under_their_own_key(
    tmp_path: Path,
) -> None:
    seen: list[tuple[str, str]] = []

    class Checked:
        def __init__(self, name: str) -> None:
            self.name = name

        def check(self, ctx: RunContext) -> None:
            seen.append((self.name, ctx.stage_key))

    class WithoutCheck:
        def run(self, ctx: RunContext) -> None: ...

    ctx = RunContext(config={}, tracker=Tracker(), output_dir=tmp_path, model=object())
    ctx.stage_key = "pipeline.stages.0"
    stages = [Checked("prepare"), WithoutCheck(), Checked("late"), Checked("last")]
    check_later_stages(ctx, stages, 0)
    assert seen == [("late", "pipeline.stages.2"), ("last", "pipeline.stages.3")]
    assert ctx.stage_key == "pipeline.stages.0", "the running stage's key is restored"


def test_the_runner_asks_a_third_party_stage_before_fit_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = registry.available

    def with_test_stage(kind: str) -> dict[str, EntryPoint]:
        found = dict(installed(kind))
        if kind == "stage":
            value = f"{__name__}:RefusingStage"
            found["refusing"] = EntryPoint("refusing", value, "pipelines.stages")
        return found

    def no_training(self: Fit, ctx: RunContext) -> None:
        raise AssertionError("fit ran before the later stage's check")

    monkeypatch.setattr(registry, "available", with_test_stage)
    monkeypatch.setattr(Fit, "run", no_training)
    overrides = ["tracking=none", "pipeline.stages=[prepare,fit,refusing]"]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    with pytest.raises(PipelineError, match=r"refused by pipeline\.stages\.2: 'mlp'"):
        run_pipeline(cfg, output_dir=tmp_path / "run")


# -- what each stage checks -------------------------------------------------------------


def _context(tmp_path: Path, model: Any, name: str, datamodule: Any = None) -> RunContext:
    return RunContext(
        config={"seed": 0, "model": {"name": name}, "data": {"name": "digits"}},
        tracker=Tracker(),
        output_dir=tmp_path,
        datamodule=datamodule if datamodule is not None else object(),
        model=model,
    )


def _convnet() -> Any:
    node = {"name": "convnet", "filters": [4, 8]}
    return registry.build("model", node, input_shape=DIGITS, num_classes=10)


def test_report_and_visualize_refuse_a_generative_model(tmp_path: Path) -> None:
    ctx = _context(tmp_path, VAE(input_shape=DIGITS), "vae")
    for stage in (Report(), Visualize()):
        with pytest.raises(PipelineError) as error:
            stage.check(ctx)
        message = str(error.value)
        assert "model 'vae' is generative" in message
        assert "`python -m pipelines.run pipeline=generative model=vae`" in message
    Report().check(_context(tmp_path, MLP(input_shape=DIGITS, num_classes=10), "mlp"))
    Visualize().check(_context(tmp_path, _convnet(), "convnet"))


def test_visualize_refuses_a_model_without_convolutions(tmp_path: Path) -> None:
    ctx = _context(tmp_path, MLP(input_shape=DIGITS, num_classes=10), "mlp")
    with pytest.raises(PipelineError, match=r"convolutional model.*'mlp' has none.*convnet"):
        Visualize().check(ctx)


def test_generate_checks_the_model_and_its_keys_before_training(tmp_path: Path) -> None:
    classifier = _context(tmp_path, MLP(input_shape=DIGITS, num_classes=10), "mlp")
    with pytest.raises(PipelineError, match=r"needs a generative model.*'mlp' \(MLP\) has none"):
        Generate().check(classifier)
    Generate(source="runs:/0123abc").check(classifier)  # that run's network, not ctx.model
    vae = _context(tmp_path, VAE(input_shape=DIGITS), "vae")
    Generate(grid_size=3).check(vae)
    vae.stage_key = "pipeline.stages.2"
    with pytest.raises(ConfigValueError, match=r"'pipeline\.stages\.2\.grid_sise'"):
        Generate(grid_sise=3).check(vae)


def test_char_lstm_refuses_data_without_characters() -> None:
    with pytest.raises(ConfigValueError) as error:
        CharLSTM(input_shape=DIGITS, num_classes=10)
    message = str(error.value)
    assert "data=text_corpus" in message and "pipeline=generative" in message
    assert "(1, 8, 8)" in message
    CharLSTM(input_shape=(5,), num_classes=3, charset=["a", "b", "\ufffd"], units=4)


def test_transfer_stages_refuse_a_model_without_a_pretrained_base(tmp_path: Path) -> None:
    ctx = _context(tmp_path, MLP(input_shape=DIGITS, num_classes=10), "mlp")
    for stage, name in ((FeatureExtraction(), "feature_extraction"), (FineTune(), "fine_tuning")):
        with pytest.raises(PipelineError, match=rf"'{name}' stage needs .*model=transfer"):
            stage.check(ctx)


def test_naive_baseline_refuses_data_that_is_not_a_forecast(tmp_path: Path) -> None:
    ctx = _context(tmp_path, MLP(input_shape=DIGITS, num_classes=10), "mlp")
    with pytest.raises(PipelineError, match=r"needs forecasting data.*data 'digits' has none"):
        NaiveBaseline().check(ctx)


def test_dream_and_style_on_the_pipeline_model_need_its_conv_layers(tmp_path: Path) -> None:
    dense = _context(tmp_path, MLP(input_shape=DIGITS, num_classes=10), "mlp")
    for stage in (DeepDream(), StyleTransfer()):
        with pytest.raises(PipelineError, match=r"'model mlp' has no Conv2d layer"):
            stage.check(dense)
        stage.backbone = "vgg19"  # a network of its own: checked when it is loaded
        stage.check(dense)
    convnet = _context(tmp_path, _convnet(), "convnet")
    convnet.stage_key = "pipeline.stages.2"
    unknown = r"no layer 'net\.99' \(in 'pipeline\.stages\.2\.layers'\)"
    with pytest.raises(PipelineError, match=unknown):
        DeepDream(layers={"net.99": 1.0}).check(convnet)
    with pytest.raises(PipelineError, match=r"\(in 'pipeline\.stages\.2\.style_layers'\)"):
        StyleTransfer(style_layers=["nowhere"]).check(convnet)
    DeepDream().check(convnet)
    StyleTransfer().check(convnet)


# -- the user's commands: refused before the run opens, so before any training -----------


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["model=vae"], ["model 'vae' is generative", "pipeline=generative model=vae"]),
        (["model=char_lstm"], ["model char_lstm", "data=text_corpus", "pipeline=generative"]),
        (["pipeline=generative"], ["'generate' stage needs a generative model", "'mlp'"]),
        (["pipeline=classify_visualize"], ["'visualize' stage needs a convolutional model"]),
    ],
    ids=["vae-classify", "char_lstm-digits", "generative-mlp", "visualize-mlp"],
)
def test_cli_refuses_the_combination_before_training(
    workdir: Path, args: list[str], fragments: list[str]
) -> None:
    result = run_cli([*args, "trainer.max_epochs=1"], cwd=workdir)
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output, result.output
    assert result.stderr.count("Error: ") == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert "stage 0: prepare" not in result.output, "no stage ran"
    assert not (workdir / "mlruns").exists() and not (workdir / "outputs").exists()
    assert "stage 1:" not in result.output, "refused before the fit stage"
    assert not list(workdir.glob("outputs/**/*.ckpt")), "nothing was trained"


def test_prepare_refuses_a_classifier_of_one_class_but_not_a_generative_model() -> None:
    """An image folder with one class folder (or ``data.classes=[3]``) trained to a perfect
    accuracy; a VAE may learn a single digit."""
    from types import SimpleNamespace

    from pipelines.errors import PipelineError
    from plugins.models.dense import MLP
    from plugins.models.vae import VAE
    from plugins.stages.prepare import _refuse_a_single_class

    ctx = SimpleNamespace(config={"data": {"name": "image_folder"}})
    one = SimpleNamespace(classes=["cats"])
    with pytest.raises(PipelineError, match=r"gives 1 class \(cats\).*at least 2"):
        _refuse_a_single_class(ctx, MLP, one, {"num_classes": 1})
    _refuse_a_single_class(ctx, VAE, one, {"num_classes": 1})
    _refuse_a_single_class(ctx, MLP, one, {"num_classes": 1, "task": "regression"})
    _refuse_a_single_class(ctx, MLP, one, {"num_classes": 2})


# -- report: refused untracked too, saying why ----------------------------------------------------


def test_report_refuses_a_generative_model_untracked_too_and_says_why(tmp_path: Path) -> None:
    """Untracked, the report writes nothing; it still refuses a VAE, so that a command does
    not pass with tracking=none and fail once tracked, and the message says so."""
    untracked = _context(tmp_path, VAE(input_shape=DIGITS), "vae")
    untracked.config["tracking"] = {"enabled": False}
    with pytest.raises(PipelineError) as error:
        Report().check(untracked)
    message = str(error.value)
    assert "`python -m pipelines.run pipeline=generative model=vae`" in message
    assert message.endswith(
        "It is refused with tracking=none too, where the report would write nothing, so that "
        "the same command does not pass untracked and fail once tracked."
    )
    tracked = _context(tmp_path, VAE(input_shape=DIGITS), "vae")
    with pytest.raises(PipelineError) as error:
        Report().check(tracked)
    assert "pipeline=generative model=vae" in str(error.value)
    assert "tracking=none" not in str(error.value), "said only where the user turned it off"


@pytest.mark.parametrize("model", ["vae", "dcgan"])
def test_cli_untracked_report_refusal_names_the_generative_pipeline(
    workdir: Path, model: str
) -> None:
    result = run_cli([f"model={model}", "tracking=none", "trainer.max_epochs=1"], cwd=workdir)
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output, result.output
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert f"model '{model}' is generative" in error
    assert f"`python -m pipelines.run pipeline=generative model={model}`" in error
    assert "refused with tracking=none too" in error
    assert "stage 1:" not in result.output, "refused before the fit stage"
