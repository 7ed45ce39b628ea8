"""Ranges: what a config value must be beyond its type, declared in a plugin's signature.

A range is part of the type, as pydantic reads it: ``Annotated[float, Field(ge=0, lt=1)]``.
A :class:`Range` after the constraint words the refusal, one paragraph naming the key,
what is valid and why, and a valid example. The aliases here carry both, for the keys the
built-in plugins share (``DropoutRate``, ``LearningRate``, ``LayerSizes``, ...); plugins
import them from :mod:`pipelines.api`. ``Seed`` and ``Epochs`` are the engine's too: the
run's ``seed`` and the Lightning ``trainer`` node's epochs (:mod:`pipelines.checks.validation`).
"""

from __future__ import annotations

import collections.abc
import functools
import inspect
import operator
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any

from annotated_types import Predicate
from pydantic import Field

from pipelines.errors import ConfigValueError

#: the pydantic error type of a value outside a :class:`Range`
RANGE_ERROR = "pipelines_range"


@dataclass(frozen=True)
class Range:
    """What to tell a user whose value is outside a key's range: the metadata of an
    ``Annotated`` type, after the constraint itself (pydantic's ``Field(ge=..., lt=...)``,
    an ``annotated_types.Predicate``)::

        DropoutRate = Annotated[float, Field(ge=0, lt=1), Range("at least 0 and below 1", ...)]

    The type is checked first (``model.dropout=abc`` is a wrong type, not a range); a value
    of the right type that the constraints before the ``Range`` refuse gets one paragraph:
    "'model.dropout' must be {valid}, got 1.5: {why}. Set it to such a value, e.g.
    `model.dropout=0.5` ...". In a list type (``tuple[LayerSize, ...]``) the paragraph names
    the key and its whole value. ``None`` is the type's business (``LearningRate | None``:
    "not set").
    """

    #: the valid values, as the message says them: "must be {valid}"
    valid: str
    #: why, in the user's terms: what the key does, and what the refused value would do
    why: str
    #: a valid value for the message's example, where the plugin's default is no help
    example: Any
    #: said after the example where the key takes its value from elsewhere
    note: str = ""
    #: whether the plugin's own default (where valid) makes the better example
    default_example: bool = True

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        """The schema of the constrained type, its refusals reported as this range's."""
        from pydantic_core import PydanticCustomError, ValidationError, core_schema

        def refuse_as_range(value: Any, validate: Callable[[Any], Any]) -> Any:
            try:
                return validate(value)
            except ValidationError:
                raise PydanticCustomError(
                    RANGE_ERROR, "must be {valid}", {"valid": self.valid, "range": self}
                ) from None

        return core_schema.no_info_wrap_validator_function(refuse_as_range, handler(source))


#: numpy's random generators (``np.random.default_rng``, ``seed_everything``) take no other
#: seed; torch takes more, so the narrower range is the one every seed must keep to
SEED_MAX = 2**32 - 1


def _epoch_count(value: int) -> bool:
    return value >= 1 or value == -1


#: a seed numpy takes: the run's ``seed``, and every plugin's (``pipelines.api.Seed``)
Seed = Annotated[
    int,
    Field(ge=0, le=SEED_MAX),
    Range(
        valid=f"a whole number from 0 to {SEED_MAX} (2**32 - 1)",
        why="numpy's random generators, which draw the data split and the shuffling, take "
        "no other seed",
        example=42,
        # data and model nodes take ``${seed}``: the user most likely set the run's seed
        note=" It is the run's `seed` unless set for this node alone: `seed=42` sets both.",
        default_example=False,
    ),
]
#: a number of epochs (or steps): the ``trainer`` node's, and a stage's own
#: (``pipelines.api.Epochs``)
Epochs = Annotated[
    int,
    Predicate(_epoch_count),
    Range(
        valid="at least 1, or -1 for no limit",
        why="at 0 nothing is trained, and the stages after the fit would report an "
        "untrained model's metrics as the run's result; below -1 it means nothing",
        example=10,
    ),
]
#: the search's sampler seed; any value of another type is refused in the same paragraph
SamplerSeed = (
    Annotated[
        int,
        Field(strict=True, ge=0, le=SEED_MAX),
        Range(
            valid=f"a whole number from 0 to {SEED_MAX} (2**32 - 1), or null for another "
            "search each time",
            why="the search's sampler draws every trial's settings from a numpy random "
            "generator, which takes no other seed",
            example=42,
            note=" It is the run's `seed` unless set for the sampler alone: `seed=42` sets both.",
            default_example=False,
        ),
    ]
    | None
)


# -- the aliases plugins use (re-exported by pipelines.api) ----------------------

