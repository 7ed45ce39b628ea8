"""A run's lifecycle: opened only once it is sure to be worth recording, always closed.

:func:`tracked_run` is the one place that decides how a run ends:

- before it opens: the config is checked, the run folder locked, SIGTERM handled, the seed
  set, the stages built and their ``before_run`` hooks run (``prepare`` loads and splits the
  data and builds the model with a dry forward pass). A refusal or Ctrl-C on the way
  records nothing and removes the run's folder (exit 2 or 130);
- while it runs: the MLflow run holds the params, the config and where it ran;
- at its end it is FINISHED, FAILED (an error; a diverged objective) or KILLED (Ctrl-C:
  exit 130, SIGTERM: 143), the folder lock is released, and a KILLED run says how to resume
  it. A full disk is one paragraph that says what is kept.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pipelines import registry
from pipelines.checks.before_run import before_run
from pipelines.checks.later_stages import then_check_later_stages
from pipelines.config import flatten
from pipelines.context import RunContext
from pipelines.errors import TrainingDiverged, disk_full_before_run_error, disk_full_error
from pipelines.runtime import distributed, termination
from pipelines.runtime.collector import resume_after_startup
from pipelines.runtime.console import interactive, print_config_tree
from pipelines.runtime.run_lock import remove_unused_folder, run_lock
from pipelines.tracking import sweep
from pipelines.tracking.provenance import provenance_tags
from pipelines.tracking.store import TrackingSettings
from pipelines.tracking.tracker import OUTPUT_DIR_TAG, Tracker, open_tracker

log = logging.getLogger(__name__)

#: the exit status of a run stopped by Ctrl-C (128 + SIGINT), as shells report it
INTERRUPTED_EXIT_CODE = termination.INTERRUPTED_EXIT_CODE


@dataclass
class Run:
    """A run in progress: its context, the stage nodes to build, what it is about."""

    context: RunContext
    stages: list[dict[str, Any]]
    #: the stage plugins built from ``stages``, their ``before_run`` hooks done
    plugins: list[Any]
    #: ``{"model", "data", "pipeline"}`` or only ``{"pipeline"}`` (:func:`run_subject`)
    subject: dict[str, str]
    #: a secondary DDP rank: it runs the same stages but tracks nothing (rank 0 owns the run)
    secondary: bool
    status: str = field(default="FAILED")


@contextmanager
def tracked_run(
    cfg: DictConfig,
    output_dir: Path,
    *,
    overrides: list[str],
    job_num: int | None = None,
    resume_run_id: str | None = None,
    tags: dict[str, str] | None = None,
) -> Iterator[Run]:
    """Check, open and record a run for the ``with`` block; end it as the block ended."""
    try:
        run, seconds, folder_lock = _open(cfg, output_dir, overrides, job_num, resume_run_id)
    except BaseException as exc:
        if resume_run_id is None and not distributed.is_secondary_process():
            remove_unused_folder(output_dir, Path("outputs"))
        if isinstance(exc, KeyboardInterrupt):
            termination.exit_interrupted(_unopened_run_outcome(job_num, resume_run_id))
        full = disk_full_before_run_error(exc)
        if full is not None:
            raise full from None
        raise
    tracker = run.context.tracker
    with distributed.single_process_afterwards():
        try:
            _record_start(run, cfg, output_dir, seconds, tags or {})
            yield run
            run.status = "FINISHED"
            diverged = sweep.non_finite_objective(run.context.config, run.context.metrics)
            if diverged:
                # a diverged run is a result, not a crash: recorded as FAILED with the
                # reason, and a sweep treats it as a failed trial and goes on
                log.warning(diverged)
                tracker.set_tags({"pipelines.failure": diverged})
                run.status = "FAILED"
        except BaseException as exc:
            run.status = "KILLED" if _stopped(exc) else "FAILED"
            _raise_the_exit_to_show(exc, tracker, output_dir)
            raise
        finally:
            try:
                tracker.finish(run.status)
            finally:
                folder_lock.close()
            if run.status == "KILLED" and tracker.run_id and not run.secondary:
                _say_how_to_resume(tracker.run_id, output_dir)


def _open(
    cfg: DictConfig,
    output_dir: Path,
    overrides: list[str],
    job_num: int | None,
    resume_run_id: str | None,
) -> tuple[Run, float, ExitStack]:
    """Check the config, build the stages and do their work before the run (the data loaded
    and split, the model built), then open the tracked run: in that order, so a command
    refused (a config error, data that is missing or cannot be used, a model that does not
    fit it) or interrupted on the way records nothing. Returns the run, the seconds the
    stages' work before it took, and the folder lock, released again where no run comes of
    it."""
    config, stages = before_run(cfg)
    if interactive() and not distributed.is_secondary_process():
        print_config_tree(config)

    import lightning

    termination.install()
    lightning.seed_everything(int(config.get("seed", 0)), workers=True, verbose=False)
    subject = run_subject(config, stages)
    secondary = distributed.is_secondary_process()
    distributed.use_job_command_for_ranks()
    # one process per run folder: a resume of a run still training is refused here
    folder_lock = ExitStack()
    if not secondary:
        folder_lock.enter_context(run_lock(output_dir, resume_run_id))
    try:
        # tracks nothing until the run opens: a stage's work before it is not recorded
        context = RunContext(
            config=config, tracker=Tracker(), output_dir=output_dir, resuming=bool(resume_run_id)
        )
        plugins = [
            registry.build("stage", node, path=f"pipeline.stages.{index}")
            for index, node in enumerate(stages)
        ]
        resume_after_startup()  # the heavy imports are done; data and training follow
        started = time.perf_counter()
        _before_run(context, plugins)
        seconds = time.perf_counter() - started
        context.tracker = (
            Tracker()
            if secondary
            else _open_tracker(config, subject, overrides, job_num, resume_run_id)
        )
    except BaseException:
        folder_lock.close()
        raise
    tracker = context.tracker
    if tracker.run_id and not resume_run_id:
        # said now, not only in the final summary: a killed run is resumed by this id
        log.info(
            "MLflow run %s (%s); if it stops early: python -m pipelines.resume %s",
            tracker.run_id,
            getattr(tracker, "run_name", ""),
            tracker.run_id,
        )
    return Run(context, stages, plugins, subject, secondary), seconds, folder_lock


def _before_run(context: RunContext, plugins: list[Any]) -> None:
    """Each stage's ``before_run`` hook, in order; a stage that built or replaced the model
    or data has every later stage check them (``check``), all before the run opens."""
    for index, plugin in enumerate(plugins):
        hook = getattr(plugin, "before_run", None)
        if hook is None:
            continue
        context.stage_key = f"pipeline.stages.{index}"
        then_check_later_stages(context, plugins, index, hook)
    context.stage_key = "pipeline.stages"


def _record_start(
    run: Run, cfg: DictConfig, output_dir: Path, seconds: float, tags: dict[str, str]
) -> None:
    """What the run is: its folder (for resume), what it ran on (for a re-run), its params
    and config, and how long the stages' work before it opened took."""
    tracker = run.context.tracker
    tracker.set_tags({OUTPUT_DIR_TAG: str(output_dir.resolve()), **provenance_tags(), **tags})
    tracker.log_params(dict(flatten(run.context.config)))
    tracker.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
    # beside the stages' times but outside them: finding the data (a first download:
    # minutes), loading it and building the model, before the run opened
    tracker.log_metrics({"time/before_run_seconds": seconds}, step=0)


