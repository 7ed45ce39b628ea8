"""The Keras defaults the book's figures rest on: what each layer starts with (``model.init``)
and the optimizer the book presets build (``model.optimizer_args``)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn

from conftest import run_cli
from pipelines import registry
from pipelines.config import config_dir, group_options
from pipelines.errors import ConfigValueError
from plugins.models.optimizers import KerasRMSprop

BOOK_PRESETS = [name for name in group_options("experiment") if name.startswith("book_")]
#: the shapes a preset's data gives its model (the presets' own data needs files)
SHAPES = {
    "mnist": {"input_shape": (1, 28, 28), "num_classes": 10},
    "cifar10": {"input_shape": (3, 32, 32), "num_classes": 1},
    "image_folder": {"input_shape": (3, 180, 180), "num_classes": 2},
    "imdb": {"input_shape": (600,), "num_classes": 2, "vocab_size": 20000},
    "reuters": {"input_shape": (10000,), "num_classes": 46},
    "housing": {"input_shape": (13,), "num_classes": 1, "task": "regression"},
    "timeseries": {"input_shape": (120, 14), "num_classes": 1, "task": "regression"},
    "text_corpus": {"input_shape": (60,), "num_classes": 7, "charset": list("abcdefg")},
}


def _preset_model_node(experiment: str) -> tuple[dict, str]:
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={experiment}"])
    config = OmegaConf.to_container(cfg, resolve=True)
    return config["model"], config["data"]["name"]


def _glorot_limit(weight: torch.Tensor) -> float:
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(weight)
    return math.sqrt(6.0 / (fan_in + fan_out))


def build(name: str, shape: str = "mnist", **kwargs) -> nn.Module:
    return registry.build("model", {"name": name, **kwargs}, **SHAPES[shape])


# -- the book presets' optimizer ---------------------------------------------------------------


@pytest.mark.parametrize("experiment", BOOK_PRESETS)
def test_book_presets_build_keras_optimizer_settings(experiment: str) -> None:
    """Keras' ``rmsprop`` (rho 0.9, epsilon 1e-7 inside the square root); its ``adam``: 1e-7."""
    node, data = _preset_model_node(experiment)
    # the architecture, not the downloads: ImageNet weights, GloVe vectors
    node = {**node, "weights": None} if node["name"] == "transfer" else node
    node = {**node, "word_vectors": None} if "word_vectors" in node else node
    model = registry.build("model", node, **SHAPES[data])
    optimizers = model.configure_optimizers()
    for optimizer in optimizers if isinstance(optimizers, list) else [optimizers]:
        (group,) = optimizer.param_groups
        assert group["eps"] == 1e-7, experiment
        if isinstance(optimizer, KerasRMSprop):
            assert group["rho"] == 0.9, experiment
        else:
            assert type(optimizer) is torch.optim.Adam, experiment
            assert group["betas"] == (0.9, 0.999), experiment


def _keras_rmsprop_reference(weights, grads, lr=1e-3, rho=0.9, eps=1e-7):
    """keras/src/optimizers/rmsprop.py's update_step, in numpy."""
    velocity = np.zeros_like(weights)
    for grad in grads:
        velocity = rho * velocity + (1 - rho) * grad**2
        weights = weights - lr * grad / np.sqrt(velocity + eps)
    return weights


def test_keras_rmsprop_takes_keras_steps_and_torchs_does_not() -> None:
    rng = np.random.default_rng(0)
    start = rng.normal(size=(3, 4))
    grads = [rng.normal(size=(3, 4)) for _ in range(6)]
    for grad in grads:  # the first row's gradients are tiny, as a rare word's input weights'
        grad[0] *= 1e-6
    expected = _keras_rmsprop_reference(start, grads)
    results = {}
    for name, optimizer_class, args in (
        ("keras", KerasRMSprop, {}),
        ("torch", torch.optim.RMSprop, {"alpha": 0.9, "eps": 1e-7}),
    ):
        weight = torch.nn.Parameter(torch.tensor(start))
        optimizer = optimizer_class([weight], lr=1e-3, **args)
        for grad in grads:
            weight.grad = torch.tensor(grad)
            optimizer.step()
        results[name] = weight.detach().numpy()
    assert np.allclose(results["keras"] - start, expected - start, rtol=1e-6, atol=1e-12)
    # torch's epsilon outside the square root: steps many times larger on tiny gradients
    torch_steps, keras_steps = np.abs(results["torch"] - start), np.abs(expected - start)
    assert (torch_steps[0] > 100 * keras_steps[0]).all()
    assert np.allclose(torch_steps[1:], keras_steps[1:], rtol=0.01)


