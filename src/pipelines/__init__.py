"""pipelines: the systems of *Deep Learning with Python* as swappable, tracked pipelines.

Plugins (models, datasets, stages) import one module, :mod:`pipelines.api`. The run flow
is a Hydra entry point (:mod:`pipelines.run`), a stage runner (:mod:`pipelines.runner`)
inside a run's lifecycle (:mod:`pipelines.lifecycle`), a context the stages share
(:mod:`pipelines.context`), an entry-point registry (:mod:`pipelines.registry`) and MLflow
tracking (:mod:`pipelines.tracking`); docs/ARCHITECTURE.md maps the rest.

Nothing heavy is imported here so that ``--help`` and config errors answer fast.
"""

__version__ = "0.1.0"
