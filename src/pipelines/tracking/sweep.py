"""Multirun sweeps: one MLflow parent run per sweep, one child run per job.

A Hydra callback opens the parent when the sweep starts and closes it when it ends. Jobs
find the parent through an environment variable (inherited by in-process and local
process-pool launchers) or, on launchers that start jobs elsewhere, through a file in the
sweep directory. A failed job is written to the sweep's failure list instead of stopping
the sweep; at the end the parent is marked FAILED and the command exits non-zero.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from pipelines.errors import PipelineError

log = logging.getLogger(__name__)

STATE_ENV = "PIPELINES_SWEEP_STATE"
_PARENT_FILE = "mlflow_parent_run_id"
_FAILURES_DIR = "failed_jobs"


def _state_dir() -> Path | None:
    value = os.environ.get(STATE_ENV)
    if value:
        return Path(value)
    try:
        from hydra.core.hydra_config import HydraConfig

        candidate = Path(HydraConfig.get().sweep.dir) / ".pipelines"
    except Exception:  # not inside a Hydra job
        return None
    return candidate if candidate.is_dir() else None


def parent_run_id() -> str | None:
    """The sweep's parent MLflow run id, inside a multirun job; None otherwise."""
    state = _state_dir()
    if state is None:
        return None
    parent = state / _PARENT_FILE
    if not parent.is_file():
        return None
    return parent.read_text().strip() or None


def record_failure(job: str, message: str) -> None:
    """Add a failed job to the sweep's failure list (one file per job, safe in parallel)."""
    state = _state_dir()
    if state is None:
        return
    failures = state / _FAILURES_DIR
    failures.mkdir(parents=True, exist_ok=True)
    (failures / f"{job.replace(' ', '_')}.txt").write_text(message)


DIRECTIONS = ("minimize", "maximize")


def check_objective(objective: Any) -> None:
    """``objective.direction`` must be one of :data:`DIRECTIONS`.

    Anything else used to count as minimize: ``direction=max`` on an accuracy picked the
    worst job as the sweep's best, with exit status 0.
    """
    from pipelines.errors import ConfigValueError, did_you_mean

    direction = str((objective or {}).get("direction", "minimize"))
    if direction not in DIRECTIONS:
        aliases = {"max": "maximize", "min": "minimize", "maximise": "maximize"}
        hint = aliases.get(direction.lower())
        suggestion = f" Did you mean '{hint}'?" if hint else did_you_mean(direction, DIRECTIONS)
        raise ConfigValueError(
            f"'objective.direction' is '{direction}'; it must be minimize or maximize."
            f"{suggestion} Write e.g. `objective.direction=maximize` for an accuracy."
        )


def failed_jobs() -> list[str]:
    """The sweep in progress's failed jobs so far, one line each (job: why)."""
    state = _state_dir()
    folder = state / _FAILURES_DIR if state else None
    if folder is None or not folder.is_dir():
        return []
    files = sorted(folder.glob("*.txt"))
    return [f"{file.stem.replace('_', ' ')}: {file.read_text().strip()}" for file in files]


def describe_search_error(error: BaseException) -> str | None:
    """One paragraph for a search that ended with no completed trial (Optuna's
    ``study.best_trial`` raised "No trials are completed yet" as a traceback after every
    trial had run), with each trial's reason; None for any other error."""
    if not (isinstance(error, ValueError) and "No trials are completed" in str(error)):
        return None
    reasons = failed_jobs()
    listing = "".join(f"\n  {line}" for line in reasons)
    return (
        "No trial of the hyper-parameter search completed, so there is no best one: each "
        "failed, diverged, or did not log objective.metric (the sweeper optimises its value). "
        "Fix what the trials report and run the search again; `objective.metric` must name a "
        "metric the runs log, e.g. best/val_loss or best/val_acc."
        + (f" The trials:{listing}" if reasons else "")
    )


#: the parent run of the sweep in progress in this process (None outside a sweep)
_open_parent: Any = None


