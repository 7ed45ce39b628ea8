"""Built-in models: shapes on the book's input sizes, penalties, capacity knobs."""

from __future__ import annotations

import pytest
import torch

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


@pytest.mark.parametrize("model", ["convnet", "mini_xception"])
def test_image_models_refuse_non_image_data_before_building_layers(model: str) -> None:
    from pipelines import registry
    from pipelines.errors import ConfigValueError

    with pytest.raises(ConfigValueError, match=r"works on images .* shape \(20000,\)"):
        registry.load("model", model)(input_shape=(20000,), num_classes=2)
