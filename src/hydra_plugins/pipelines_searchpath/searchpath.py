"""Adds installed plugin packages' config folders to Hydra's config search path.

A package that registers models, datasets or stages can ship config files too
(``model/<name>.yaml`` ...): it names the package holding them under the entry-point group
``pipelines.configs`` and they become selectable (``model=<name>``) once it is installed,
with no change to this project.
"""

from __future__ import annotations

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class PipelinesSearchPathPlugin(SearchPathPlugin):
    """Appends ``pkg://<package>`` for every ``pipelines.configs`` entry point."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from pipelines.config import plugin_config_packages

        for package in plugin_config_packages():
            search_path.append(provider="pipelines-plugin", path=f"pkg://{package}")