DropoutRate = Annotated[
    float,
    Field(ge=0, lt=1),
    Range(
        valid="at least 0 and below 1",
        why="it is the fraction of values dropped at random in training; at 1 nothing gets "
        "through, and torch refuses more",
        example=0.5,
    ),
]
"""A dropout rate: from 0 (none) to below 1."""

LearningRate = Annotated[
    float,
    Field(gt=0, allow_inf_nan=False),
    Range(
        valid="a finite number above 0",
        why="it scales every optimizer step: at 0 the weights never change, and below 0 each "
        "step climbs the loss instead of descending it",
        example=0.001,
    ),
]
"""A learning rate, or a factor of one (``lr_factor``): finite, above 0."""

Penalty = Annotated[
    float,
    Field(ge=0, allow_inf_nan=False),
    Range(
        valid="0 or more (0 turns it off)",
        why="it is a weight penalty; a negative one rewards large weights instead of holding "
        "them back",
        example=0.0,
    ),
]
"""A weight penalty (``l1``, ``l2``, ``weight_decay``): 0 or more."""

Width = Annotated[
    float,
    Field(gt=0, allow_inf_nan=False),
    Range(
        valid="a finite number above 0",
        why="it multiplies every layer size (0.5 halves them, 2 doubles them)",
        example=1.0,
    ),
]
"""The capacity multiplier of every layer size (``variant=smaller``/``bigger`` set it)."""

BatchSize = Annotated[
    int,
    Field(ge=1),
    Range(
        valid="at least 1",
        why="it is how many samples make one training step",
        example=32,
    ),
]
"""A data plugin's ``batch_size``: at least 1."""

_LAYER_SIZE = Range(
    valid="a whole number of at least 1 (for a list: every entry)",
    why="it sets the size of a layer (its units, filters, dimensions or kernel), and a layer "
    "of size 0 passes nothing on: the model trains to chance level without a word",
    example=32,
)
LayerSize = Annotated[int, Field(ge=1), _LAYER_SIZE]
"""A layer's size: units, filters, dimensions. At least 1."""
LayerSizes = tuple[LayerSize, ...]
"""One size per layer, each at least 1."""
KernelSize = Annotated[int, Field(ge=1), replace(_LAYER_SIZE, example=3)]
"""A convolution's kernel size. At least 1."""
KernelSizes = tuple[KernelSize, ...]
"""One kernel size per convolution, each at least 1."""
PoolSize = Annotated[int, Field(ge=1), replace(_LAYER_SIZE, example=2)]
"""A pooling window. At least 1."""
HeadCount = Annotated[int, Field(ge=1), replace(_LAYER_SIZE, example=2)]
"""A number of attention heads. At least 1."""
LayerCount = Annotated[int, Field(ge=1), replace(_LAYER_SIZE, example=1)]
"""A number of stacked layers. At least 1."""

_HIDDEN_UNITS = Range(
    valid="whole numbers of at least 1 ([] for no hidden layer; where it is one number, as "
    "in model=transfer, 0 means none)",
    why="each is the number of units of a hidden layer, and a layer of 0 units passes "
    "nothing on: the model trains to chance level without a word",
    example=(64,),
)
HiddenUnits = tuple[Annotated[int, Field(ge=1), _HIDDEN_UNITS], ...]
"""The units of each hidden layer, each at least 1; ``[]``: no hidden layer."""
HiddenLayer = Annotated[int, Field(ge=0), _HIDDEN_UNITS]
"""The units of one hidden layer; 0: none."""

LabelNoise = Annotated[
    float,
    Field(ge=0, lt=0.5, allow_inf_nan=False),
    Range(
        valid="at least 0 and below 0.5 (0 turns it off)",
        why="it is the most added at random to the discriminator's labels (0 = real, "
        "1 = generated); a negative noise is silently none, and from 0.5 on a real image's "
        "label can be closer to 'generated' than to 'real'",
        example=0.05,
    ),
]
"""The GAN's noisy labels: at most this much is added to each. From 0 to below 0.5."""

ClipValue = Annotated[
    float,
    Field(gt=0, allow_inf_nan=False),
    Range(
        valid="a finite number above 0, or null for no clipping",
        why="every gradient value is clipped to [-clip_value, clip_value]; at 0 or below no "
        "range is left, and the networks would train on gradients of the clip's size instead "
        "of their own",
        example=1.0,
        default_example=False,
    ),
]
"""A gradient value clip: above 0 (``ClipValue | None``: null for none)."""

