"""Type checks for plugin arguments, so a bad override names its key instead of crashing later.

Hydra parses ``trainer.max_epochs=abc`` into the string ``"abc"`` without complaint; the first
sign of trouble would otherwise be a traceback deep inside Lightning. Every plugin's
constructor is already type-annotated, so we validate the config values against those
annotations with pydantic (lax mode: ``"5"`` is a fine ``int``) and name the dotted key.

A type is not a range: ``model.dropout=1.5`` is a fine ``float`` and ended in torch's
traceback once training began, ``model.l2=-1`` trained to the end with a penalty that
rewarded large weights. The ranges a key's name implies, the same in every plugin, are
declared once here (:data:`RANGES`, :data:`MODEL_RANGES`) and checked with the types; the
search's own settings (:data:`SEARCH_RANGES`: the sampler's seed) are checked before Hydra
builds the sweeper (:class:`pipelines.preflight.SearchChecks`).
"""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipelines.errors import ConfigValueError, did_you_mean


def check_arguments(
    factory: Callable[..., Any],
    kwargs: Mapping[str, Any],
    *,
    path: str,
    what: str,
    implicit: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Validate config ``kwargs`` for ``factory``: no unknown key, every value of its type
    and within the range its key's name implies (:func:`check_ranges`).

    ``implicit`` holds values the engine supplies (e.g. ``input_shape`` from the data); each
    is added only if ``factory`` accepts it, and an explicit config value wins over it.
    ``path`` is the config node's dotted location, ``what`` names the factory in messages.
    """
    parameters = parameters_of(factory)
    implicit = dict(implicit or {})
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    configurable = [
        name
        for name, p in parameters.items()
        if name not in implicit and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]
    check_known_keys(kwargs, [*parameters], configurable, accepts_any, path=path, what=what)
    merged = dict(kwargs)
    for key, value in implicit.items():
        if key not in merged and (key in parameters or accepts_any):
            merged[key] = value
    checked = validate_arguments(factory, merged, path=path)
    check_ranges(checked, path=path, defaults=parameters)
    return checked


def check_data_arguments(kwargs: Mapping[str, Any], *, path: str = "data") -> None:
    """Checks every data plugin needs beyond its type hints: ``batch_size`` at least 1.

    A type hint says ``int``, which 0 and -4 are; unchecked, they ended in a traceback from
    the batch loader once the data was loaded, naming a "fused" size (the batch size times
    ``speed.steps_per_call``) the user never set. Checked here, every data plugin, built-in
    or third-party, is covered once, before a run opens.
    """
    value = kwargs.get("batch_size")
    if isinstance(value, int) and not isinstance(value, bool) and value < 1:
        raise ConfigValueError(
            f"'{path}.batch_size' must be at least 1, got {value}: it is how many samples "
            f"make one training step. Set it to a positive whole number, e.g. "
            f"`{path}.batch_size=32` on the command line or in the data config file."
        )


@dataclass(frozen=True)
class Range:
    """The values a config key accepts, and what to tell a user whose value is outside.

    ``accepts`` sees values of the right type only (the type check runs first) and answers
    True for what it cannot judge (a string where a third-party plugin has no type hint):
    a range check helps, it never blocks what it does not understand. ``None`` is never
    checked: it means "not set" (``discriminator_lr: null``, a stage's ``max_epochs``).
    """

    accepts: Callable[[Any], bool]
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


def _real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str)


def _sizes_positive(value: Any) -> bool:
    """Every entry (or the one value) a whole number of at least 1; an empty list is fine
    (``hidden_units: []``: no hidden layer), anything not whole is the type check's."""
    return all(item >= 1 for item in (value if _is_list(value) else [value]) if _whole(item))


def _hidden_units(value: Any) -> bool:
    """A list of layer sizes, or one size where 0 means no hidden layer (``model=transfer``:
    ``hidden_units: 0`` puts the classifier right on the backbone's features)."""
    return _sizes_positive(value) if _is_list(value) else not _whole(value) or value >= 0


#: numpy's random generators (``np.random.default_rng``, ``seed_everything``) take no other
#: seed; torch takes more, so the narrower range is the one every seed must keep to
SEED_MAX = 2**32 - 1

PROBABILITY = Range(
    accepts=lambda v: not _real(v) or 0 <= v < 1,
    valid="at least 0 and below 1",
    why="it is the fraction of values dropped at random in training; at 1 nothing gets "
    "through, and torch refuses more",
    example=0.5,
)
STEP_SIZE = Range(
    accepts=lambda v: not _real(v) or (math.isfinite(v) and v > 0),
    valid="a finite number above 0",
    why="it scales every optimizer step: at 0 the weights never change, and below 0 each "
    "step climbs the loss instead of descending it",
    example=0.001,
)
PENALTY = Range(
    accepts=lambda v: not _real(v) or (math.isfinite(v) and v >= 0),
    valid="0 or more (0 turns it off)",
    why="it is a weight penalty; a negative one rewards large weights instead of holding them back",
    example=0.0,
)
SEED = Range(
    accepts=lambda v: not _whole(v) or 0 <= v <= SEED_MAX,
    valid=f"a whole number from 0 to {SEED_MAX} (2**32 - 1)",
    why="numpy's random generators, which draw the data split and the shuffling, take no "
    "other seed",
    example=42,
    # data and model nodes take ``${seed}``: the user most likely set the run's seed
    note=" It is the run's `seed` unless set for this node alone: `seed=42` sets both.",
    default_example=False,
)
EPOCHS = Range(
    # below -1 Lightning's Trainer refuses itself, already in one paragraph
    accepts=lambda v: not _whole(v) or v != 0,
    valid="at least 1, or -1 for no limit",
    why="at 0 nothing is trained, and the stages after the fit would report an untrained "
    "model's metrics as the run's result",
    example=10,
)
WIDTH = Range(
    accepts=lambda v: not _real(v) or (math.isfinite(v) and v > 0),
    valid="a finite number above 0",
    why="it multiplies every layer size (0.5 halves them, 2 doubles them)",
    example=1.0,
)
SIZES = Range(
    accepts=_sizes_positive,
    valid="a whole number of at least 1 (for a list: every entry)",
    why="it sets the size of a layer (its units, filters, dimensions or kernel), and a layer "
    "of size 0 passes nothing on: the model trains to chance level without a word",
    example=32,
)
HIDDEN_UNITS = Range(
    accepts=_hidden_units,
    valid="whole numbers of at least 1 ([] for no hidden layer; where it is one number, as "
    "in model=transfer, 0 means none)",
    why="each is the number of units of a hidden layer, and a layer of 0 units passes "
    "nothing on: the model trains to chance level without a word",
    example=[64],
)
LABEL_NOISE = Range(
    accepts=lambda v: not _real(v) or (math.isfinite(v) and 0 <= v < 0.5),
    valid="at least 0 and below 0.5 (0 turns it off)",
    why="it is the most added at random to the discriminator's labels (0 = real, "
    "1 = generated); a negative noise is silently none, and from 0.5 on a real image's label "
    "can be closer to 'generated' than to 'real'",
    example=0.05,
)
CLIP_VALUE = Range(
    accepts=lambda v: not _real(v) or (math.isfinite(v) and v > 0),
    valid="a finite number above 0, or null for no clipping",
    why="every gradient value is clipped to [-clip_value, clip_value]; at 0 or below no "
    "range is left, and the networks would train on gradients of the clip's size instead "
    "of their own",
    example=1.0,
    default_example=False,
)
LEAKY_SLOPE = Range(
    accepts=lambda v: not _real(v) or (math.isfinite(v) and 0 <= v < 1),
    valid="at least 0 and below 1 (0 is a plain ReLU)",
    why="it is the LeakyReLU's slope for negative inputs; at 1 the activation is the "
    "identity and the network is linear, above 1 negative inputs weigh more than positive "
    "ones, and below 0 they are folded onto the positive side",
    example=0.2,
)
SAMPLER_SEED = Range(
    accepts=lambda v: v is None or (_whole(v) and 0 <= v <= SEED_MAX),
    valid=f"a whole number from 0 to {SEED_MAX} (2**32 - 1), or null for another search each time",
    why="the search's sampler draws every trial's settings from a numpy random generator, "
    "which takes no other seed",
    example=42,
    note=" It is the run's `seed` unless set for the sampler alone: `seed=42` sets both.",
    default_example=False,
)

#: a valid value of a key where its range's example would be odd for it (a kernel of 32),
#: for messages given before the plugin (whose default is the better example) is imported
KEY_EXAMPLES: dict[str, Any] = {
    "kernel_size": 3,
    "kernel_sizes": [3],
    "stem_kernel": 3,
    "pool_size": 2,
    "num_heads": 2,
    "num_layers": 1,
}

#: ranges a key's name implies in every plugin node (model, data, stage, trainer)
RANGES: dict[str, Range] = {
    "seed": SEED,
    "dropout": PROBABILITY,
    "recurrent_dropout": PROBABILITY,
    "lr": STEP_SIZE,
    "discriminator_lr": STEP_SIZE,
    "lr_factor": STEP_SIZE,
    "weight_decay": PENALTY,
    "l1": PENALTY,
    "l2": PENALTY,
    "max_epochs": EPOCHS,
    "max_steps": EPOCHS,
}
#: ranges only in the ``model`` node: elsewhere these names may mean something else (an
#: image's ``width``, a stage's number of ``filters`` to show)
MODEL_RANGES: dict[str, Range] = {
    "width": WIDTH,
    "hidden_units": HIDDEN_UNITS,
    "label_noise": LABEL_NOISE,
    "clip_value": CLIP_VALUE,
    "leaky_slope": LEAKY_SLOPE,
    **dict.fromkeys(
        (
            "units",
            "dense_units",
            "filters",
            "sizes",
            "generator_filters",
            "discriminator_filters",
            "stem_filters",
            "kernel_size",
            "kernel_sizes",
            "stem_kernel",
            "pool_size",
            "embedding_dim",
            "embed_dim",
            "dense_dim",
            "latent_dim",
            "num_heads",
            "num_layers",
        ),
        SIZES,
    ),
}


def check_ranges(
    kwargs: Mapping[str, Any],
    *,
    path: str,
    defaults: Mapping[str, inspect.Parameter] | None = None,
) -> None:
    """Refuse a value outside the range its key's name implies (:data:`RANGES`; in the
    ``model`` node also :data:`MODEL_RANGES`), in one paragraph naming the key.

    ``path`` is the node's dotted location (``""`` for top-level keys such as ``seed``);
    ``defaults`` (the plugin's parameters) supply the example value where theirs is valid.
    Checked with the types, before any data loads or a run opens: torch refuses a dropout
    or learning rate only once training starts, and a negative penalty or a zero-sized
    layer it never refuses at all.
    """
    rules = {**RANGES, **(MODEL_RANGES if path.split(".")[0] == "model" else {})}
    for key, value in kwargs.items():
        rule = rules.get(key)
        if rule is None or value is None or rule.accepts(value):
            continue
        full_key = f"{path}.{key}" if path else key
        default = defaults[key].default if defaults and key in defaults else None
        group = path.split(".")[0] or "primary"
        raise range_error(full_key, value, rule, default, group, note=bool(path))


def range_error(
    full_key: str, value: Any, rule: Range, default: Any, group: str, *, note: bool = True
) -> ConfigValueError:
    """The one paragraph of a refused value: what is valid, why, and a valid example (the
    plugin's ``default`` where it is valid and the rule prefers it) in the ``group``'s
    config file; ``note`` adds the rule's note (where the value comes from)."""
    usable = (
        rule.default_example
        and default is not None
        and default is not inspect.Parameter.empty
        and rule.accepts(default)
    )
    key = full_key.rsplit(".", 1)[-1]
    example = _override_text(default if usable else KEY_EXAMPLES.get(key, rule.example))
    return ConfigValueError(
        f"'{full_key}' must be {rule.valid}, got {_override_text(value)}: {rule.why}. "
        f"Set it to such a value, e.g. `{full_key}={example}` on the command line or "
        f"in the {group} config file.{rule.note if note else ''}"
    )


#: ranges of the hyper-parameter search's own settings, by their key in the composed config;
#: the config group that sets them (``hparams_search=optuna``) is named in the message
SEARCH_RANGES: dict[str, Range] = {"hydra.sweeper.sampler.seed": SAMPLER_SEED}


def check_search_ranges(config: Mapping[str, Any]) -> None:
    """Refuse a search setting outside its range (:data:`SEARCH_RANGES`) in one paragraph.

    Hydra builds the sweeper, and Optuna its sampler, before any job runs: a seed numpy
    cannot take (``seed=-1``, which the sampler takes through ``${seed}``) ended there in a
    traceback of Hydra's instantiation, after the sweep's MLflow parent run was opened. A
    key the config does not have (a sweep without a sampler) is not checked.
    """
    for full_key, rule in SEARCH_RANGES.items():
        value = _select(config, full_key)
        if value is _ABSENT or value is None or rule.accepts(value):
            continue
        raise range_error(full_key, value, rule, None, "hparams_search")


#: what :func:`_select` answers for a key the config does not have (None means null)
_ABSENT = object()


def _select(config: Mapping[str, Any], dotted: str) -> Any:
    """The value at ``dotted`` in nested mappings (an OmegaConf ``DictConfig`` resolves its
    interpolations on access), or :data:`_ABSENT`; a value that cannot be resolved is
    absent here and left to whatever reads it."""
    node: Any = config
    try:
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return _ABSENT
            node = node[part]
    except Exception:  # an interpolation that does not resolve: not this check's to report
        return _ABSENT
    return node


def _override_text(value: Any) -> str:
    """A value as a Hydra override writes it: ``[32,64]`` (no spaces, so no quotes)."""
    if _is_list(value):
        return "[" + ",".join(_override_text(item) for item in value) + "]"
    return str(value)


def check_known_keys(
    kwargs: Mapping[str, Any],
    keys: list[str],
    configurable: list[str],
    accepts_any: bool,
    *,
    path: str,
    what: str,
) -> None:
    """Every key of ``kwargs`` among ``keys`` (unless the plugin takes any key); the error
    lists the ``configurable`` ones (those the engine does not fill in itself)."""
    if accepts_any:
        return
    for key in kwargs:
        if key not in keys:
            raise ConfigValueError(
                f"{what} does not accept the key '{path}.{key}'."
                f"{did_you_mean(key, configurable)} Its keys are: "
                f"{', '.join(configurable) or '(none)'}. Remove or rename `{path}.{key}`."
            )


def constructor_of(factory: Callable[..., Any]) -> Callable[..., Any]:
    """What a config node's keys are the arguments of: a class's ``__init__``, or the
    factory function itself."""
    return factory.__init__ if inspect.isclass(factory) else factory  # type: ignore[misc]


def parameters_of(factory: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    """The keyword parameters of a class's ``__init__`` or of a function (without ``self``)."""
    try:
        params = dict(inspect.signature(constructor_of(factory)).parameters)
    except (TypeError, ValueError):  # no signature: accept anything
        return {"kwargs": inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)}
    params.pop("self", None)
    return params


def type_hints_of(factory: Callable[..., Any]) -> dict[str, Any]:
    """The resolved annotations of a class's ``__init__`` or of a function; none where they
    cannot be resolved (forward references a third-party plugin left unresolvable)."""
    try:
        return typing.get_type_hints(constructor_of(factory))
    except Exception:
        return {}


def validate_arguments(
    factory: Callable[..., Any], kwargs: Mapping[str, Any], *, path: str
) -> dict[str, Any]:
    """Check ``kwargs`` against ``factory``'s type hints; return them coerced to those types.

    Parameters without a usable annotation (unresolvable names, arbitrary classes pydantic
    cannot validate) are passed through unchanged: validation helps, it never blocks.
    """
    hints = type_hints_of(factory)
    return {
        key: validate_value(hints.get(key), value, key=key, path=path)
        for key, value in kwargs.items()
    }


def validate_value(annotation: Any, value: Any, *, key: str, path: str) -> Any:
    """``value`` coerced to ``annotation`` (unchanged where there is none, or pydantic has no
    schema for it), or a one-paragraph error naming ``path.key``."""
    import pydantic

    if annotation is None or annotation is Any:
        return value
    try:
        adapter = pydantic.TypeAdapter(annotation)
    except Exception:  # a type pydantic has no schema for: leave it to the plugin
        return value
    try:
        return adapter.validate_python(value)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        nested = [str(part) for part in error.get("loc", ()) if isinstance(part, str | int)]
        # a nested settings object (e.g. data.augment) names the inner key that is wrong
        if nested and isinstance(value, Mapping) and nested[0] in value:
            full_key, bad, expected = ".".join([path, key, *nested]), error.get("input"), ""
        else:
            full_key, bad = f"{path}.{key}", value
            expected = f"expected {_type_name(annotation)}, "
        raise ConfigValueError(
            f"Wrong value for '{full_key}': {expected}got {bad!r} "
            f"({type(bad).__name__}); {error.get('msg', '')}. Fix the value, e.g. "
            f"`{full_key}=...` on the command line or in the config file."
        ) from None


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")
