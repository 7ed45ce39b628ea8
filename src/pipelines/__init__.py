"""pipelines: the systems of *Deep Learning with Python* as swappable, tracked pipelines.

Plugins (models, datasets, stages) import one module, :mod:`pipelines.api`. The run flow
is a Hydra entry point (:mod:`pipelines.run`), a stage runner (:mod:`pipelines.runner`)
inside a run's lifecycle (:mod:`pipelines.lifecycle`), a context the stages share
(:mod:`pipelines.context`), an entry-point registry (:mod:`pipelines.registry`) and MLflow
tracking (:mod:`pipelines.tracking`); docs/ARCHITECTURE.md maps the rest.

From Python (a notebook, a script), :func:`train` and :func:`load`
(:mod:`pipelines.python_api`)::

    import pipelines
    result = pipelines.train("model=convnet", "trainer.max_epochs=3")
    pipelines.load(result.run_id).predict(["digit.png"])

Nothing heavy is imported here so that ``--help`` and config errors answer fast: ``train``
and ``load`` are looked up on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.errors import PipelineError
    from pipelines.python_api import TrainResult, load, train

__version__ = "0.1.0"
__all__ = ["PipelineError", "TrainResult", "load", "train"]


def __getattr__(name: str) -> Any:
    """``pipelines.train``, ``.load``, ``.TrainResult`` and ``.PipelineError``, imported
    when first asked for."""
    if name in ("train", "load", "TrainResult"):
        from pipelines import python_api

        return getattr(python_api, name)
    if name == "PipelineError":
        from pipelines.errors import PipelineError

        return PipelineError
    raise AttributeError(f"module 'pipelines' has no attribute {name!r}")
