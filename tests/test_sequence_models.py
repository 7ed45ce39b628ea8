"""Sequence models (text and timeseries): inputs, masking, recurrent dropout, regression, CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

from conftest import quiet_trainer, run_cli
from pipelines import registry
from pipelines.errors import ConfigValueError

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"
SEQUENCE_MODELS = ["embedding_dense", "simple_rnn", "lstm", "gru", "conv1d", "transformer"]
RECURRENT = ["simple_rnn", "lstm", "gru"]
VOCAB = 50


def build(name: str, shape: tuple[int, ...], vocab: int | None = None, **kwargs):
    context = {"input_shape": shape, "num_classes": 3}
    if vocab is not None:
        context["vocab_size"] = vocab
    # small sizes keep the tests fast; the architecture is the same
    defaults = {"embed_dim": 16, "dense_dim": 8} if name == "transformer" else {}
    if name in [*RECURRENT, "conv1d"]:
        defaults["embedding_dim"] = 8
    return registry.build("model", {"name": name, **defaults, **kwargs}, **context)


def token_batch(n: int = 4, steps: int = 10, seed: int = 0) -> torch.Tensor:
    """Right-padded token ids: row i has a different number of real tokens (>= 1)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (n, steps), generator=generator)
    lengths = torch.tensor([steps, 1, steps // 2, steps - 2])[:n]
    ids[torch.arange(steps)[None, :] >= lengths[:, None]] = 0
    return ids


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
@pytest.mark.parametrize(
    ("shape", "vocab", "batch"),
    [
        ((10,), VOCAB, lambda: token_batch()),
        ((10, 3), None, lambda: torch.randn(4, 10, 3)),
        ((1, 8, 8), None, lambda: torch.rand(4, 1, 8, 8)),
    ],
    ids=["tokens", "float-sequence", "image-rows"],
)
def test_logits_for_tokens_sequences_and_images(name, shape, vocab, batch) -> None:
    model = build(name, shape, vocab)
    model.train()
    model(batch()).sum().backward()
    model.eval()
    assert model(batch()).shape == (4, 3)


@pytest.mark.parametrize("shape", [(20,), (1, 8, 8)])
def test_bag_of_words_is_the_books_dense_model(shape: tuple[int, ...]) -> None:
    model = registry.build("model", {"name": "bow_dense"}, input_shape=shape, num_classes=2)
    linears = [m for m in model.net if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [16, 2]
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in model.net)
    assert model(torch.rand(3, *shape)).shape == (3, 2)
    with pytest.raises(ConfigValueError, match="bags of words"):
        model(torch.ones(3, *shape, dtype=torch.long))


@pytest.mark.parametrize("name", [*RECURRENT, "transformer", "embedding_dense"])
def test_appending_padding_does_not_change_the_output(name: str) -> None:
    extra = {"bidirectional": True, "num_layers": 2} if name in RECURRENT else {}
    torch.manual_seed(0)
    model = build(name, (15,), VOCAB, **extra).eval()
    ids = token_batch(steps=10)
    longer = torch.cat([ids, torch.zeros(4, 5, dtype=torch.long)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(ids), model(longer), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", RECURRENT)
def test_left_padding_reads_like_right_padding(name: str) -> None:
    model = build(name, (10,), VOCAB, bidirectional=True).eval()
    right = token_batch(steps=10)
    left = torch.stack([torch.cat([row[row == 0], row[row != 0]]) for row in right])
    with torch.no_grad():
        torch.testing.assert_close(model(left), model(right))


@pytest.mark.parametrize("name", RECURRENT)
def test_bidirectional_doubles_the_state(name: str) -> None:
    one = build(name, (1, 8, 8), units=6)
    two = build(name, (1, 8, 8), units=6, bidirectional=True)
    assert one.net.head[-1].in_features == 6
    assert two.net.head[-1].in_features == 12
    assert two(torch.rand(2, 1, 8, 8)).shape == (2, 3)


def test_stacked_layers_and_width() -> None:
    model = build("lstm", (10, 3), units=8, num_layers=3, dropout=0.2, width=2.0)
    assert model.net.rnn.num_layers == 3 and model.net.rnn.hidden_size == 16
    assert model.net.rnn.dropout == 0.2
    assert model(torch.randn(2, 10, 3)).shape == (2, 3)


@pytest.mark.parametrize("name", RECURRENT)
def test_recurrent_dropout_only_in_training(name: str) -> None:
    torch.manual_seed(0)
    model = build(name, (10, 3), recurrent_dropout=0.5)
    x = torch.randn(4, 10, 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    first, second = model(x), model(x)
    assert not torch.allclose(first, second), "a new weight mask per forward pass in training"
    first.sum().backward()
    assert model.net.rnn.weight_hh_l0.grad.abs().sum() > 0, "gradients reach the real weights"
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} changed by the dropout"
    model.eval()
    with torch.no_grad():
        plain = build(name, (10, 3))
        plain.load_state_dict(model.state_dict())
        torch.testing.assert_close(model(x), plain.eval()(x))
        torch.testing.assert_close(model(x), model(x))


def test_conv1d_never_pools_a_short_sequence_to_nothing() -> None:
    model = build("conv1d", (3, 5), filters=[4, 4, 4], pool_size=5, padding="valid")
    assert model(torch.randn(2, 3, 5)).shape == (2, 3)
    model = build("conv1d", (1, 8, 8), filters=[4, 4, 4], pool_size=5)
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 3)


def test_token_model_given_floats_says_so() -> None:
    model = build("lstm", (10,), VOCAB)
    with pytest.raises(ConfigValueError, match="token ids"):
        model(torch.rand(2, 10))
    with pytest.raises(ConfigValueError, match=r"multiple of 'model\.num_heads'"):
        build("transformer", (10,), VOCAB, embed_dim=15, num_heads=2)


@pytest.mark.parametrize("name", [*SEQUENCE_MODELS, "bow_dense"])
def test_every_config_file_is_accepted_by_its_model(name: str) -> None:
    node = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    assert node["name"] == name
    for implied in ("vocab_size", "input_shape", "num_classes", "task"):
        assert implied not in node, f"{implied} comes from the data"
    _, kwargs = registry.check("model", node, input_shape=(1, 8, 8), num_classes=10)
    assert set(node) - {"name"} <= set(kwargs)


def test_regression_outputs_one_value_and_logs_mae() -> None:
    torch.manual_seed(0)
    model = registry.build(
        "model",
        {"name": "gru", "units": 4},
        input_shape=(12, 2),
        num_classes=1,
        task="regression",
        target_scale=2.0,
    )
    x, y = torch.randn(16, 12, 2), torch.randn(16)
    assert model(x).shape == (16, 1)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    trainer = quiet_trainer(num_sanity_val_steps=0)
    trainer.fit(model, loader, loader)
    metrics = trainer.callback_metrics
    assert {"train/loss", "val/loss", "val/mae"} <= set(metrics)
    assert float(metrics["val/mae"]) > 0


def test_sequence_models_run_on_the_default_digits(workdir: Path) -> None:
    """``python -m pipelines.run model=<m> trainer.max_epochs=1 tracking=none`` for each model,
    as one sweep: one process instead of five start-ups (a failed job fails the command)."""
    models = ["lstm", "gru", "simple_rnn", "conv1d", "transformer"]
    result = run_cli(
        [
            "-m",
            f"model={','.join(models)}",
            "trainer.max_epochs=1",
            "tracking=none",
            "+trainer.limit_train_batches=4",
            "+trainer.limit_val_batches=2",
            "+trainer.limit_test_batches=2",
        ],
        cwd=workdir,
    )
    assert result.returncode == 0, result.output
    for model in models:
        assert f"pipelines: {model} on digits (classify) finished" in result.output
