"""``python -m pipelines.run --help``: what can be run, answered without composing a config.

Hydra's own ``--help`` builds a config repository for each of ~100 config groups (its own
and every installed launcher's and sweeper's): 1.6 s here. This help is read from the config
folders and the plugin entry points only (well under a second); Hydra's stays available as
``--hydra-help``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import yaml

from pipelines import registry
from pipelines.config import config_dir, config_groups, group_options

_EXAMPLES = """\
examples:
  python -m pipelines.run                                  # mlp on the bundled digits
  python -m pipelines.run model=lstm data=imdb data.download=true
  python -m pipelines.run experiment=book_mnist_convnet data.download=true
  python -m pipelines.run -m model=lstm,gru                # a sweep: one MLflow parent run
  python -m pipelines.run -m hparams_search=optuna hydra/launcher=joblib
  python -m pipelines.run pipeline=deepdream pipeline.stages.0.image=photo.jpg
  python -m pipelines.run model=convnet --cfg job          # print the composed config
"""


_AFTERWARDS = """
after a run (RUN_ID is printed at the end, and shown in the UI):
  python -m pipelines.ui [--port 5000]          the MLflow UI over ./mlruns
  python -m pipelines.evaluate RUN_ID           its model on its test split again
  python -m pipelines.predict RUN_ID FILE ...   its model on new images or text files
  python -m pipelines.rerun RUN_ID [KEY=VALUE]  the same run again, from its record
  python -m pipelines.resume RUN_ID             continue a killed run where it stopped
"""


def _defaults() -> dict[str, str | None]:
    """The option each group takes when the command line does not choose one."""
    primary = yaml.safe_load((config_dir() / "config.yaml").read_text()) or {}
    chosen: dict[str, str | None] = {}
    for entry in primary.get("defaults", []):
        if isinstance(entry, dict):
            chosen.update({str(k): (None if v is None else str(v)) for k, v in entry.items()})
    return chosen


def help_text() -> str:
    """Usage, every config group with its options (default marked), installed plugins."""
    defaults = _defaults()
    lines = [
        "usage: python -m pipelines.run [-m] [GROUP=OPTION ...] [KEY=VALUE ...] "
        "[--cfg job] [--hydra-help]",
        "",
        *textwrap.wrap(
            "Runs a pipeline of stages (prepare, fit, test, ...) on a data and a model plugin, "
            "tracked in MLflow (./mlruns; browse with `python -m pipelines.ui`). Every key of "
            "the composed config can be overridden as KEY=VALUE; -m sweeps over "
            "comma-separated values.",
            width=92,
        ),
        "",
        "config groups (GROUP=OPTION; * = default):",
    ]
    groups = config_groups()
    width = max((len(group) for group in groups), default=8) + 1
    for group in groups:
        options = [
            f"{name}*" if defaults.get(group) == name else name for name in group_options(group)
        ]
        lines.append(f"  {group + ':':<{width}} {', '.join(options)}")
    launchers = sorted(p.stem for p in (config_dir() / "hydra" / "launcher").glob("*.yaml"))
    lines.append(
        f"  {'hydra/launcher:':<{width}} basic*, joblib, submitit_local, "
        f"{', '.join(launchers)} (with the sweep/slurm/ray extras)"
    )
    lines += ["", "installed plugins (entry points; add your own with a package):"]
    for kind in ("data", "model", "stage"):
        lines.append(f"  {kind + ':':<{width}} {', '.join(registry.names(kind))}")
    lines += [
        "",
        _EXAMPLES.rstrip(),
        "",
        _AFTERWARDS.rstrip(),
        "",
        f"configs: {Path(config_dir())}",
    ]
    return "\n".join(lines)
