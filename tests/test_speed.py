"""The speed node: data on the device, channels_last, TF32, compile; checked keys; CPU defaults;
the engine's strategy (``pipelines.speed.fast_steps``): its own optimizer steps, several per call.

The GPU effects are measured by ``benchmarks/gpu.py`` when a GPU is lent; here the settings
are checked to apply (or stay off) and to train correctly on CPU, where each also works.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mlflow import MlflowClient

from conftest import FAST, mlflow_runs, quiet_trainer, run_cli, store_uri
from pipelines.errors import ConfigValueError
from pipelines.speed.fast_steps import FastSteps
from pipelines.speed.settings import (
    AUTO_STEPS_PER_CALL,
    SpeedSettings,
    apply_speed_settings,
    channels_last_pays,
)


def engine_trainer(**kwargs):
    """A quiet trainer with the engine's strategy, as ``build_trainer`` makes on one device."""
    return quiet_trainer(strategy=FastSteps(), **kwargs)


def _digits(**kwargs):
    from plugins.data.vision import DigitsDataModule

    data = DigitsDataModule(batch_size=32, **kwargs)
    data.setup()
    return data


def _convnet():
    from plugins.models.convnet import ConvNet

    return ConvNet(input_shape=(1, 8, 8), num_classes=10, filters=[4, 8], padding="same")


def _first_conv_weight(model) -> torch.Tensor:
    return next(m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d))


def test_auto_device_settings_stay_off_on_cpu() -> None:
    data, model = _digits(), _convnet()
    before = data.splits["train"][0]
    applied = apply_speed_settings(SpeedSettings(), model, data, engine_trainer())
    assert applied == {"steps_per_call": AUTO_STEPS_PER_CALL}  # the one auto that is on
    assert data.splits["train"][0] is before
    assert _first_conv_weight(model).is_contiguous()


def test_explicit_settings_apply_on_cpu_and_the_model_still_trains() -> None:
    data, model = _digits(), _convnet()
    settings = SpeedSettings(data_on_device=True, channels_last=True)
    applied = apply_speed_settings(settings, model, data, engine_trainer())
    assert applied == {
        "data_on_device": True,
        "channels_last": True,
        "steps_per_call": AUTO_STEPS_PER_CALL,
    }
    assert _first_conv_weight(model).is_contiguous(memory_format=torch.channels_last)
    inputs, targets = next(iter(data.train_dataloader()))
    loss = torch.nn.functional.cross_entropy(model(inputs), targets)
    loss.backward()
    assert torch.isfinite(loss)


def test_data_on_device_needs_in_memory_splits() -> None:
    streaming = SimpleNamespace()  # a data module without move_splits_to
    settings = SpeedSettings(data_on_device=True)
    with pytest.raises(ConfigValueError, match="holds its splits in memory"):
        apply_speed_settings(settings, _convnet(), streaming, quiet_trainer())


def test_channels_last_is_left_off_for_depthwise_convolutions_in_16_bits() -> None:
    """NHWC made the book's mini Xception (separable = depthwise + pointwise convolutions)
    slower an epoch in bf16 on an H200, faster in float32 (benchmarks/gpu_precision.py)."""
    from plugins.models.dense import MLP
    from plugins.models.xception import MiniXception

    shape = {"input_shape": (3, 32, 32), "num_classes": 2}
    xception = MiniXception(**shape, sizes=[8, 16])
    assert channels_last_pays(_convnet(), "bf16-mixed")
    assert channels_last_pays(xception, "32-true")
    assert not channels_last_pays(xception, "bf16-mixed")
    assert not channels_last_pays(xception, "16-mixed")
    assert channels_last_pays(MiniXception(**shape, sizes=[8, 16], separable=False), "bf16-mixed")
    assert not channels_last_pays(MLP(input_shape=(64,), num_classes=10))


@pytest.fixture
def matmul_precision():
    """TF32 is process-wide: put torch's setting back after the test."""
    before = torch.get_float32_matmul_precision()
    yield
    torch.set_float32_matmul_precision(before)


def test_tf32_is_off_on_cpu_unless_asked(matmul_precision) -> None:
    torch.set_float32_matmul_precision("highest")
    applied = apply_speed_settings(SpeedSettings(), _convnet(), _digits(), quiet_trainer())
    assert "tf32" not in applied
    assert torch.get_float32_matmul_precision() == "highest"
    settings = SpeedSettings(tf32=True)
    applied = apply_speed_settings(settings, _convnet(), _digits(), quiet_trainer())
    assert applied["tf32"] is True
    assert torch.get_float32_matmul_precision() == "high"
    # an in-process sweep's next run with tf32=false gets full float32 again
    settings = SpeedSettings(tf32=False)
    applied = apply_speed_settings(settings, _convnet(), _digits(), quiet_trainer())
    assert "tf32" not in applied
    assert torch.get_float32_matmul_precision() == "highest"


