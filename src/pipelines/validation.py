"""Type checks for plugin arguments, so a bad override names its key instead of crashing later.

Hydra parses ``trainer.max_epochs=abc`` into the string ``"abc"`` without complaint; the first
sign of trouble would otherwise be a traceback deep inside Lightning. Every plugin's
constructor is already type-annotated, so we validate the config values against those
annotations with pydantic (lax mode: ``"5"`` is a fine ``int``) and name the dotted key.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
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
    """Validate config ``kwargs`` for ``factory``: no unknown key, every value of its type.

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
    for key in kwargs:
        if key not in parameters and not accepts_any:
            raise ConfigValueError(
                f"{what} does not accept the key '{path}.{key}'."
                f"{did_you_mean(key, configurable)} Its keys are: "
                f"{', '.join(configurable) or '(none)'}. Remove or rename `{path}.{key}`."
            )
    merged = dict(kwargs)
    for key, value in implicit.items():
        if key not in merged and (key in parameters or accepts_any):
            merged[key] = value
    return validate_arguments(factory, merged, path=path)


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


def parameters_of(factory: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    """The keyword parameters of a class's ``__init__`` or of a function (without ``self``)."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        params = dict(inspect.signature(target).parameters)
    except (TypeError, ValueError):  # no signature: accept anything
        return {"kwargs": inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)}
    params.pop("self", None)
    return params


def validate_arguments(
    factory: Callable[..., Any], kwargs: Mapping[str, Any], *, path: str
) -> dict[str, Any]:
    """Check ``kwargs`` against ``factory``'s type hints; return them coerced to those types.

    Parameters without a usable annotation (unresolvable names, arbitrary classes pydantic
    cannot validate) are passed through unchanged: validation helps, it never blocks.
    """
    import pydantic

    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # unresolvable forward references in a third-party plugin
        hints = {}
    checked: dict[str, Any] = {}
    for key, value in kwargs.items():
        annotation = hints.get(key)
        if annotation is None or annotation is Any:
            checked[key] = value
            continue
        try:
            adapter = pydantic.TypeAdapter(annotation)
        except Exception:  # a type pydantic has no schema for: leave it to the plugin
            checked[key] = value
            continue
        try:
            checked[key] = adapter.validate_python(value)
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
    return checked


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")
