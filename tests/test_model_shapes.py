"""A model whose kernels or pooling do not fit the data's inputs is one paragraph when it is
built, naming the key, the input size and a value that fits, never torch's traceback.

``model=convnet model.padding=valid model.kernel_size=9`` on the 8x8 digits ended in
"Kernel size can't be greater than actual input size" from deep inside torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from conftest import run_cli
from pipelines import registry
from pipelines.checks.model_shapes import (
    build_model_that_fits,
    describe_inputs,
    dry_forward,
    dummy_batch,
    is_too_small,
    responsible_key,
)
from pipelines.context import RunContext
from pipelines.errors import ConfigValueError
from pipelines.tracking.tracker import Tracker

DIGITS = {"input_shape": (1, 8, 8), "num_classes": 10}


def _build(data_kwargs: Mapping[str, Any] = DIGITS) -> Any:
    def build(node: Mapping[str, Any]) -> Any:
        return registry.build("model", node, path="model", **data_kwargs)

    return build


def _refusal(node: dict[str, Any], data_kwargs: Mapping[str, Any] = DIGITS) -> str:
    with pytest.raises(ConfigValueError) as err:
        build_model_that_fits(_build(data_kwargs), node, data_kwargs, "digits")
    return str(err.value)


# -- the refusal -----------------------------------------------------------------------------


def test_a_kernel_larger_than_the_images_names_the_key_the_size_and_a_value_that_fits() -> None:
    node = {"name": "convnet", "filters": [4, 8], "kernel_size": 9, "padding": "valid"}
    message = _refusal(node)
    assert message.startswith("'model.kernel_size' is 9, too large for the 8x8 images of data")
    assert "Kernel size can't be greater than actual input size" in message, "torch's words"
    assert "Traceback" not in message and "\n" not in message, "one paragraph"
    # every value it offers builds and runs on the data
    assert "`model.kernel_size=3`" in message and "`model.padding=same`" in message
    for fix in ({"kernel_size": 3}, {"padding": "same"}):
        build_model_that_fits(_build(), {**node, **fix}, DIGITS, "digits")
    with pytest.raises(ConfigValueError):  # 3 is the largest that fits: 4 leaves 8 -> 5 -> 2
        build_model_that_fits(_build(), {**node, "kernel_size": 4}, DIGITS, "digits")


def test_layers_that_shrink_the_images_to_nothing_name_the_keys_that_shape_them() -> None:
    # 8x8, 'valid' 3x3 convolutions and 2x2 pooling: 6, 3, 1, then nothing to pool
    node = {"name": "convnet", "filters": [4, 4, 4], "kernel_size": 3, "padding": "valid"}
    message = _refusal(node)
    assert message.startswith("Model 'convnet' shrinks the 8x8 images of data 'digits'")
    assert "its layers (as model.kernel_size, model.padding, model.filters set them)" in message
    assert "`model.kernel_size=1` or `model.padding=same`" in message


def test_a_model_without_such_keys_is_told_to_use_larger_inputs() -> None:
    """A third-party model (or a backbone: vgg16 pools 8x8 digits to nothing) whose windows
    no key sets: no value to offer, the paragraph says what would fit instead."""

    def build(node: Mapping[str, Any]) -> nn.Module:
        return nn.Sequential(*(nn.MaxPool2d(2) for _ in range(4)))

    with pytest.raises(ConfigValueError) as err:
        build_model_that_fits(build, {"name": "pools"}, DIGITS, "digits")
    message = str(err.value)
    assert message.startswith("Model 'pools' shrinks the 8x8 images of data 'digits' to nothing")
    assert "its layers need larger inputs" in message
    assert message.endswith("(smaller kernels, padding=same, fewer layers).")


def test_a_model_that_fits_is_built_and_left_as_it_was() -> None:
    node = {"name": "convnet", "filters": [4, 8], "kernel_size": 11}  # 'same' pads: it fits
    torch.manual_seed(0)
    model = build_model_that_fits(_build(), node, DIGITS, "digits")
    assert model.training, "the dry pass gives the model back in training mode"
    torch.manual_seed(0)
    plain = registry.build("model", node, path="model", **DIGITS)
    for mine, theirs in zip(model.parameters(), plain.parameters(), strict=True):
        assert torch.equal(mine, theirs)


def test_every_shipped_image_model_fits_the_digits() -> None:
    for name in ("mlp", "convnet", "mini_xception", "vae", "dcgan"):
        build_model_that_fits(_build(), {"name": name}, DIGITS, "digits")


def test_the_run_context_builds_every_model_with_the_check(tmp_path: Path) -> None:
    config = {
        "model": {"name": "convnet", "filters": [4], "kernel_size": 12, "padding": "valid"},
        "data": {"name": "digits"},
    }
    ctx = RunContext(config=config, tracker=Tracker(), output_dir=tmp_path)
    with pytest.raises(ConfigValueError, match=r"'model\.kernel_size' is 12, too large for the"):
        ctx.build_model(**DIGITS)


# -- the dry pass ---------------------------------------------------------------------------


class Sized(nn.Module):
    """A frozen batch-norm backbone (kept in eval mode) before a 5-wide convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.BatchNorm2d(1).eval()
        self.conv = nn.Conv2d(1, 2, 5)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.conv(self.backbone(x)))


