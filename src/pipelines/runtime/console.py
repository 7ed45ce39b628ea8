"""What a person at a terminal sees: the config as a tree, Lightning's rich progress bar.

Only for people: when stdout is not a terminal (a pipe, a log file, a scheduler) or ``CI``
is set, output stays plain lines, with no bar redrawing and no box-drawing characters.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

#: groups shown first, in the order a reader looks for them
_ORDER = ("pipeline", "data", "model", "trainer", "speed", "tracking", "objective")


def interactive() -> bool:
    """A person is watching: stdout is a terminal, and this is not a CI job."""
    return sys.stdout.isatty() and not os.environ.get("CI")


def print_config_tree(config: Mapping[str, Any], title: str = "config") -> None:
    """The resolved config as a tree (groups as branches), printed with rich."""
    from rich.console import Console
    from rich.tree import Tree

    tree = Tree(f"[bold]{title}[/bold]")
    keys = sorted(config, key=lambda key: (_ORDER.index(key) if key in _ORDER else 99, key))
    for key in keys:
        _add(tree, key, config[key])
    Console().print(tree)


def _add(tree: Any, key: str, value: Any) -> None:
    if isinstance(value, Mapping) and value:
        branch = tree.add(f"[bold cyan]{key}[/bold cyan]")
        for child, child_value in value.items():
            _add(branch, str(child), child_value)
    else:
        tree.add(
            f"{key}: [green]{value!r}[/green]" if isinstance(value, str) else f"{key}: {value}"
        )