def test_a_model_outside_the_presets_keeps_torchs_rmsprop() -> None:
    """Keras' RMSprop numbers cost the dense net 0.87 points (benchmarks/keras_defaults.py):
    the book presets' setting, not everyone's."""
    (group,) = build("mlp").configure_optimizers().param_groups
    assert (group["alpha"], group["eps"]) == (0.99, 1e-8)


def test_a_misspelt_optimizer_argument_names_the_fix() -> None:
    with pytest.raises(ConfigValueError, match=r"has 'alhpa'.*Did you mean 'alpha'"):
        build("mlp", optimizer_args={"alhpa": 0.9})
    with pytest.raises(ConfigValueError, match=r"set `model.lr`"):
        build("mlp", optimizer_args={"lr": 0.1})


def test_a_misspelt_optimizer_argument_on_the_command_line_is_one_paragraph(
    tmp_path: Path,
) -> None:
    result = run_cli(
        [
            "data=digits",
            "model=mlp",
            "trainer.max_epochs=1",
            "+model.optimizer_args.alhpa=0.9",
        ],
        tmp_path,
    )
    assert result.returncode != 0
    assert "Did you mean 'alpha'" in result.output
    assert "Traceback" not in result.output


# -- what the layers start with ----------------------------------------------------------------


def test_dense_and_conv_layers_start_glorot_uniform_with_zero_biases() -> None:
    for model in (build("mlp", hidden_units=[512]), build("convnet", filters=[32, 64])):
        layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        assert layers
        for layer in layers:
            assert torch.count_nonzero(layer.bias) == 0
            limit = _glorot_limit(layer.weight)
            assert layer.weight.abs().max() <= limit
            # uniform on [-limit, limit]: its standard deviation is limit / sqrt(3)
            assert layer.weight.std().item() == pytest.approx(limit / math.sqrt(3), rel=0.1)


def test_init_torch_keeps_pytorchs_own_initialisation() -> None:
    model = build("mlp", hidden_units=[512], init="torch")
    first = model.net[1]
    assert torch.count_nonzero(first.bias) > 0
    # Kaiming-uniform with a=sqrt(5): bound 1/sqrt(fan_in)
    assert first.weight.abs().max() <= 1 / math.sqrt(784)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_recurrent_layers_start_as_keras_does(name: str) -> None:
    model = build(name, "imdb", embedding_dim=16, units=8)
    (rnn,) = [m for m in model.modules() if isinstance(m, nn.RNNBase)]
    hh = rnn.weight_hh_l0
    assert torch.allclose(hh.T @ hh, torch.eye(8), atol=1e-5)  # orthogonal
    assert rnn.weight_ih_l0.abs().max() <= _glorot_limit(rnn.weight_ih_l0)
    assert torch.count_nonzero(rnn.bias_hh_l0) == 0
    if name == "lstm":  # unit_forget_bias: the forget gate (second quarter) starts at 1
        expected = torch.zeros(32)
        expected[8:16] = 1.0
        assert torch.equal(rnn.bias_ih_l0.detach(), expected)
    else:
        assert torch.count_nonzero(rnn.bias_ih_l0) == 0
    embedding = next(m for m in model.modules() if isinstance(m, nn.Embedding))
    assert embedding.weight.abs().max() <= 0.05
    assert torch.count_nonzero(embedding.weight[0]) == 0  # the padding row


def test_normalisation_layers_take_keras_settings() -> None:
    norms = [
        m for m in build("mini_xception").modules() if isinstance(m, nn.BatchNorm2d)
    ]  # fmt: skip
    assert norms and all(m.momentum == 0.01 and m.eps == 1e-3 for m in norms)
    torch_norms = [
        m for m in build("mini_xception", init="torch").modules() if isinstance(m, nn.BatchNorm2d)
    ]
    assert all(m.momentum == 0.1 and m.eps == 1e-5 for m in torch_norms)
    transformer = build("transformer", "imdb", embed_dim=16, num_heads=2, dense_dim=8)
    layer_norms = [m for m in transformer.modules() if isinstance(m, nn.LayerNorm)]
    assert layer_norms and all(m.eps == 1e-3 for m in layer_norms)


def test_pretrained_parts_are_left_as_they_are(tmp_path: Path) -> None:
    from test_word_vectors import VECTORS, write_glove
    from test_word_vectors import build as build_with_vectors

    glove = write_glove(tmp_path / "g.txt")
    model = build_with_vectors("lstm", glove)
    embedding = next(m for m in model.modules() if isinstance(m, nn.Embedding))
    assert torch.equal(embedding.weight[2], torch.tensor(VECTORS["the"]))
    assert torch.count_nonzero(embedding.weight[4]) == 0  # a word the file lacks stays zero
    (rnn,) = [m for m in model.modules() if isinstance(m, nn.LSTM)]
    assert rnn.bias_ih_l0[rnn.hidden_size] == 1.0  # the rest is still initialised