def _stopped(exc: BaseException) -> bool:
    """Ctrl-C (Lightning turns it into SystemExit after a graceful stop), or SIGTERM,
    whatever the signal interrupted failed with on its way out: the run is KILLED."""
    return isinstance(exc, (KeyboardInterrupt, SystemExit)) or termination.requested()


def _raise_the_exit_to_show(exc: BaseException, tracker: Tracker, output_dir: Path) -> None:
    """Raise what the user should see instead of ``exc``, if anything: exit 130 for Ctrl-C,
    143 for SIGTERM, a full disk's one paragraph."""
    if isinstance(exc, TrainingDiverged):
        tracker.set_tags({"pipelines.failure": str(exc)})
    if _stopped(exc):
        # exit 143, also where Lightning's own SIGTERM exit is 0, and never a failed job
        # that a sweep would follow with the next one
        termination.stop_if_requested()
        if _interrupted_by_the_user(exc):
            # 130, the shell's code for Ctrl-C; Lightning's graceful stop exits 1, which
            # reads as a failure to scripts and schedulers
            raise SystemExit(INTERRUPTED_EXIT_CODE) from None
        return
    full = disk_full_error(exc, tracker.run_id, output_dir)
    if full is not None:
        with contextlib.suppress(Exception):  # the store may be on that disk too
            tracker.set_tags({"pipelines.failure": str(full)[:500]})
        raise full from None