@pytest.mark.parametrize(
    ("node", "fragment"),
    [
        ({"tf32": "sometimes"}, "Wrong value for 'speed.tf32': got 'sometimes'"),
        ({"data_on_devise": True}, "'speed.data_on_devise'. Did you mean 'data_on_device'?"),
        ({"compile": "maybe"}, "Wrong value for 'speed.compile': got 'maybe'"),
        ({"compile_mode": "fastest"}, "Wrong value for 'speed.compile_mode'"),
    ],
)
def test_bad_speed_settings_name_the_key(node: dict, fragment: str) -> None:
    with pytest.raises(ConfigValueError) as caught:
        SpeedSettings.from_config(node)
    assert fragment in str(caught.value)


def test_cli_reports_what_it_applied_and_rejects_bad_keys(workdir: Path) -> None:
    speed = ["speed.channels_last=true", "speed.data_on_device=true", "speed.steps_per_call=4"]
    result = run_cli(["model=convnet", *speed, *FAST], workdir)
    assert result.returncode == 0, result.output
    (run,) = mlflow_runs(store_uri(workdir))
    assert run.data.tags["speed"] == "data_on_device,channels_last,steps_per_call=4"
    assert run.data.params["speed.compile"] == "False"
    assert run.data.metrics["test/acc"] > 0.5
    bad = run_cli(["+speed.complie=true"], workdir)  # "+": past Hydra's own key check
    assert bad.returncode == 2 and "Did you mean 'compile'?" in bad.stderr, bad.output


@pytest.mark.slow
def test_compiled_model_trains_and_its_checkpoint_loads_uncompiled(workdir: Path) -> None:
    """torch.compile in place: the checkpoint keeps plain keys (no ``_orig_mod.``)."""
    result = run_cli(["speed.compile=true", *FAST], workdir, timeout=900)
    assert result.returncode == 0, result.output
    (run,) = mlflow_runs(store_uri(workdir))
    assert run.data.tags["speed"] == "compile"
    (checkpoint,) = (workdir / "outputs").rglob("best-*.ckpt")
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    assert all("_orig_mod" not in key for key in state)


def _fit_digits(steps_per_call: int, **trainer_kwargs) -> tuple[int, dict, dict[str, float]]:
    """Optimizer steps, final weights and last validation metrics of 2 epochs on digits."""
    from plugins.models.dense import MLP

    torch.manual_seed(0)
    data = _digits()
    model = MLP(input_shape=(1, 8, 8), num_classes=10, hidden_units=[32], optimizer="adam")
    trainer = engine_trainer(max_epochs=2, **trainer_kwargs)
    apply_speed_settings(SpeedSettings(steps_per_call=steps_per_call), model, data, trainer)
    assert data.val_dataloader().batch_size == steps_per_call * data.batch_size
    trainer.fit(model, datamodule=data)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    return trainer.global_step, {k: v.clone() for k, v in model.state_dict().items()}, metrics


def test_several_steps_per_call_take_the_same_steps(one_thread) -> None:
    """speed.steps_per_call=5: the same batches in the same order, so the same weights;
    validation batches come 5 at a time too, and are summed in the same order."""
    steps, weights, metrics = _fit_digits(1)
    fused_steps, fused_weights, fused_metrics = _fit_digits(5)
    assert fused_steps == steps  # optimizer steps, not Lightning calls
    for name, value in weights.items():
        torch.testing.assert_close(fused_weights[name], value, msg=name)
    assert {"val/loss", "val/acc"} <= metrics.keys()
    assert fused_metrics == metrics  # not close: equal


def test_validation_batches_are_fused_only_where_nothing_counts_them() -> None:
    """limit_val_batches counts validation batches, and a model that does not declare
    fused_steps_are_exact (it may log per batch) might validate differently: both keep them
    single. Steps=1 undoes an earlier fusing."""
    from plugins.models.dense import MLP

    class LogsPerBatch(MLP):
        fused_steps_are_exact = False

    data = _digits()
    for model, trainer in (
        (_convnet(), engine_trainer(limit_val_batches=3)),
        (LogsPerBatch(input_shape=(1, 8, 8), num_classes=10), engine_trainer()),
    ):
        apply_speed_settings(SpeedSettings(steps_per_call=4), model, data, trainer)
        assert data.train_dataloader().batch_size == 4 * data.batch_size
        assert data.val_dataloader().batch_size == data.batch_size
    model, trainer = _convnet(), engine_trainer()
    apply_speed_settings(SpeedSettings(steps_per_call=4), model, data, trainer)
    assert data.val_dataloader().batch_size == 4 * data.batch_size
    apply_speed_settings(SpeedSettings(steps_per_call=1), model, data, trainer)
    assert data.train_dataloader().batch_size == data.val_dataloader().batch_size == 32
    assert trainer.strategy.steps_per_call == trainer.strategy.val_steps_per_call == 1


