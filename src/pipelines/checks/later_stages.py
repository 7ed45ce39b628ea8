"""The check of every later stage once a stage has built (or replaced) the model or data."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipelines.context import RunContext


def check_later_stages(ctx: RunContext, stages: list[Any], done: int) -> None:
    """Ask every stage after ``stages[done]`` whether it can work on the model and data
    that stage just built (``ctx.model``, ``ctx.datamodule``), before the next one runs.

    A stage may define ``check(ctx)``, raising a :class:`PipelineError` that names what to
    use instead. Without it, ``model=vae`` in the classify pipeline, or ``pipeline=generative``
    with a classifier, trained to the end and then failed in the stage that could not use
    the model. Called again whenever a stage replaces the model or the data.
    """
    running = ctx.stage_key
    try:
        for index in range(done + 1, len(stages)):
            check = getattr(stages[index], "check", None)
            if check is not None:
                ctx.stage_key = f"pipeline.stages.{index}"  # the key the stage's messages name
                check(ctx)
    finally:
        ctx.stage_key = running


def then_check_later_stages(
    ctx: RunContext, stages: list[Any], index: int, step: Callable[[RunContext], None]
) -> None:
    """``step(ctx)``, a hook of ``stages[index]`` (``before_run`` or ``run``); where it built
    or replaced the model or data, every later stage checks them before the next one runs."""
    before = (ctx.model, ctx.datamodule)
    step(ctx)
    if ctx.model is not before[0] or ctx.datamodule is not before[1]:
        check_later_stages(ctx, stages, index)
