"""Built-in models: shapes on the book's input sizes, penalties, capacity knobs."""

from __future__ import annotations

import pytest
import torch

from conftest import quiet_trainer
from pipelines import registry


def build(name: str, shape: tuple[int, ...], **kwargs):
    return registry.build("model", {"name": name, **kwargs}, input_shape=shape, num_classes=3)


@pytest.mark.parametrize("name", ["mlp", "convnet", "mini_xception"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 64, 64)])
def test_logits_for_every_input_size(name: str, shape: tuple[int, ...]) -> None:
    model = build(name, shape)
    model.eval()
    assert model(torch.rand(2, *shape)).shape == (2, 3)


def test_convnet_valid_padding_like_the_book_on_28x28() -> None:
    model = build("convnet", (1, 28, 28), padding="valid")
    flat = model.net[-1].in_features
    assert flat == 3 * 3 * 128, "28 -> 26 -> 13 -> 11 -> 5 -> 3, as in the book"


def test_separable_convolutions_need_fewer_weights() -> None:
    def count(model) -> int:
        return sum(p.numel() for p in model.parameters())

    separable = build("mini_xception", (3, 32, 32), separable=True)
    plain = build("mini_xception", (3, 32, 32), separable=False)
    assert count(separable) < count(plain) / 3


def test_capacity_and_dropout_knobs() -> None:
    small = build("mlp", (1, 8, 8), hidden_units=[16])
    big = build("mlp", (1, 8, 8), hidden_units=[256, 256], dropout=0.5)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in big.parameters())
    assert any(isinstance(m, torch.nn.Dropout) for m in big.modules())
    assert not any(isinstance(m, torch.nn.Dropout) for m in small.modules())


@pytest.mark.parametrize("model", ["mlp", "convnet", "mini_xception"])
def test_width_scales_every_model_for_the_capacity_variants(model: str) -> None:
    def count(width: float) -> int:
        built = build(model, (1, 8, 8), width=width)
        out = built(torch.zeros(2, 1, 8, 8))
        assert out.shape == (2, 3)
        return sum(p.numel() for p in built.parameters())

    assert count(0.125) < count(1.0) < count(4.0)


@pytest.mark.parametrize("penalty", ["l1", "l2"])
def test_weight_penalty_is_added_to_the_training_loss(penalty: str) -> None:
    torch.manual_seed(0)
    plain = build("mlp", (1, 8, 8))
    torch.manual_seed(0)
    penalised = build("mlp", (1, 8, 8), **{penalty: 0.01})
    batch = (torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 0]))
    penalised.log = plain.log = lambda *a, **k: None  # no trainer attached
    difference = penalised.training_step(batch, 0) - plain.training_step(batch, 0)
    weights = [p for p in penalised.parameters() if p.ndim > 1]
    expected = sum((w.abs().sum() if penalty == "l1" else w.pow(2).sum()) * 0.01 for w in weights)
    assert torch.isclose(difference, expected, rtol=1e-4)


def test_unknown_optimizer_is_named() -> None:
    from pipelines.errors import ConfigValueError

    with pytest.raises(ConfigValueError, match="Did you mean 'adam'"):
        build("mlp", (4,), optimizer="adm")