def test_steps_per_call_says_what_rules_it_out() -> None:
    with pytest.raises(ConfigValueError, match="gradient clipping"):
        _fit_digits(2, gradient_clip_val=1.0)
    with pytest.raises(ConfigValueError, match=r"speed\.steps_per_call"):
        SpeedSettings.from_config({"steps_per_call": 0})


@pytest.mark.parametrize(
    "trainer_settings",
    [
        {"max_steps": 100},
        {"limit_train_batches": 10},
        {"limit_train_batches": 0.5},
        {"val_check_interval": 20},
        {"gradient_clip_val": 1.0},
        {"accumulate_grad_batches": 2},
    ],
    ids=lambda settings: next(iter(settings)),
)
def test_auto_steps_per_call_is_one_where_lightning_counts_batches(trainer_settings) -> None:
    """Each of these counts training batches (or needs Lightning's own step): fused calls
    would change its meaning, so auto keeps one step per call."""
    data, model = _digits(), _convnet()
    applied = apply_speed_settings(SpeedSettings(), model, data, engine_trainer(**trainer_settings))
    assert "steps_per_call" not in applied
    assert data.train_dataloader().batch_size == data.batch_size


def test_auto_steps_per_call_is_one_for_data_augmented_per_batch() -> None:
    """Augmentation draws its random numbers per batch: fused, they would come in another
    order, so auto keeps one step per call (an explicit N still fuses)."""
    data, model = _digits(augment={"rotation": 0.1}), _convnet()
    assert "steps_per_call" not in apply_speed_settings(
        SpeedSettings(), model, data, engine_trainer()
    )
    explicit = SpeedSettings(steps_per_call=4)
    assert apply_speed_settings(explicit, model, data, engine_trainer())["steps_per_call"] == 4


def test_auto_steps_per_call_is_one_for_models_that_do_not_declare_it_exact() -> None:
    """The VAE logs per batch: auto leaves it one step per call (it does not declare
    fused_steps_are_exact), and so does a plain trainer, whose strategy cannot cut batches."""
    from plugins.models.vae import VAE

    data = _digits()
    model = VAE(input_shape=(1, 8, 8), latent_dim=2)
    assert "steps_per_call" not in apply_speed_settings(
        SpeedSettings(), model, data, engine_trainer()
    )
    assert "steps_per_call" not in apply_speed_settings(
        SpeedSettings(), _convnet(), data, quiet_trainer()
    )
    with pytest.raises(ConfigValueError, match="engine's single-device strategy"):
        apply_speed_settings(SpeedSettings(steps_per_call=4), _convnet(), data, quiet_trainer())


def test_default_run_fuses_steps_and_records_it(workdir: Path) -> None:
    """The default pipeline takes 32 optimizer steps per Lightning call, and says so."""
    result = run_cli([*FAST], cwd=workdir)
    assert result.returncode == 0, result.output
    (run,) = mlflow_runs(store_uri(workdir))
    # accelerator=auto: on a GPU machine the default run also keeps its data on the GPU
    on_gpu = "data_on_device," if torch.cuda.is_available() else ""
    assert run.data.tags["speed"] == f"{on_gpu}steps_per_call={AUTO_STEPS_PER_CALL}"
    # metrics are recorded at optimizer steps, as with one step per call: one x-axis
    client = MlflowClient(store_uri(workdir))
    fused_steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")]
    result = run_cli([*FAST, "speed.steps_per_call=1"], cwd=workdir)
    assert result.returncode == 0, result.output
    single = max(mlflow_runs(store_uri(workdir)), key=lambda run: run.info.start_time)
    single_steps = [m.step for m in client.get_metric_history(single.info.run_id, "val/loss")]
    assert fused_steps == single_steps and fused_steps[-1] > len(fused_steps)
    result = run_cli([*FAST, "+trainer.max_steps=40"], cwd=workdir)
    assert result.returncode == 0, result.output
    latest = max(mlflow_runs(store_uri(workdir)), key=lambda run: run.info.start_time)
    assert latest.data.tags["speed"] == "none"
    # max_steps counts optimizer steps: exactly 40, not rounded up to a whole call
    assert (
        max(
            m.step
            for m in MlflowClient(store_uri(workdir)).get_metric_history(
                latest.info.run_id, "train/loss"
            )
        )
        <= 40
    )