LeakySlope = Annotated[
    float,
    Field(ge=0, lt=1, allow_inf_nan=False),
    Range(
        valid="at least 0 and below 1 (0 is a plain ReLU)",
        why="it is the LeakyReLU's slope for negative inputs; at 1 the activation is the "
        "identity and the network is linear, above 1 negative inputs weigh more than "
        "positive ones, and below 0 they are folded onto the positive side",
        example=0.2,
    ),
]
"""A LeakyReLU's negative slope: from 0 (a plain ReLU) to below 1."""


# -- checking ------------------------------------------------------------------------------


def within_range(
    annotation: Any,
    value: Any,
    coerced: Any,
    *,
    full_key: str,
    group: str,
    note: bool = True,
    default: Any = None,
) -> Any:
    """``value`` validated against the whole ``annotation`` (its type already passed as
    ``coerced``), or the paragraph of the range it is outside (:func:`range_error`)."""
    import pydantic

    try:
        return adapter(annotation).validate_python(value)
    except pydantic.ValidationError as exc:
        errors = exc.errors()
        rule = next((e["ctx"]["range"] for e in errors if e["type"] == RANGE_ERROR), None)
        if rule is None:  # a range the plugin declared without a Range: pydantic's words
            rule = Range(valid=_constraint_words(errors[0].get("msg", "")), why="", example=None)
        example = default if _is_valid(annotation, default) else None
        raise range_error(full_key, coerced, rule, example, group, note=note) from None


def _constraint_words(msg: str) -> str:
    """pydantic's "Input should be greater than 0" as "greater than 0"."""
    for prefix in ("Input should be ", "Value should be ", "Value should have "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return f"valid ({msg})"


def _is_valid(annotation: Any, value: Any) -> bool:
    if value is None or value is inspect.Parameter.empty:
        return False
    try:
        adapter(annotation).validate_python(value)
    except Exception:
        return False
    return True


def range_error(
    full_key: str, value: Any, rule: Range, default: Any, group: str, *, note: bool = True
) -> ConfigValueError:
    """The one paragraph of a refused value: what is valid, why, and a valid example (the
    plugin's ``default``, where valid, unless the rule prefers its own) in the ``group``'s
    config file; ``note`` adds the rule's note (where the value comes from)."""
    usable = rule.default_example and default is not None
    example = default if usable else rule.example
    why = f": {rule.why}." if rule.why else "."
    advice = (
        f"Set it to such a value, e.g. `{full_key}={_override_text(example)}` on the command "
        f"line or in the {group} config file."
        if example is not None
        else f"Set it to such a value on the command line or in the {group} config file."
    )
    return ConfigValueError(
        f"'{full_key}' must be {rule.valid}, got {_override_text(value)}{why} "
        f"{advice}{rule.note if note else ''}"
    )


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str)


def _override_text(value: Any) -> str:
    """A value as a Hydra override writes it: ``[32,64]`` (no spaces, so no quotes)."""
    if _is_list(value):
        return "[" + ",".join(_override_text(item) for item in value) + "]"
    return str(value)


def without_ranges(annotation: Any) -> Any:
    """``annotation`` without its range metadata (:class:`Range`, pydantic's ``Field``,
    ``annotated_types`` constraints), at any depth: the type alone, checked first. Other
    metadata (a ``BeforeValidator`` that parses) stays."""
    from annotated_types import BaseMetadata
    from pydantic.fields import FieldInfo

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        inner = without_ranges(args[0])
        metadata = annotation.__metadata__
        kept = [m for m in metadata if not isinstance(m, Range | FieldInfo | BaseMetadata)]
        if inner is args[0] and len(kept) == len(metadata):
            return annotation
        return Annotated[(inner, *kept)] if kept else inner
    if origin is None or not args or origin is typing.Literal:
        return annotation
    if origin is collections.abc.Callable:
        return annotation
    plain = tuple(without_ranges(a) if a is not Ellipsis else a for a in args)
    if plain == args:
        return annotation
    if origin in (typing.Union, types.UnionType):
        try:
            return functools.reduce(operator.or_, plain)
        except TypeError:
            return typing.Union[plain]  # noqa: UP007 (arguments ``|`` cannot join)
    try:
        return origin[plain]
    except TypeError:
        return annotation


@functools.lru_cache(maxsize=512)
def _cached_adapter(annotation: Any) -> Any:
    import pydantic

    return pydantic.TypeAdapter(annotation)


def adapter(annotation: Any) -> Any:
    """pydantic's ``TypeAdapter`` of ``annotation``, kept where the annotation is hashable."""
    import pydantic

    try:
        return _cached_adapter(annotation)
    except TypeError:  # unhashable metadata
        return pydantic.TypeAdapter(annotation)
