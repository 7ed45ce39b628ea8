"""The speed node: data on the device, channels_last, TF32, compile; checked keys; CPU defaults.

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
from pipelines.speed import (
    AUTO_STEPS_PER_CALL,
    SpeedSettings,
    apply_speed_settings,
    channels_last_pays,
)


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
    applied = apply_speed_settings(SpeedSettings(), model, data, quiet_trainer())
    assert applied == {"steps_per_call": AUTO_STEPS_PER_CALL}  # the one auto that is on
    assert data.splits["train"][0] is before
    assert _first_conv_weight(model).is_contiguous()


def test_explicit_settings_apply_on_cpu_and_the_model_still_trains() -> None:
    data, model = _digits(), _convnet()
    settings = SpeedSettings(data_on_device=True, channels_last=True)
    applied = apply_speed_settings(settings, model, data, quiet_trainer())
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
    trainer = quiet_trainer(max_epochs=2, **trainer_kwargs)
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
    """limit_val_batches counts validation batches, and a validation_step written for one
    batch cannot take several: both keep them single. Steps=1 undoes an earlier fusing."""
    from plugins.models.dense import MLP

    class OwnValidation(MLP):
        def validation_step(self, batch, batch_idx):
            return super().validation_step(batch, batch_idx)

    data = _digits()
    for model, trainer in (
        (_convnet(), quiet_trainer(limit_val_batches=3)),
        (OwnValidation(input_shape=(1, 8, 8), num_classes=10), quiet_trainer()),
    ):
        apply_speed_settings(SpeedSettings(steps_per_call=4), model, data, trainer)
        assert data.train_dataloader().batch_size == 4 * data.batch_size
        assert data.val_dataloader().batch_size == data.batch_size
    model = _convnet()
    apply_speed_settings(SpeedSettings(steps_per_call=4), model, data, quiet_trainer())
    assert data.val_dataloader().batch_size == 4 * data.batch_size
    apply_speed_settings(SpeedSettings(steps_per_call=1), model, data, quiet_trainer())
    assert data.train_dataloader().batch_size == data.val_dataloader().batch_size == 32
    assert model.steps_per_call == 1


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
    applied = apply_speed_settings(SpeedSettings(), model, data, quiet_trainer(**trainer_settings))
    assert "steps_per_call" not in applied
    assert data.train_dataloader().batch_size == data.batch_size


def test_auto_steps_per_call_is_one_for_data_augmented_per_batch() -> None:
    """Augmentation draws its random numbers per batch: fused, they would come in another
    order, so auto keeps one step per call (an explicit N still fuses)."""
    data, model = _digits(augment={"rotation": 0.1}), _convnet()
    assert "steps_per_call" not in apply_speed_settings(
        SpeedSettings(), model, data, quiet_trainer()
    )
    explicit = SpeedSettings(steps_per_call=4)
    assert apply_speed_settings(explicit, model, data, quiet_trainer())["steps_per_call"] == 4


def test_auto_steps_per_call_is_one_for_models_with_their_own_training_step() -> None:
    from plugins.models.vae import VAE

    data = _digits()
    model = VAE(input_shape=(1, 8, 8), latent_dim=2)
    assert "steps_per_call" not in apply_speed_settings(
        SpeedSettings(), model, data, quiet_trainer()
    )


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

    from pipelines.progress import BatchProgressBar
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
    trainer = quiet_trainer(
        enable_progress_bar=True, callbacks=[bar, ReadsTheBar()], num_sanity_val_steps=0
    )
    apply_speed_settings(SpeedSettings(steps_per_call=4), model, data, trainer)
    trainer.fit(model, datamodule=data)
    train_batches = -(-len(data.splits["train"][1]) // data.batch_size)
    val_batches = -(-len(data.splits["val"][1]) // data.batch_size)
    assert trainer.num_training_batches == -(-train_batches // 4)  # Lightning's calls
    assert shown == {"train": (train_batches, train_batches), "val": (val_batches, val_batches)}