def test_progress_bar_counts_batches_not_fused_calls() -> None:
    """A person watching sees the batches the model steps on (digits: 37 training batches
    of 32), not the 10 calls that hand them over 4 at a time."""
    import lightning as L

    from pipelines.training.progress import BatchProgressBar
    from plugins.models.dense import MLP

    bar = BatchProgressBar()
    bar.REDRAW_SECONDS = 1e9  # redraws are rationed: still, each loop's last batch is drawn
    shown: dict[str, tuple[float, float | None]] = {}

    def task(task_id) -> tuple[float, float | None]:
        (found,) = [t for t in bar.progress.tasks if t.id == task_id]
        return found.completed, found.total

    class ReadsTheBar(L.Callback):
        def on_validation_epoch_end(self, trainer, pl_module) -> None:
            shown["val"] = task(bar.val_progress_bar_id)

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            shown["train"] = task(bar.train_progress_bar_id)

    data = _digits()
    model = MLP(input_shape=(1, 8, 8), num_classes=10, hidden_units=[8])
    trainer = engine_trainer(
        enable_progress_bar=True, callbacks=[bar, ReadsTheBar()], num_sanity_val_steps=0
    )
    apply_speed_settings(SpeedSettings(steps_per_call=4), model, data, trainer)
    trainer.fit(model, datamodule=data)
    train_batches = -(-len(data.splits["train"][1]) // data.batch_size)
    val_batches = -(-len(data.splits["val"][1]) // data.batch_size)
    assert trainer.num_training_batches == -(-train_batches // 4)  # Lightning's calls
    assert shown == {"train": (train_batches, train_batches), "val": (val_batches, val_batches)}


def _train_one_epoch(model, trainer):
    """The weights after one seeded epoch (6 batches of 16) on random images."""
    from pipelines.training.tensor_loader import TensorBatches

    generator = torch.Generator().manual_seed(0)
    inputs, targets = torch.rand(96, 1, 8, 8, generator=generator), torch.arange(96) % 3
    batches = TensorBatches(inputs, targets, batch_size=16, shuffle=True, seed=1)
    trainer.fit(model, train_dataloaders=batches)
    return {name: value.clone() for name, value in model.state_dict().items()}


def _mlp(seed: int, **settings):
    from plugins.models.dense import MLP

    torch.manual_seed(seed)
    return MLP((1, 8, 8), num_classes=3, **settings)


def test_the_engines_steps_match_lightnings_automatic_ones() -> None:
    """The engine's strategy takes the steps (Lightning's manual optimization, lean: no
    hook to dispatch) and gets Lightning's automatic weights, with dropout and an L2
    penalty; global_step counts the optimizer steps. The model itself is a plain
    automatic LightningModule."""
    settings = {"hidden_units": [32], "dropout": 0.2, "l2": 0.01, "optimizer": "adam"}
    fast, automatic = _mlp(3, **settings), _mlp(3, **settings)
    assert fast.automatic_optimization is True
    fast_trainer, automatic_trainer = engine_trainer(), quiet_trainer()
    torch.manual_seed(4)
    fast_weights = _train_one_epoch(fast, fast_trainer)
    torch.manual_seed(4)
    automatic_weights = _train_one_epoch(automatic, automatic_trainer)
    assert fast_trainer.strategy.takes_steps and fast_trainer.strategy.lean
    assert fast.automatic_optimization is False  # for the fit: Lightning's manual loop
    assert automatic.automatic_optimization is True
    assert fast_trainer.global_step == automatic_trainer.global_step == 6
    for name, value in fast_weights.items():
        torch.testing.assert_close(value, automatic_weights[name], msg=name)


def test_a_callback_that_inspects_gradients_still_gets_its_hooks() -> None:
    """A callback overriding a backward/step hook turns the lean step off: it is called
    every step, and the weights are the lean step's."""
    import lightning as L

    class GradientNorms(L.Callback):
        def __init__(self) -> None:
            self.norms: list[float] = []

        def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
            grads = [p.grad.norm() for p in pl_module.parameters() if p.grad is not None]
            self.norms.append(float(torch.stack(grads).norm()))

    settings = {"hidden_units": [16], "optimizer": "adam"}
    lean, hooked = _mlp(5, **settings), _mlp(5, **settings)
    norms = GradientNorms()
    lean_trainer, trainer = engine_trainer(), engine_trainer(callbacks=[norms])
    torch.manual_seed(6)
    lean_weights = _train_one_epoch(lean, lean_trainer)
    torch.manual_seed(6)
    hooked_weights = _train_one_epoch(hooked, trainer)
    assert lean_trainer.strategy.lean and not trainer.strategy.lean
    assert trainer.strategy.takes_steps
    assert len(norms.norms) == trainer.global_step == 6 and all(n > 0 for n in norms.norms)
    for name, value in lean_weights.items():
        torch.testing.assert_close(value, hooked_weights[name], msg=name)


@pytest.mark.parametrize(
    ("setting", "steps"), [({"gradient_clip_val": 0.5}, 6), ({"accumulate_grad_batches": 2}, 3)]
)
def test_gradient_clipping_and_accumulation_leave_the_steps_to_lightning(
    setting: dict, steps: int
) -> None:
    """Both are automatic-only in Lightning: the engine's strategy lets Lightning step; a
    model an earlier engine fit switched to manual optimization gets its automatic back."""
    model = _mlp(0, hidden_units=[8])
    _train_one_epoch(model, engine_trainer())
    assert model.automatic_optimization is False
    before = model.net[1].weight.clone()
    trainer = engine_trainer(**setting)
    _train_one_epoch(model, trainer)
    assert model.automatic_optimization is True and not trainer.strategy.takes_steps
    assert trainer.global_step == steps
    assert not torch.equal(before, model.net[1].weight)


def test_a_scheduler_leaves_the_steps_to_lightning_and_refuses_fused_steps() -> None:
    """Lightning steps a learning-rate scheduler only in automatic optimization."""
    from plugins.models.dense import MLP

    class Scheduled(MLP):
        def configure_optimizers(self):
            optimizer = super().configure_optimizers()
            return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)]

    torch.manual_seed(0)
    model = Scheduled((1, 8, 8), num_classes=3, hidden_units=[8], lr=0.1)
    trainer = engine_trainer()
    _train_one_epoch(model, trainer)
    assert not trainer.strategy.takes_steps and trainer.global_step == 6
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.01)  # one epoch
    with pytest.raises(ConfigValueError, match="several optimizers or a scheduler"):
        data = _digits()
        model = Scheduled((1, 8, 8), num_classes=10, hidden_units=[8])
        trainer = engine_trainer()
        apply_speed_settings(SpeedSettings(steps_per_call=4), model, data, trainer)
        trainer.fit(model, datamodule=data)


