"""A model too big for the data's inputs, refused when it is built, naming the key to change.

``model=convnet model.padding=valid model.kernel_size=9`` on the 8x8 digits ended in torch's
traceback ("Kernel size can't be greater than actual input size"), and other models met the
same wall only at the first training step. Every model is built the same way
(:meth:`pipelines.context.RunContext.build_model`), so it is checked there, for every model
plugin, built-in or third-party: one dry forward pass on a small batch of the data's shape,
before any training. Torch's size errors, from the build (convnet measures its flattened
size with a dummy pass) or from that pass, become one paragraph that names the key, the
input size and a value that fits, found by building the model again with smaller values.

The data's shape is known only once the data is loaded (the ``prepare`` stage), so the run
is open by then: it is marked FAILED with the message, as other refusals of ``prepare`` are.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

from pipelines.errors import ConfigValueError

log = logging.getLogger(__name__)

#: torch's words for a layer whose window (kernel, pooling) is larger than what reaches it
TOO_SMALL = (
    "Kernel size can't be greater than actual input size",
    "Output size is too small",
    "Invalid computed output size",
)
#: torch's words for a layer of floats (a ``Linear``, a convolution) given integer token ids
FLOAT_LAYER_ON_IDS = (
    "must have the same dtype",
    "expected scalar type",
    "Expected object of scalar type",
    "not implemented for 'Long'",
)
#: model keys whose smaller values make every layer's window smaller, tried in this order
WINDOW_KEYS = ("kernel_size", "kernel_sizes", "stem_kernel", "pool_size")
#: keys that decide how much of the input is left for the last layers, named in the message
SHAPE_KEYS = (*WINDOW_KEYS, "padding", "filters", "sizes")


def build_model_that_fits(
    build: Callable[[Mapping[str, Any]], Any],
    node: Mapping[str, Any],
    data_kwargs: Mapping[str, Any],
    data_name: str,
) -> Any:
    """``build(node)``, checked with a dry forward pass on the data's input shape.

    A size error from torch becomes a :class:`ConfigValueError` naming the key to change
    and a value that fits (:func:`shape_error`); any other error of the dry pass is left to
    training, which reports it as before: the check helps, it never blocks what it does not
    understand (a model whose ``forward`` takes something else than the data, a GAN's latent
    points, is simply not checked).
    """
    try:
        model = build(node)
        dry_forward(model, data_kwargs)
    except RuntimeError as exc:
        if is_too_small(exc):
            raise shape_error(build, node, data_kwargs, data_name, exc) from None
        if takes_no_token_ids(exc, data_kwargs):
            raise token_ids_error(node, data_kwargs, data_name, exc) from None
        raise
    return model


def is_too_small(error: BaseException) -> bool:
    """Whether ``error`` is torch refusing a kernel or pooling window larger than its input."""
    return isinstance(error, RuntimeError) and any(words in str(error) for words in TOO_SMALL)


def takes_no_token_ids(error: BaseException, data_kwargs: Mapping[str, Any]) -> bool:
    """Whether ``error`` is a layer of floats refusing the token ids the data gives
    (``data=text_corpus`` with the default ``model=mlp``: torch's "mat1 and mat2 must have
    the same dtype" at the first training step)."""
    return (
        isinstance(error, RuntimeError)
        and bool(data_kwargs.get("vocab_size"))
        and any(words in str(error) for words in FLOAT_LAYER_ON_IDS)
    )


def token_ids_error(
    node: Mapping[str, Any], data_kwargs: Mapping[str, Any], data_name: str, error: RuntimeError
) -> ConfigValueError:
    """One paragraph: the model takes vectors of numbers, the data gives token ids; the
    installed models that embed tokens (those taking a ``vocab_size``) are the fix."""
    model = str(node.get("name", "the model"))
    torch_says = str(error).strip().splitlines()[0]
    embedding = models_taking("vocab_size")
    fix = (
        f"Use a model that embeds tokens ({', '.join(embedding)}), e.g. `model={embedding[0]}`"
        if embedding
        else "Use a model that embeds tokens (one taking a `vocab_size`)"
    )
    return ConfigValueError(
        f"Model '{model}' takes vectors of numbers, but data '{data_name}' gives token ids "
        f"({describe_inputs(data_kwargs)}, a vocabulary of {data_kwargs['vocab_size']}), "
        f"which its first layer cannot multiply (torch: {torch_says}). {fix}, or data that "
        "gives vectors (e.g. `data=imdb`, whose words are multi-hot for such a model)."
    )


def models_taking(argument: str) -> list[str]:
    """The installed model plugins whose constructor takes ``argument``, by name; a plugin
    that fails to import is left out (this only words an error message)."""
    from pipelines import registry
    from pipelines.checks.validation import parameters_of

    names = []
    for name in registry.names("model"):
        try:
            takes = argument in parameters_of(registry.load("model", name))
        except Exception:  # a broken third-party plugin: its own run reports it
            continue
        if takes:
            names.append(name)
    return names


def dry_forward(model: Any, data_kwargs: Mapping[str, Any]) -> None:
    """One forward pass on a batch of two of the data's shape, leaving no trace.

    Eval mode and no gradient, so no batch-norm statistic moves; torch's CPU random state is
    restored, so a seeded run trains exactly as it did without the check; every module's
    own training flag is put back (a frozen backbone stays in eval mode). Only torch's size
    errors (:func:`is_too_small`) and a float layer refusing token ids
    (:func:`takes_no_token_ids`) come out of it; anything else is the training's to report.
    """
    inputs = dummy_batch(data_kwargs)
    if inputs is None or not isinstance(model, torch.nn.Module):
        return
    modes = {module: module.training for module in model.modules()}
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            model.eval()
            model(inputs.to(_device_of(model)))
    except RuntimeError as exc:
        if is_too_small(exc) or takes_no_token_ids(exc, data_kwargs):
            raise
        log.debug("dry forward pass skipped: %s", exc)
    except Exception as exc:  # a forward that takes other inputs (a GAN's latent points)
        log.debug("dry forward pass skipped: %s", exc)
    finally:
        for module, training in modes.items():
            module.training = training


def dummy_batch(data_kwargs: Mapping[str, Any]) -> torch.Tensor | None:
    """Two inputs of the data's ``input_shape``: token ids (1, a real token, not padding)
    where the data gives a ``vocab_size``, else zeros; None without an ``input_shape``."""
    shape = data_kwargs.get("input_shape")
    if not shape:
        return None
    size = (2, *(int(dim) for dim in shape))
    if data_kwargs.get("vocab_size"):
        return torch.ones(size, dtype=torch.long)
    return torch.zeros(size)


def _device_of(model: torch.nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def shape_error(
    build: Callable[[Mapping[str, Any]], Any],
    node: Mapping[str, Any],
    data_kwargs: Mapping[str, Any],
    data_name: str,
    error: RuntimeError,
) -> ConfigValueError:
    """One paragraph: which key (where torch's kernel size is a configured value), the
    data's input size, torch's own words, and the values that were tried and fit."""
    model = str(node.get("name", "the model"))
    inputs = describe_inputs(data_kwargs)
    torch_says = str(error).strip().splitlines()[0]
    key = responsible_key(node, error)
    if key is not None:
        head = (
            f"'model.{key}' is {_text(node[key])}, too large for the {inputs} of data "
            f"'{data_name}': a layer of model '{model}' gets less than its kernel (torch: "
            f"{torch_says})."
        )
    else:
        keys = ", ".join(f"model.{name}" for name in SHAPE_KEYS if name in node)
        head = (
            f"Model '{model}' shrinks the {inputs} of data '{data_name}' to nothing before its "
            f"last layer (torch: {torch_says}): its layers"
            f"{f' (as {keys} set them)' if keys else ''} need larger inputs."
        )
    fixes = fitting_values(build, node, data_kwargs, first=key)
    if fixes:
        examples = " or ".join(f"`model.{name}={_text(value)}`" for name, value in fixes)
        advice = f"Set a value that fits, e.g. {examples}, on the command line or in the model"
        advice += " config file."
    else:
        advice = (
            "Use data with larger inputs, or a model whose kernels and pooling take less "
            "of them (smaller kernels, padding=same, fewer layers)."
        )
    return ConfigValueError(f"{head} {advice}")


def describe_inputs(data_kwargs: Mapping[str, Any]) -> str:
    """The data's input size as a user knows it: ``8x8 images``, ``sequences of 120 steps``."""
    shape = tuple(int(dim) for dim in data_kwargs.get("input_shape") or ())
    if len(shape) == 3:
        return f"{shape[1]}x{shape[2]} images"
    if len(shape) == 2:
        return f"sequences of {shape[0]} steps"
    if len(shape) == 1 and data_kwargs.get("vocab_size"):
        return f"sequences of {shape[0]} tokens"
    if len(shape) == 1:
        return f"inputs of {shape[0]} values"
    return f"inputs of shape {shape}"


def responsible_key(node: Mapping[str, Any], error: BaseException) -> str | None:
    """The window key whose value is the kernel size torch names ("Kernel size: (9 x 9)"),
    or None (a pooling error, or a kernel the model fixes itself)."""
    text = str(error)
    marker = "Kernel size: ("
    if marker not in text:
        return None
    sizes = text.split(marker, 1)[1].split(")", 1)[0]
    kernel = max(
        (int(part) for part in sizes.replace("x", " ").split() if part.isdigit()), default=0
    )
    for key in WINDOW_KEYS:
        if kernel and kernel in _whole_numbers(node.get(key)):
            return key
    return None


def fitting_values(
    build: Callable[[Mapping[str, Any]], Any],
    node: Mapping[str, Any],
    data_kwargs: Mapping[str, Any],
    first: str | None = None,
) -> list[tuple[str, Any]]:
    """Values that fit, each found by building the model again with only that key changed:
    for each window key the largest smaller value (a list's entries capped at it), and
    ``padding: same`` where the model pads ``valid``. ``first`` (the key torch named) leads."""
    keys = sorted(
        (key for key in WINDOW_KEYS if _whole_numbers(node.get(key))), key=lambda k: k != first
    )
    found: list[tuple[str, Any]] = []
    for key in keys:
        value = _largest_fitting(build, node, data_kwargs, key)
        if value is not None:
            found.append((key, value))
    if node.get("padding") == "valid" and _fits(build, {**node, "padding": "same"}, data_kwargs):
        found.append(("padding", "same"))
    return found


def _largest_fitting(
    build: Callable[[Mapping[str, Any]], Any],
    node: Mapping[str, Any],
    data_kwargs: Mapping[str, Any],
    key: str,
) -> Any:
    """The ``key`` value closest to the configured one that fits (bisection: a smaller window
    only leaves more of the input), or None if even 1 does not fit."""
    value = node[key]

    def capped(limit: int) -> Any:
        if isinstance(value, Sequence) and not isinstance(value, str):
            return [min(int(item), limit) for item in value]
        return limit

    low, high, best = 1, max(_whole_numbers(value)) - 1, None
    while low <= high:
        middle = (low + high) // 2
        if _fits(build, {**node, key: capped(middle)}, data_kwargs):
            best, low = capped(middle), middle + 1
        else:
            high = middle - 1
    return best


def _fits(
    build: Callable[[Mapping[str, Any]], Any],
    node: Mapping[str, Any],
    data_kwargs: Mapping[str, Any],
) -> bool:
    """Whether the model of ``node`` builds and takes the data's shape without a size error."""
    try:
        with _quiet():
            dry_forward(build(node), data_kwargs)
    except Exception as exc:  # too small, or a value the plugin refuses for its own reasons
        log.debug("trial model %s does not fit: %s", node, exc)
        return False
    return True


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Trial builds say nothing: a warning torch gives once per build is the real model's."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _whole_numbers(value: Any) -> list[int]:
    """The whole numbers of a window value (one number, or a list of them); [] otherwise."""
    items = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    return [int(item) for item in items if isinstance(item, int) and not isinstance(item, bool)]


def _text(value: Any) -> str:
    """A value as a Hydra override writes it: ``[8,8,6]`` (no spaces, so no quotes)."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "[" + ",".join(_text(item) for item in value) + "]"
    return str(value)