def close_unfinished_sweep(error: BaseException) -> None:
    """Finish the parent run of a sweep that stopped before its end (a launcher that could
    not start, a job config that did not compose, Ctrl-C): FAILED, or KILLED when it was
    interrupted, instead of RUNNING for ever in the UI."""
    global _open_parent
    parent, _open_parent = _open_parent, None
    os.environ.pop(STATE_ENV, None)
    if parent is None:
        return
    interrupted = isinstance(error, (KeyboardInterrupt, SystemExit))
    ctrl_c = isinstance(error, KeyboardInterrupt) or (
        isinstance(error, SystemExit) and error.code == 130
    )
    reason = "interrupted (Ctrl-C)" if ctrl_c else f"{type(error).__name__}: {error}"
    try:
        parent.set_tags({"error": reason[:500]})
    finally:
        parent.finish("KILLED" if interrupted else "FAILED")


class SweepCallback(Callback):
    """Opens the parent run of a multirun sweep and reports its failed jobs at the end."""

    def __init__(self) -> None:
        self._tracker: Any = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from pipelines.tracking.store import TrackingSettings
        from pipelines.tracking.tracker import open_tracker

        settings = TrackingSettings.from_config(OmegaConf.select(config, "tracking", default={}))
        overrides = list(OmegaConf.select(config, "hydra.overrides.task", default=[]) or [])
        if settings.enabled:
            try:
                self._tracker = open_tracker(
                    settings,
                    run_name=f"sweep-{datetime.now():%Y%m%d-%H%M%S}",
                    tags={"sweep": "true", "overrides": " ".join(overrides)},
                )
            except PipelineError as exc:
                # a store no job can use (unreachable, damaged, deleted experiment): Hydra
                # turns a callback's exception into a warning and starts every job on it
                # anyway; it lets SystemExit through, so the sweep stops here with the one
                # message, before its folder is made
                print(f"Error: {exc}", file=sys.stderr, flush=True)
                raise SystemExit(2) from None
        state = Path(str(config.hydra.sweep.dir)).resolve() / ".pipelines"
        state.mkdir(parents=True, exist_ok=True)
        os.environ[STATE_ENV] = str(state)
        if self._tracker is None:
            return
        self._tracker.log_params({"sweep.overrides": " ".join(overrides)})
        (state / _PARENT_FILE).write_text(self._tracker.run_id)
        global _open_parent
        _open_parent = self._tracker

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global _open_parent
        _open_parent = None
        state = Path(os.environ.get(STATE_ENV, ""))
        failures = failed_jobs() if state.name else []
        if self._tracker is not None:
            self._tracker.set_tags({"failed_jobs": str(len(failures))})
            objective = OmegaConf.select(config, "objective", default={}) or {}
            try:
                jobs = child_runs(self._tracker)
                best = log_best_job(self._tracker, objective, jobs)
                log_comparison(self._tracker, state, jobs)
            finally:
                self._tracker.finish("FAILED" if failures else "FINISHED")
            print_sweep_summary(self._tracker, jobs, best, str(objective.get("metric") or ""))
        os.environ.pop(STATE_ENV, None)
        if failures:
            lines = [f"{len(failures)} job(s) of the sweep failed (the others are recorded):"]
            lines += [f"  {line}" for line in failures]
            print("\n".join(lines), file=sys.stderr, flush=True)
            raise SystemExit(1)


def print_sweep_summary(tracker: Any, jobs: list[Any], best: Any, metric: str) -> None:
    """Where the sweep's answer is: its parent run, the best job and its settings. A sweep
    printed each job's summary and then nothing about the sweep as a whole."""
    finished = sum(child.info.status == "FINISHED" for child in jobs)
    lines = [
        f"Sweep: {len(jobs)} job(s), {finished} finished; parent MLflow run {tracker.run_id} "
        f"({getattr(tracker, 'run_name', '')})"
    ]
    if best is not None:
        value = best.data.metrics[metric]
        overrides = best.data.tags.get("overrides", "") or "(the defaults)"
        lines.append(
            f"  Best job     {best.info.run_name} ({best.info.run_id}): {metric} {value:.4g}"
            f" with {overrides}"
        )
    lines.append("  Compare them python -m pipelines.ui (the parent run holds the comparison)")
    print("\n".join(lines), flush=True)