def test_fused_steps_hand_each_batch_its_own_index_and_undo_after_the_fit() -> None:
    """A model's training_step sees the batches and indices it would see one by one; after
    the fit the data hands out single batches again (a Trainer built by hand later)."""
    from plugins.models.dense import MLP

    seen: list[tuple[int, int]] = []

    class Records(MLP):
        def training_step(self, batch, batch_idx):
            seen.append((batch_idx, batch[0].shape[0]))
            return super().training_step(batch, batch_idx)

    data = _digits()
    model = Records((1, 8, 8), num_classes=10, hidden_units=[8])
    trainer = engine_trainer()
    apply_speed_settings(SpeedSettings(steps_per_call=4), model, data, trainer)
    trainer.fit(model, datamodule=data)
    samples = len(data.splits["train"][1])
    assert [index for index, _ in seen] == list(range(-(-samples // 32)))
    assert sum(size for _, size in seen) == samples and {size for _, size in seen[:-1]} == {32}
    assert data.train_dataloader().batch_size == data.val_dataloader().batch_size == 32


def test_the_engine_strategy_is_lightnings_single_device_one_unless_told_otherwise() -> None:
    """build_trainer's strategy: the engine's on the one device Lightning would pick;
    Lightning's own where speed.fast_steps=false or the trainer configures another."""
    from pipelines.training.trainer import engine_strategy

    cpu = {"accelerator": "cpu", "devices": 1}
    strategy = engine_strategy(None, cpu)
    assert isinstance(strategy, FastSteps) and strategy.root_device == torch.device("cpu")
    assert engine_strategy({"fast_steps": False}, cpu) is None
    assert engine_strategy({}, {**cpu, "strategy": "ddp"}) is None
    assert engine_strategy({}, {"accelerator": "cpu", "devices": 2}) is None  # DDP
    with pytest.raises(ConfigValueError, match=r"speed\.fast_steps=true"):
        engine_strategy({"fast_steps": True}, {**cpu, "strategy": "ddp"})
    trainer = quiet_trainer(strategy=strategy)
    assert trainer.strategy is strategy and trainer.num_devices == 1
