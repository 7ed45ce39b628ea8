"""Type and range checks for plugin arguments, so a bad override names its key instead of
crashing later.

Hydra parses ``trainer.max_epochs=abc`` into the string ``"abc"`` without complaint; the first
sign of trouble would otherwise be a traceback deep inside Lightning. Every plugin's
constructor is already type-annotated, so we validate the config values against those
annotations with pydantic (lax mode: ``"5"`` is a fine ``int``) and name the dotted key.

A type is not a range: ``model.dropout=1.5`` is a fine ``float`` and ended in torch's
traceback once training began, ``model.l2=-1`` trained to the end with a penalty that
rewarded large weights. A plugin declares a key's range in its own signature, as part of
the type: ``dropout: Annotated[float, Field(ge=0, lt=1)]``, or one of the aliases of
:mod:`pipelines.api` (``DropoutRate``, ``LearningRate``, ...: :mod:`pipelines.checks.ranges`) that
also carry a ``Range``, the paragraph a refused value gets. A key's name implies nothing: a
third-party plugin's ``dropout`` without such an annotation is its own business.
``**training: Unpack[TrainingArguments]`` (PEP 692) declares the keys of that ``TypedDict``,
with their types and ranges, as the plugin's own.

The engine's own settings, which no plugin signature declares, keep tables here: the run's
``seed`` and the Lightning ``trainer`` node's epochs (:data:`ENGINE_RANGES`), and the
search's settings (:data:`SEARCH_RANGES`: the sampler's seed), checked before Hydra builds
the sweeper (:class:`pipelines.checks.command_line.SearchChecks`).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

from pipelines.checks.ranges import SEED_MAX as SEED_MAX  # where callers and tests find it
from pipelines.checks.ranges import (
    Epochs,
    SamplerSeed,
    Seed,
    adapter,
    within_range,
    without_ranges,
)
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
    and within the range its annotation declares (:func:`validate_value`); the engine's own
    nodes also against :data:`ENGINE_RANGES` (:func:`check_ranges`).

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
    checked = validate_arguments(factory, merged, path=path, parameters=parameters)
    check_ranges(checked, path=path, defaults=parameters)
    return checked


# -- the engine's own ranges -----------------------------------------------------------------

#: ranges of the engine's own settings, which no plugin signature declares: by the config
#: node's dotted path (``""``: top-level keys), then key. Every plugin declares its own.
ENGINE_RANGES: dict[str, dict[str, Any]] = {
    "": {"seed": Seed},
    # lightning.Trainer's signature says ``Optional[int]``
    "trainer": {"max_epochs": Epochs | None, "max_steps": Epochs | None},
}


def check_ranges(
    kwargs: Mapping[str, Any],
    *,
    path: str,
    defaults: Mapping[str, inspect.Parameter] | None = None,
) -> None:
    """Refuse an engine setting outside its range (:data:`ENGINE_RANGES`, by the node's
    ``path``: ``""`` for top-level keys such as ``seed``, ``"trainer"``), in one paragraph
    naming the key. Other nodes' keys are their plugin's to declare, and checked with their
    types (:func:`validate_value`); a value of the wrong type is not this check's to report.

    ``defaults`` (the factory's parameters) supply the example value where theirs is valid.
    """
    rules = ENGINE_RANGES.get(path, {})
    for key, value in kwargs.items():
        if key in rules:
            default = defaults[key].default if defaults and key in defaults else None
            check_range(rules[key], value, key=key, path=path, default=default)


def check_range(annotation: Any, value: Any, *, key: str, path: str, default: Any = None) -> Any:
    """``value`` validated against ``annotation``'s range, or the range's one paragraph;
    a value not even of the annotation's type passes unchanged (the type check's to report).
    """
    try:
        coerced = adapter(without_ranges(annotation)).validate_python(value)
    except Exception:
        return value
    return within_range(annotation, value, coerced, default=default, **_where(key, path))


def _where(key: str, path: str) -> dict[str, Any]:
    """How a range message names a node's key: its full key, the config group whose file
    sets it (``primary`` for top-level keys) and whether to add the range's note (where the
    value comes from: not for a top-level key, the source itself)."""
    return {
        "full_key": f"{path}.{key}" if path else key,
        "group": path.split(".")[0] or "primary",
        "note": bool(path),
    }


#: ranges of the hyper-parameter search's own settings, by their key in the composed config;
#: the config group that sets them (``hparams_search=optuna``) is named in the message
SEARCH_RANGES: dict[str, Any] = {"hydra.sweeper.sampler.seed": SamplerSeed}


def check_search_ranges(config: Mapping[str, Any]) -> None:
    """Refuse a search setting outside its range (:data:`SEARCH_RANGES`) in one paragraph.

    Hydra builds the sweeper, and Optuna its sampler, before any job runs: a seed numpy
    cannot take (``seed=-1``, which the sampler takes through ``${seed}``) ended there in a
    traceback of Hydra's instantiation, after the sweep's MLflow parent run was opened. A
    key the config does not have (a sweep without a sampler) is not checked; a value of
    another type is refused as outside the range.
    """
    for full_key, annotation in SEARCH_RANGES.items():
        value = _select(config, full_key)
        if value is _ABSENT:
            continue
        within_range(annotation, value, value, full_key=full_key, group="hparams_search")


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


# -- keys ------------------------------------------------------------------------------------


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
    """The keyword parameters of a class's ``__init__`` or of a function (without ``self``).

    ``**training: Unpack[TrainingArguments]`` (PEP 692) stands for the keys of that
    ``TypedDict``, as keyword-only parameters annotated with their types; their defaults are
    those of the first base class whose ``__init__`` names them (where the shared arguments
    pass on to), else none.
    """
    try:
        params = dict(inspect.signature(constructor_of(factory)).parameters)
    except (TypeError, ValueError):  # no signature: accept anything
        return {"kwargs": inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)}
    params.pop("self", None)
    hints = _own_hints(factory) if any(p.kind is p.VAR_KEYWORD for p in params.values()) else {}
    for name, param in list(params.items()):
        keys = unpacked_keys(hints.get(name)) if param.kind is param.VAR_KEYWORD else None
        if keys is None:
            continue
        del params[name]
        defaults = inherited_defaults(factory)
        for key, hint in keys.items():
            if key not in params:
                params[key] = inspect.Parameter(
                    key,
                    inspect.Parameter.KEYWORD_ONLY,
                    default=defaults.get(key, inspect.Parameter.empty),
                    annotation=hint,
                )
    return params


def unpacked_keys(annotation: Any) -> dict[str, Any] | None:
    """The keys (and their annotations) of the ``TypedDict`` that a ``**kwargs`` annotated
    ``annotation`` unpacks (``Unpack[TrainingArguments]``), or None where it takes any
    keyword."""
    import typing_extensions

    unpack = {typing_extensions.Unpack, getattr(typing, "Unpack", typing_extensions.Unpack)}
    if typing_extensions.get_origin(annotation) not in unpack:
        return None
    (typed_dict,) = typing_extensions.get_args(annotation)
    if not typing_extensions.is_typeddict(typed_dict):
        return None
    try:
        return typing_extensions.get_type_hints(typed_dict, include_extras=True)
    except Exception:  # an unresolvable key type: its keys, without types
        return dict.fromkeys(typed_dict.__annotations__)


def inherited_defaults(factory: Callable[..., Any]) -> dict[str, Any]:
    """Defaults of the keyword parameters that ``factory`` (a class) passes on: from its
    base classes' ``__init__``, the nearest first."""
    defaults: dict[str, Any] = {}
    if not inspect.isclass(factory):
        return defaults
    named: set[str] = set()
    for base in factory.__mro__[1:]:
        if "__init__" not in vars(base) or base is object:
            continue
        for key, param in parameters_of(base).items():
            if key not in named and param.default is not inspect.Parameter.empty:
                defaults[key] = param.default
            named.add(key)
    return defaults