def _interrupted_by_the_user(exc: BaseException) -> bool:
    """Ctrl-C: a ``KeyboardInterrupt``, or the ``SystemExit(1)`` Lightning raises after it
    stopped a Trainer gracefully on one."""
    return isinstance(exc, KeyboardInterrupt) or (isinstance(exc, SystemExit) and exc.code == 1)


def _unopened_run_outcome(job_num: int | None, resume_run_id: str | None) -> str:
    """What Ctrl-C before the run opened left: nothing, or the resumed run as it was."""
    if resume_run_id:
        return (
            f"before run {resume_run_id} was reopened: it is as it was, and `python -m "
            f"pipelines.resume {resume_run_id}` still continues it"
        )
    run = "the run" if job_num is None else f"job {job_num}'s run"
    return f"before {run} was opened: nothing of it was recorded"


def _say_how_to_resume(run_id: str, output_dir: Path) -> None:
    """One line after Ctrl-C or SIGTERM: the run is recorded, and what continues it: the
    checkpoint it kept, or, before its first one, a new run of the same settings."""
    from pipelines.training.checkpoint import epochs_done, resumable_checkpoint

    root = output_dir.resolve() / "checkpoints"  # a stage of its own keeps a sub-folder
    folders = {path.parent for path in root.rglob("*.ckpt")}
    found = [path for path in map(resumable_checkpoint, folders) if path is not None]
    kept = max(found, key=lambda path: path.stat().st_mtime, default=None)
    if kept is None:
        print(
            f"Interrupted: run {run_id} is marked KILLED before its first checkpoint, so "
            f"there is nothing to resume: start it again with `python -m pipelines.rerun "
            f"{run_id}`.",
            file=sys.stderr,
            flush=True,
        )
        return
    print(
        f"Interrupted: run {run_id} is marked KILLED; it kept {kept} ({epochs_done(kept)}). "
        f"Continue it from there with `python -m pipelines.resume {run_id}`.",
        file=sys.stderr,
        flush=True,
    )


def run_subject(config: dict[str, Any], stages: list[dict[str, Any]]) -> dict[str, str]:
    """What the run is about: the configured model and data, or only the pipeline.

    A pipeline whose stages all bring their own network (``generate`` from a finished run,
    ``deepdream`` on a torchvision model) does not use ``model``/``data``; naming its run
    after the default model would mislead. Stages say so with ``uses_configured_model``.
    """
    pipeline = str(config["pipeline"].get("name") or "pipeline")
    uses_config = any(
        getattr(registry.load("stage", node["name"]), "uses_configured_model", True)
        for node in stages
    )
    if not uses_config:
        return {"pipeline": pipeline}
    return {"model": config["model"]["name"], "data": config["data"]["name"], "pipeline": pipeline}


def _open_tracker(
    config: dict[str, Any],
    subject: dict[str, str],
    overrides: list[str],
    job_num: int | None,
    resume_run_id: str | None = None,
) -> Tracker:
    settings = TrackingSettings.from_config(config.get("tracking"))
    # named after the presets chosen (data=co2, not its plugin, timeseries); tags keep plugins
    name = "-".join(chosen(key, subject[key]) for key in ("model", "data") if key in subject)
    run_name = f"{name or subject['pipeline']}-{datetime.now():%Y%m%d-%H%M%S}"
    if job_num is not None:
        run_name += f"-job{job_num}"
    return open_tracker(
        settings,
        run_name,
        tags={**subject, "overrides": " ".join(overrides)},
        parent_run_id=sweep.parent_run_id(),
        resume_run_id=resume_run_id,
    )


def chosen(group: str, plugin: str) -> str:
    """The option chosen for ``group`` on the command line or by a preset (``digits_few``,
    ``co2``); the plugin's name where no Hydra job is running (the engine called directly)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return plugin
    choice = HydraConfig.get().runtime.choices.get(group)
    return str(choice) if choice else plugin
