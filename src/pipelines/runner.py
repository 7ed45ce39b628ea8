"""Runs one pipeline: its stages, in order, on a shared context, inside one tracked run.

The whole flow of ``python -m pipelines.run``: Hydra composes the config and calls
:func:`execute`; :func:`run_pipeline` opens the run (:mod:`pipelines.lifecycle`: checks,
folder lock, the stages of ``pipeline.stages`` built from their entry points and their work
before the run, MLflow) and runs the stages one after another on a
:class:`~pipelines.context.RunContext`; the run ends FINISHED, FAILED or KILLED.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from pipelines.checks.later_stages import then_check_later_stages
from pipelines.context import RunContext
from pipelines.errors import PipelineError, TrainingDiverged, report_error
from pipelines.lifecycle import chosen, tracked_run
from pipelines.runtime import termination
from pipelines.tracking import sweep
from pipelines.tracking.store import ui_command

log = logging.getLogger(__name__)


def execute(cfg: DictConfig) -> dict[str, float] | float | None:
    """Hydra's task function: run the pipeline and turn failures into clear reports.

    In a multirun sweep a failed job is recorded (MLflow status FAILED, a line in the sweep's
    failure list) and the sweep goes on; :mod:`pipelines.tracking.sweep` fails the command at
    the end. A multirun job returns its objective value (None when it failed), which is what
    Hydra's Optuna sweeper optimises; a single run returns its metrics.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    job = f"job {hydra_cfg.job.num}" if multirun else "run"
    try:
        metrics = run_pipeline(
            cfg,
            output_dir=Path(hydra_cfg.runtime.output_dir),
            overrides=list(hydra_cfg.overrides.task),
            job_num=hydra_cfg.job.num if multirun else None,
        )
        if not multirun:
            return metrics
        # a sweeper (Optuna) optimises the job's return value: the objective metric
        value = sweep.objective_value(cfg, metrics)
        if value is None and sweep.optimises_return_value(hydra_cfg):
            # the sweeper counts the trial as failed; the sweep's error says why
            name, logged = sweep.select(cfg, "objective.metric"), ", ".join(sorted(metrics))
            sweep.record_failure(job, f"no objective.metric '{name}' among its metrics ({logged})")
        return value
    except TrainingDiverged as exc:
        report_error(exc)
        if not multirun:
            raise SystemExit(2) from None
        # a result of the trial's settings: a failed trial for the sweeper, not a crash
        return math.nan
    except PipelineError as exc:
        report_error(exc)
        if not multirun:
            raise SystemExit(2) from None
        sweep.record_failure(job, str(exc))
    except Exception as exc:
        if not multirun:
            raise
        traceback.print_exc()
        sweep.record_failure(job, f"{type(exc).__name__}: {exc}")
    return None


def run_pipeline(
    cfg: DictConfig,
    *,
    output_dir: Path,
    overrides: list[str] | None = None,
    job_num: int | None = None,
    resume_run_id: str | None = None,
    tags: dict[str, str] | None = None,
    on_start: Callable[[RunContext], None] | None = None,
) -> dict[str, float]:
    """Build the context, run every stage of ``pipeline.stages``, track it all; return metrics.

    ``resume_run_id`` continues that run (``python -m pipelines.resume``): its MLflow run is
    reopened and training stages restart from the last checkpoint in ``output_dir``.
    ``on_start`` is handed the run's context once the run is open (``pipelines.train`` keeps
    its model and data from it).
    """
    started = time.perf_counter()
    with tracked_run(
        cfg,
        output_dir,
        overrides=overrides or [],
        job_num=job_num,
        resume_run_id=resume_run_id,
        tags=tags,
    ) as run:
        if on_start is not None:
            on_start(run.context)
        for index, node in enumerate(run.stages):
            run_stage(run.context, run.plugins, index, node["name"])
    if not run.secondary:
        print_summary(run.context, run.subject, time.perf_counter() - started)
    return run.context.metrics


def run_stage(ctx: RunContext, stages: list[Any], index: int, name: str) -> None:
    """Run ``stages[index]``; if it built or replaced the model or data, check the later
    stages against them now. Its wall and CPU seconds are logged (``time/<name>_seconds``,
    ``time/<name>_cpu_seconds``: above wall when several cores computed, far below when
    it waited on a download or a GPU); a SIGTERM that arrived during it stops the run."""
    log.info("stage %s: %s", index, name)
    ctx.stage_key = f"pipeline.stages.{index}"
    started, cpu_started = time.perf_counter(), time.process_time()
    then_check_later_stages(ctx, stages, index, stages[index].run)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    ctx.tracker.log_metrics(
        {f"time/{name}_seconds": seconds, f"time/{name}_cpu_seconds": cpu_seconds}, step=index
    )
    termination.stop_if_requested()


def print_summary(ctx: RunContext, subject: dict[str, str], seconds: float) -> None:
    what = (
        f"{chosen('model', subject['model'])} on {chosen('data', subject['data'])} "
        f"({subject['pipeline']})"
        if "model" in subject
        else subject["pipeline"]
    )
    lines = [f"pipelines: {what} finished in {seconds:.1f}s"]
    width = max([12, *(len(key) for key in ctx.metrics)])
    for key, value in sorted(ctx.metrics.items()):
        lines.append(f"  {key:<{width}} {_format_metric(value)}")
    tracker = ctx.tracker
    if tracker.run_id:
        run = f"{tracker.run_id} ({getattr(tracker, 'run_name', '')})"
        lines.append(f"  {'MLflow run':<{width}} {run}")
        lines.append(f"  {'Browse runs':<{width}} {ui_command(tracker.uri)}")
    lines.append(f"  {'Outputs':<{width}} {ctx.output_dir.resolve()}")
    print("\n".join(lines), flush=True)


def _format_metric(value: float) -> str:
    """Four decimals, or three significant digits for values too small to show that way."""
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.3e}"
    return f"{value:.4f}"
