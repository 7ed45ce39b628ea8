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

from pipelines import plugin_keys
from pipelines.errors import (
    ConfigValueError,
    PipelineError,
    PluginNotFoundError,
    did_you_mean,
)
from pipelines.validation import (
    check_arguments,
    check_data_arguments,
    check_known_keys,
    parameters_of,
    type_hints_of,
    validate_value,
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
    plugin_keys.remember(
        kind, plugins[name].value, factory, parameters_of(factory), type_hints_of(factory)
    )
    return factory


def check_noted_keys(kind: str, node: Mapping[str, Any], *, path: str) -> None:
    """Refuse a key the plugin does not take, or a value not of its plain type, by what was
    noted when it was last imported (:mod:`pipelines.plugin_keys`), before importing it;
    where no note holds, nothing is checked here and :func:`check` decides after the
    import. Same messages as there."""
    plugin = available(kind).get(str(node.get("name")))
    noted = plugin_keys.recall(kind, plugin.value) if plugin is not None else None
    if noted is None:
        return
    kwargs = {key: value for key, value in node.items() if key != "name"}
    what = f"The {kind} plugin '{node['name']}'"
    check_known_keys(kwargs, noted.keys, noted.keys, noted.accepts_any, path=path, what=what)
    # a key of a type not noted (a tuple, a settings object) is checked after the import; a
    # config wrong in two keys may then be told of a later one first
    for key, value in kwargs.items():
        if key in noted.types:
            validate_value(noted.types[key], value, key=key, path=path)


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
    if kind == "data":
        check_data_arguments(kwargs, path=path)
    return factory, kwargs


def build(kind: str, node: Mapping[str, Any], *, path: str | None = None, **context: Any) -> Any:
    """Build the plugin a config node names: ``node["name"]`` picks it, the rest are arguments.

    ``path`` is the node's dotted location in the config, used to name keys in errors.
    """
    factory, kwargs = check(kind, node, path=path, **context)
    return factory(**kwargs)
