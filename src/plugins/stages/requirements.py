"""What stages ask of the model and data they will get, shared by their ``check`` hooks.

The runner calls a stage's ``check(ctx)`` as soon as an earlier stage (``prepare``) has built
``ctx.model`` and ``ctx.datamodule``, before any training: a stage that cannot use them says
so then, in one paragraph naming what to use instead, not after the whole fit
(:func:`pipelines.runner.check_later_stages`).
"""

from __future__ import annotations

from pipelines.api import PipelineError, RunContext
from plugins.models.generative import only_generates


def model_name(ctx: RunContext) -> str:
    """The configured model's plugin name (``vae``), as a user chose it on the command line."""
    return str((ctx.config.get("model") or {}).get("name") or type(ctx.model).__name__)


def refuse_generative_model(ctx: RunContext, stage: str, reads: str, also: str = "") -> None:
    """A :class:`PipelineError` when ``ctx.model`` only draws samples (``task = "generation"``:
    vae, dcgan) and ``stage`` needs what it ``reads``: class scores or predicted values.

    ``model=vae`` in the default classify pipeline trained and tested, then the report's
    confusion matrix failed on the VAE's reconstructions (an IndexError about shapes).
    ``also`` ends the message (a stage's word on why it refuses even where it would not run).
    """
    if not only_generates(ctx.model):
        return
    name = model_name(ctx)
    raise PipelineError(
        f"The '{stage}' stage reads {reads}, and model '{name}' is generative: it learns to "
        f"draw samples and predicts no class or value. Train it with pipeline=generative "
        f"(prepare, fit, generate: samples after every epoch and at the end), e.g. "
        f"`python -m pipelines.run pipeline=generative model={name}`, or leave '{stage}' out "
        f"of pipeline.stages.{' ' + also if also else ''}"
    )