def _own_hints(factory: Callable[..., Any]) -> dict[str, Any]:
    """The annotations of ``factory``'s constructor as written (``Annotated`` kept)."""
    try:
        return typing.get_type_hints(constructor_of(factory), include_extras=True)
    except Exception:
        return {}


def type_hints_of(factory: Callable[..., Any]) -> dict[str, Any]:
    """The resolved annotations of a class's ``__init__`` or of a function, ranges
    (``Annotated``) kept and ``**kwargs: Unpack[...]`` read as its keys'; none where they
    cannot be resolved (forward references a third-party plugin left unresolvable)."""
    hints = _own_hints(factory)
    for name, annotation in list(hints.items()):
        keys = unpacked_keys(annotation)
        if keys is not None:
            del hints[name]
            for key, hint in keys.items():
                hints.setdefault(key, hint)
    return hints


# -- values ----------------------------------------------------------------------------------


def validate_arguments(
    factory: Callable[..., Any],
    kwargs: Mapping[str, Any],
    *,
    path: str,
    parameters: Mapping[str, inspect.Parameter] | None = None,
) -> dict[str, Any]:
    """Check ``kwargs`` against ``factory``'s type hints, ranges included; return them
    coerced to those types.

    Parameters without a usable annotation (unresolvable names, arbitrary classes pydantic
    cannot validate) are passed through unchanged: validation helps, it never blocks.
    ``parameters`` (:func:`parameters_of`) give the examples of range messages.
    """
    hints = type_hints_of(factory)
    parameters = parameters_of(factory) if parameters is None else parameters
    return {
        key: validate_value(
            hints.get(key),
            value,
            key=key,
            path=path,
            default=parameters[key].default if key in parameters else None,
        )
        for key, value in kwargs.items()
    }


def validate_value(annotation: Any, value: Any, *, key: str, path: str, default: Any = None) -> Any:
    """``value`` coerced to ``annotation`` (unchanged where there is none, or pydantic has no
    schema for it), or a one-paragraph error naming ``path.key``: of the wrong type first,
    then outside the range the annotation declares (``default``: the plugin's, an example
    where valid)."""
    import pydantic

    if annotation is None or annotation is Any:
        return value
    plain = without_ranges(annotation)
    try:
        plain_adapter = adapter(plain)
    except Exception:  # a type pydantic has no schema for: leave it to the plugin
        return value
    try:
        coerced = plain_adapter.validate_python(value)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        nested = [str(part) for part in error.get("loc", ()) if isinstance(part, str | int)]
        # a nested settings object (e.g. data.augment) names the inner key that is wrong
        if nested and isinstance(value, Mapping) and nested[0] in value:
            full_key, bad, expected = ".".join([path, key, *nested]), error.get("input"), ""
        else:
            full_key, bad = f"{path}.{key}", value
            expected = f"expected {_type_name(plain)}, "
        raise ConfigValueError(
            f"Wrong value for '{full_key}': {expected}got {bad!r} "
            f"({type(bad).__name__}); {error.get('msg', '')}. Fix the value, e.g. "
            f"`{full_key}=...` on the command line or in the config file."
        ) from None
    if plain is annotation:
        return coerced
    try:
        adapter(annotation)
    except Exception:  # range metadata pydantic cannot apply: the type alone
        return coerced
    return within_range(annotation, value, coerced, default=default, **_where(key, path))


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")