def child_runs(tracker: Any) -> list[Any]:
    """The sweep's job runs, oldest first."""
    return tracker.client.search_runs(
        [tracker.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{tracker.run_id}'",
        order_by=["attributes.start_time ASC"],
    )


def log_best_job(tracker: Any, objective: Any, jobs: list[Any]) -> Any:
    """Log the best job's overrides (``best.<key>`` params) and value to the parent run.

    Best by ``objective.metric`` in ``objective.direction``, among jobs that finished with a
    finite value; the sweep's answer is then on the parent run, without opening every child.
    """
    metric = str((objective or {}).get("metric") or "")
    if not metric:
        return None
    sign = -1.0 if str((objective or {}).get("direction", "minimize")) == "maximize" else 1.0
    scored = [
        (sign * child.data.metrics[metric], index, child)
        for index, child in enumerate(jobs)
        if child.info.status == "FINISHED"
        and math.isfinite(child.data.metrics.get(metric, math.nan))
    ]
    if not scored:
        return None
    _, _, best = min(scored, key=lambda item: item[:2])
    overrides = best.data.tags.get("overrides", "")
    params = dict(token.lstrip("+~").split("=", 1) for token in overrides.split() if "=" in token)
    tracker.log_params({f"best.{key}": value for key, value in params.items()})
    tracker.log_metrics({f"best_job/{metric}": best.data.metrics[metric]})
    tracker.set_tags({"best_job.run_id": best.info.run_id, "best_job.run_name": best.info.run_name})
    tracker.flush()
    return best


def log_comparison(
    tracker: Any, state: Path, jobs: list[Any], metric: str = "val/loss"
) -> Path | None:
    """Plot ``metric`` per epoch for every job (child run) and log the figure to the parent.

    Each curve is labelled with the overrides that differ between the jobs (the book's
    ch. 4 figures: original vs smaller vs L2 vs dropout), so a sweep reads at a glance.
    """
    client = tracker.client
    curves = {}
    for child in jobs:
        history = client.get_metric_history(child.info.run_id, metric)
        if history:
            curves[child.data.tags.get("overrides", child.info.run_name)] = history
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    token_sets = [set(label.split()) for label in curves]
    shared = set.intersection(*token_sets) if len(token_sets) > 1 else set()
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for label, history in curves.items():
        name = " ".join(t for t in label.split() if t not in shared) or label or "default"
        axis.plot(range(1, len(history) + 1), [m.value for m in history], marker="o", label=name)
    axis.set_xlabel("epoch")
    axis.set_ylabel(metric)
    axis.set_title(f"{metric} per job of the sweep")
    axis.legend(fontsize="small")
    axis.grid(alpha=0.3)
    path = state / f"{metric.replace('/', '_')}_by_job.png"
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    tracker.log_artifact(path, "comparison")
    return path


# -- a job's objective --------------------------------------------------------------------


def optimises_return_value(hydra_cfg: Any) -> bool:
    """Whether the sweep's sweeper optimises the jobs' return values (Optuna's does; the
    basic grid sweeper ignores them, and its jobs only name the best one at the end)."""
    target = str(OmegaConf.select(hydra_cfg, "sweeper._target_", default="") or "")
    return "optuna" in target.lower()


def objective_value(cfg: DictConfig | dict[str, Any], metrics: dict[str, float]) -> float | None:
    """The configured ``objective.metric`` of a finished run (NaN when it diverged).

    None when the run did not produce that metric: a sweeper counts the trial as failed,
    and the warning names the metrics there are, so ``objective.metric=`` can be fixed.
    """
    name = str(select(cfg, "objective.metric") or "")
    if not name:
        return None
    if name not in metrics:
        log.warning(
            "objective.metric '%s' is not among this run's metrics (%s); set objective.metric "
            "to one of them.",
            name,
            ", ".join(sorted(metrics)) or "none",
        )
        return None
    return float(metrics[name])


def non_finite_objective(config: dict[str, Any], metrics: dict[str, float]) -> str | None:
    name = select(config, "objective.metric")
    value = metrics.get(str(name)) if name else None
    if value is None or math.isfinite(value):
        return None
    return (
        f"The objective {name} is {value}: training diverged (try a lower model.lr); the run "
        "is marked FAILED."
    )


def select(config: DictConfig | dict[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        if not hasattr(node, "get"):
            return None
        node = node.get(part)
    return node