def test_the_dry_pass_moves_no_statistic_no_mode_and_no_random_state() -> None:
    model = Sized()
    model.backbone.running_mean.fill_(3.0)
    state = torch.random.get_rng_state()
    dry_forward(model, {"input_shape": (1, 8, 8)})
    assert torch.equal(torch.random.get_rng_state(), state)
    assert model.training and model.conv.training and not model.backbone.training
    assert float(model.backbone.running_mean[0]) == 3.0
    with pytest.raises(RuntimeError, match="Kernel size can't be greater"):
        dry_forward(model, {"input_shape": (1, 4, 4)})
    assert model.training and not model.backbone.training, "restored after an error too"


class Picky(nn.Module):
    """A forward that takes something else than the data (a GAN takes latent points)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise ValueError("not images")


def test_errors_other_than_sizes_are_left_to_training() -> None:
    dry_forward(Picky(), {"input_shape": (1, 8, 8)})
    dry_forward(nn.Linear(3, 1), {"input_shape": (1, 8, 8)})  # mat1 and mat2 shapes: not ours
    dry_forward(object(), DIGITS)  # not a torch module
    dry_forward(Sized(), {})  # no input shape


def test_token_ids_for_data_with_a_vocabulary() -> None:
    ids = dummy_batch({"input_shape": (5,), "vocab_size": 10})
    assert ids is not None and ids.dtype == torch.long and ids.shape == (2, 5)
    assert int(ids.min()) == 1, "a real token, not padding"
    images = dummy_batch(DIGITS)
    assert images is not None and images.dtype == torch.float32 and images.shape == (2, 1, 8, 8)
    assert dummy_batch({}) is None


def test_a_model_of_vectors_on_token_ids_names_the_models_that_embed_them() -> None:
    """`data=text_corpus` with the default mlp ended at the first training step in torch's
    "mat1 and mat2 must have the same dtype, but got Long and Float"."""
    chars = {
        "input_shape": (60,),
        "num_classes": 78,
        "vocab_size": 78,
        "charset": [chr(32 + i) for i in range(78)],
    }
    with pytest.raises(ConfigValueError) as err:
        build_model_that_fits(_build(chars), {"name": "mlp"}, chars, "text_corpus")
    message = str(err.value)
    assert message.startswith("Model 'mlp' takes vectors of numbers, but data 'text_corpus'")
    assert "sequences of 60 tokens, a vocabulary of 78" in message and "\n" not in message
    assert "char_lstm" in message and "lstm" in message and "`model=" in message
    for name in ("char_lstm", "lstm"):  # the models it names do take the data
        build_model_that_fits(_build(chars), {"name": name}, chars, "text_corpus")
    # the same layer on vectors of numbers is not refused
    vectors = {"input_shape": (60,), "num_classes": 78}
    build_model_that_fits(_build(vectors), {"name": "mlp"}, vectors, "digits")


def test_describe_inputs_and_the_responsible_key() -> None:
    assert describe_inputs(DIGITS) == "8x8 images"
    assert describe_inputs({"input_shape": (120, 14)}) == "sequences of 120 steps"
    assert describe_inputs({"input_shape": (500,), "vocab_size": 9}) == "sequences of 500 tokens"
    assert describe_inputs({"input_shape": (13,)}) == "inputs of 13 values"
    conv = RuntimeError(
        "Calculated padded input size per channel: (5). Kernel size: (12). Kernel size can't "
        "be greater than actual input size"
    )
    assert is_too_small(conv)
    assert responsible_key({"kernel_sizes": [24, 12, 6], "pool_size": 2}, conv) == "kernel_sizes"
    assert responsible_key({"kernel_size": 3}, conv) is None, "a kernel the model fixes"
    pool = RuntimeError("Given input size: (4x1x1). Calculated output size: (4x0x0). Output ...")
    assert responsible_key({"kernel_size": 3}, pool) is None
    assert not is_too_small(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


# -- the command line ------------------------------------------------------------------------


def test_the_cli_refuses_a_kernel_larger_than_the_images_before_training(workdir: Path) -> None:
    args = ["model=convnet", "model.padding=valid", "model.kernel_size=9", "tracking=none"]
    result = run_cli([*args, "trainer.max_epochs=1"], cwd=workdir)
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output, result.output
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert "'model.kernel_size' is 9, too large for the 8x8 images of data 'digits'" in error
    assert "`model.kernel_size=" in error and "`model.padding=same`" in error
    assert "stage 1:" not in result.output, "refused before the fit stage"
    assert not list(workdir.glob("outputs/**/*.ckpt")), "nothing was trained"
