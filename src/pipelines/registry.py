"""The plugin registry: every model, dataset and stage is found through Python entry points.

Built-in plugins are registered in this project's ``pyproject.toml`` exactly as a third-party
package registers its own, and the engine never imports :mod:`plugins` directly. Only
registered plugins can be built from a config -- there is no arbitrary ``_target_`` import
from a YAML file -- so a config file cannot execute code the user did not install.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pipelines.checks.validation import check_arguments
from pipelines.errors import (
    ConfigValueError,
    PipelineError,
    PluginNotFoundError,
    did_you_mean,
)

#: plugin kind (the config node that names it) -> entry-point group
GROUPS: dict[str, str] = {
    "model": "pipelines.models",
    "data": "pipelines.data",
    "stage": "pipelines.stages",
}

#: entry-point group through which packages add their own ``conf/`` directory to Hydra's
#: config search path (value: an importable package that holds config group folders).
CONFIG_GROUP = "pipelines.configs"


def _group(kind: str) -> str:
    try:
        return GROUPS[kind]
    except KeyError:
        raise PipelineError(
            f"Unknown plugin kind '{kind}'. Known kinds: {', '.join(sorted(GROUPS))}."
        ) from None


@cache
def available(kind: str) -> dict[str, EntryPoint]:
    """All installed plugins of one kind, by name."""
    return {ep.name: ep for ep in entry_points(group=_group(kind))}


def names(kind: str) -> list[str]:
    """Sorted names of the installed plugins of one kind."""
    return sorted(available(kind))


def load(kind: str, name: str, *, path: str | None = None) -> Any:
    """The class (or factory) registered under ``name`` for ``kind``.

    Raises a :class:`PluginNotFoundError` that lists the known names and the closest match.
    """
    plugins = available(kind)
    if name not in plugins:
        known = ", ".join(sorted(plugins)) or "(none installed)"
        raise PluginNotFoundError(
            f"Unknown {kind} plugin '{name}'{f' in {path!r}' if path else ''}."
            f"{did_you_mean(name, plugins)} Known {kind} plugins: {known}. Use one of them, "
            f"or install the package that registers '{name}' under the entry-point group "
            f"'{GROUPS[kind]}'."
        )
    try:
        factory = plugins[name].load()
    except Exception as exc:  # a broken plugin package: say which one, keep the cause
        raise PipelineError(
            f"The {kind} plugin '{name}' ({plugins[name].value}) is registered but failed to "
            f"import: {type(exc).__name__}: {exc}. Reinstall or fix the package that provides it."
        ) from exc
    check_kind(kind, name, plugins[name].value, factory)
    return factory


#: the Lightning class a plugin of each kind must be (stages are plain classes)
LIGHTNING_BASES = {"model": "LightningModule", "data": "LightningDataModule"}


def check_kind(kind: str, name: str, value: str, factory: Any) -> None:
    """Refuse a plugin that is not of its kind (:mod:`pipelines.api`): a model that is not
    a ``LightningModule``, data that is not a ``LightningDataModule``, a stage without
    ``run``, or a method named one letter or two from a method hook (``model_kwarg``),
    which the engine would never call; likewise an attribute near an attribute hook.
    Factories that are not classes are taken as they are.
    """
    import difflib
    import inspect

    import lightning

    from pipelines import api

    if not inspect.isclass(factory):
        return
    what = f"The {kind} plugin '{name}' ({value})"
    base: type = object
    if kind in LIGHTNING_BASES:
        class_name = LIGHTNING_BASES[kind]
        base = getattr(lightning, class_name)
        if not issubclass(factory, base):
            raise PipelineError(
                f"{what} is not a `lightning.{class_name}`: {kind} plugins subclass "
                f"`lightning.{class_name}` (pipelines.api.{api.PROTOCOLS[kind].__name__} "
                f"lists the hooks it may add). Fix the class the entry point names."
            )
    for hook in api.REQUIRED_HOOKS[kind]:
        if not callable(getattr(factory, hook, None)):
            raise PipelineError(
                f"{what} has no '{hook}' method, which every {kind} plugin needs "
                f"(pipelines.api.{api.PROTOCOLS[kind].__name__}.{hook}). Add it."
            )
    hooks, methods = api.hooks_of(kind), api.method_hooks_of(kind)
    own = {n for n in dir(factory) if not n.startswith("_")} - set(dir(base)) - set(hooks)
    for attribute in sorted(own):
        # a method is compared with the method hooks, anything else with the attributes
        # (a data plugin's ``split()`` is not the ``splits`` it sets up)
        is_method = inspect.isfunction(inspect.getattr_static(factory, attribute))
        alike = [h for h in hooks if (h in methods) == is_method]
        close = difflib.get_close_matches(attribute, alike, n=1, cutoff=0.85)
        if close:
            raise PipelineError(
                f"{what} defines '{attribute}', which is not a hook of a {kind} plugin; did "
                f"you mean '{close[0]}' (pipelines.api.{api.PROTOCOLS[kind].__name__}."
                f"{close[0]})? The engine calls hooks by their exact name. Rename it."
            )


def check(
    kind: str, node: Mapping[str, Any], *, path: str | None = None, **context: Any
) -> tuple[Any, dict[str, Any]]:
    """Validate a config node against the plugin it names, without building it.

    Returns the plugin's factory and the checked keyword arguments. Called for every node
    before a run starts, so a typo fails in a second instead of after data preparation.
    ``context`` holds values the engine knows (e.g. ``input_shape`` from the data); each is
    passed only if the plugin accepts it, and the config node wins over it.
    """
    path = path or kind
    if "name" not in node:
        raise ConfigValueError(
            f"The config node '{path}' has no 'name' key, so no {kind} plugin can be chosen. "
            f"Add `name: <one of {', '.join(names(kind))}>` to it."
        )
    name = str(node["name"])
    factory = load(kind, name, path=f"{path}.name" if path != kind else f"{kind}.name")
    kwargs = {key: value for key, value in node.items() if key != "name"}
    kwargs = check_arguments(
        factory, kwargs, path=path, what=f"The {kind} plugin '{name}'", implicit=context
    )
    return factory, kwargs


def build(kind: str, node: Mapping[str, Any], *, path: str | None = None, **context: Any) -> Any:
    """Build the plugin a config node names: ``node["name"]`` picks it, the rest are arguments.

    ``path`` is the node's dotted location in the config, used to name keys in errors.
    """
    factory, kwargs = check(kind, node, path=path, **context)
    return factory(**kwargs)