def test_epoch_means_are_batch_weighted_per_metric(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two accumulations per batch (as char_lstm's bpc after loss/acc) do not dilute means."""
    from plugins.models.dense import MLP

    model = MLP((4,), num_classes=2)
    logged: dict[str, float] = {}
    monkeypatch.setattr(model, "log", lambda name, value, **_: logged.update({name: float(value)}))
    for loss, size in ((1.0, 3), (3.0, 1)):
        model.accumulate("val", {"loss": torch.tensor(loss), "acc": torch.tensor(0.5)}, size)
        model.accumulate("val", {"bpc": torch.tensor(loss * 2)}, size)
    model.log_epoch_means("val")
    assert logged == {"val/loss": 1.5, "val/acc": 0.5, "val/bpc": 3.0}
    model.log_epoch_means("val")  # the next epoch starts empty: nothing to log twice
    assert len(logged) == 3


def _train_one_epoch(model, **trainer_kwargs):
    """The trainer and the weights after one seeded epoch (6 batches) on random images."""
    from pipelines.tensor_loader import TensorBatches

    generator = torch.Generator().manual_seed(0)
    inputs, targets = torch.rand(96, 1, 8, 8, generator=generator), torch.arange(96) % 3
    trainer = quiet_trainer(**trainer_kwargs)
    batches = TensorBatches(inputs, targets, batch_size=16, shuffle=True, seed=1)
    trainer.fit(model, train_dataloaders=batches)
    return trainer, {name: value.clone() for name, value in model.state_dict().items()}


def test_own_optimization_step_matches_lightnings_automatic_one() -> None:
    """The fast path (manual optimization, used when nothing needs Lightning's) takes the
    same steps as Lightning's automatic optimization, with dropout and an L2 penalty."""
    from plugins.models.dense import MLP

    class AutomaticMLP(MLP):
        # overriding the step hands optimization back to Lightning
        def training_step(self, batch, batch_idx):
            return super().training_step(batch, batch_idx)

    settings = {"hidden_units": [32], "dropout": 0.2, "l2": 0.01, "optimizer": "adam"}
    torch.manual_seed(3)
    fast = MLP((1, 8, 8), num_classes=3, **settings)
    torch.manual_seed(3)
    automatic = AutomaticMLP((1, 8, 8), num_classes=3, **settings)
    torch.manual_seed(4)
    fast_trainer, fast_weights = _train_one_epoch(fast)
    torch.manual_seed(4)
    automatic_trainer, automatic_weights = _train_one_epoch(automatic)
    assert fast.automatic_optimization is False
    assert automatic.automatic_optimization is True
    assert fast._lean_step is True  # no hook to dispatch: plain backward and step
    assert fast_trainer.global_step == automatic_trainer.global_step == 6
    for name, value in fast_weights.items():
        torch.testing.assert_close(value, automatic_weights[name], msg=name)


def test_a_callback_that_inspects_gradients_still_gets_its_hooks() -> None:
    """A callback overriding a backward/step hook turns the lean step off: it is called
    every step, and the weights are the lean step's."""
    import lightning as L

    from plugins.models.dense import MLP

    class GradientNorms(L.Callback):
        def __init__(self) -> None:
            self.norms: list[float] = []

        def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
            grads = [p.grad.norm() for p in pl_module.parameters() if p.grad is not None]
            self.norms.append(float(torch.stack(grads).norm()))

    settings = {"hidden_units": [16], "optimizer": "adam"}
    torch.manual_seed(5)
    lean = MLP((1, 8, 8), num_classes=3, **settings)
    torch.manual_seed(5)
    hooked = MLP((1, 8, 8), num_classes=3, **settings)
    norms = GradientNorms()
    torch.manual_seed(6)
    _, lean_weights = _train_one_epoch(lean)
    torch.manual_seed(6)
    trainer, hooked_weights = _train_one_epoch(hooked, callbacks=[norms])
    assert lean._lean_step is True and hooked._lean_step is False
    assert len(norms.norms) == trainer.global_step == 6 and all(n > 0 for n in norms.norms)
    for name, value in lean_weights.items():
        torch.testing.assert_close(value, hooked_weights[name], msg=name)


@pytest.mark.parametrize(
    ("setting", "steps"), [({"gradient_clip_val": 0.5}, 6), ({"accumulate_grad_batches": 2}, 3)]
)
def test_gradient_clipping_and_accumulation_use_lightnings_optimization(
    setting: dict, steps: int
) -> None:
    """Both are automatic-only in Lightning: with them set, the model lets Lightning step."""
    from plugins.models.dense import MLP

    torch.manual_seed(0)
    model = MLP((1, 8, 8), num_classes=3, hidden_units=[8])
    before = model.net[1].weight.clone()
    trainer, _ = _train_one_epoch(model, **setting)
    assert model.automatic_optimization is True
    assert trainer.global_step == steps
    assert not torch.equal(before, model.net[1].weight)


@pytest.mark.parametrize("model", ["convnet", "mini_xception"])
def test_image_models_refuse_non_image_data_before_building_layers(model: str) -> None:
    from pipelines import registry
    from pipelines.errors import ConfigValueError

    with pytest.raises(ConfigValueError, match=r"works on images .* shape \(20000,\)"):
        registry.load("model", model)(input_shape=(20000,), num_classes=2)
