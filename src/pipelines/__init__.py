"""pipelines: the systems of *Deep Learning with Python* as swappable, tracked pipelines.

The engine is deliberately small: a Hydra entry point (:mod:`pipelines.run`), an
entry-point plugin registry (:mod:`pipelines.registry`), a stage runner with a shared
context (:mod:`pipelines.runner`, :mod:`pipelines.context`) and MLflow tracking
(:mod:`pipelines.tracking.tracker`). Everything else -- models, datasets, stages -- is a plugin.

Nothing heavy is imported here so that ``--help`` and config errors answer fast.
"""

__version__ = "0.1.0"
