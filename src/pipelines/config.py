"""Where configs come from and how a resolved config is turned into tracked params.

The built-in configs live in the repository's top-level ``conf/``; a wheel ships them as
``pipelines/conf`` so a regular (non-editable) install finds them too. Installed plugin
packages add their own config folders through the ``pipelines.configs`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pipelines.registry import CONFIG_GROUP

PACKAGE_DIR = Path(__file__).resolve().parent


def config_dir() -> Path:
    """The built-in config directory: inside the installed package, else the source tree's."""
    for candidate in (PACKAGE_DIR / "conf", PACKAGE_DIR.parents[1] / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"No config directory found (looked in {PACKAGE_DIR / 'conf'} and "
        f"{PACKAGE_DIR.parents[1] / 'conf'}); reinstall the package with `pip install .`."
    )


def plugin_config_packages() -> list[str]:
    """Importable packages that installed plugins register as extra config folders."""
    return sorted({ep.value for ep in entry_points(group=CONFIG_GROUP)})


def config_roots() -> list[Path]:
    """Every directory on the config search path that holds config groups, built-ins first."""
    from importlib.resources import files

    roots = [config_dir()]
    for package in plugin_config_packages():
        try:
            roots.append(Path(str(files(package))))
        except (ModuleNotFoundError, TypeError):
            continue
    return roots


def group_options(group: str) -> list[str]:
    """Names a config group can take (``model`` -> ``['convnet', 'mlp', ...]``)."""
    options: set[str] = set()
    for root in config_roots():
        folder = root / group
        if folder.is_dir():
            options.update(p.stem for p in folder.glob("*.yaml"))
    return sorted(options)


def config_groups() -> list[str]:
    """Top-level config groups (folders) on the search path."""
    groups: set[str] = set()
    for root in config_roots():
        groups.update(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_"))
    # conf/hydra/ adds options to Hydra's own groups (hydra/launcher=slurm), not a group of ours
    groups.discard("hydra")
    return sorted(groups)


def flatten(node: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Dotted keys for a nested mapping: ``{"model": {"name": "mlp"}}`` -> ``model.name``.

    Lists are kept whole as one value: a param is one cell in MLflow's table.
    """
    for key, value in node.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from flatten(value, prefix=f"{dotted}.")
        else:
            yield dotted, value
