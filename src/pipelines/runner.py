"""Runs one pipeline: its stages, in order, on a shared context, inside one tracked run."""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import re
import sys
import time
import traceback
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pipelines import distributed, registry, sweep, termination
from pipelines.collector import resume_after_startup
from pipelines.config import flatten
from pipelines.console import interactive, print_config_tree
from pipelines.context import FoundData, RunContext, find_data_before_run
from pipelines.errors import (
    ConfigValueError,
    PipelineError,
    TrainingDiverged,
    exception_chain,
)
from pipelines.provenance import provenance_tags
from pipelines.run_lock import run_lock
from pipelines.speed import SpeedSettings
from pipelines.tracking import Tracker, TrackingSettings, open_tracker, ui_command

log = logging.getLogger(__name__)

#: run tag holding the run's output folder (its checkpoints), which resume continues in
OUTPUT_DIR_TAG = "pipelines.output_dir"


def execute(cfg: DictConfig) -> dict[str, float] | float | None:
    """Hydra's task function: run the pipeline and turn failures into clear reports.

    In a multirun sweep a failed job is recorded (MLflow status FAILED, a line in the sweep's
    failure list) and the sweep goes on; :mod:`pipelines.sweep` fails the command at the end.
    A multirun job returns its objective value (None when it failed), which is what Hydra's
    Optuna sweeper optimises; a single run returns its metrics.
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
        value = objective_value(cfg, metrics)
        if value is None and _optimises_return_value(hydra_cfg):
            # the sweeper counts the trial as failed; the sweep's error says why
            name, logged = _select(cfg, "objective.metric"), ", ".join(sorted(metrics))
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
) -> dict[str, float]:
    """Build the context, run every stage of ``pipeline.stages``, track it all; return metrics.

    ``resume_run_id`` continues that run (``python -m pipelines.resume``): its MLflow run is
    reopened and training stages restart from the last checkpoint in ``output_dir``.
    """
    started = time.perf_counter()
    try:
        opened = _open_run(cfg, output_dir, overrides or [], job_num, resume_run_id)
    except KeyboardInterrupt:
        termination.exit_interrupted(_unopened_run_outcome(job_num, resume_run_id))
    config, stages, subject = opened.config, opened.stages, opened.subject
    secondary, folder_lock = opened.secondary, opened.folder_lock
    found, tracker = opened.found, opened.tracker
    if tracker.run_id and not resume_run_id:
        # said now, not only in the final summary: a killed run is resumed by this id
        log.info(
            "MLflow run %s (%s); if it stops early: python -m pipelines.resume %s",
            tracker.run_id,
            getattr(tracker, "run_name", ""),
            tracker.run_id,
        )
    ctx = RunContext(
        config=config,
        tracker=tracker,
        output_dir=output_dir,
        resuming=bool(resume_run_id),
        found_datamodule=found.datamodule if found else None,
    )
    status = "FAILED"
    with distributed.single_process_afterwards():
        try:
            # where its checkpoints are (for resume), and what it ran on (for a re-run)
            tracker.set_tags(
                {OUTPUT_DIR_TAG: str(output_dir.resolve()), **provenance_tags(), **(tags or {})}
            )
            tracker.log_params(dict(flatten(config)))
            tracker.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
            _log_data_time(tracker, found)
            resume_after_startup()  # the heavy imports are done; data and training follow
            built = [
                registry.build("stage", node, path=f"pipeline.stages[{index}]")
                for index, node in enumerate(stages)
            ]
            for index, (node, stage) in enumerate(zip(stages, built, strict=True)):
                log.info("stage %s: %s", index, node["name"])
                ctx.stage_key = f"pipeline.stages.{index}"
                stage_started, cpu_started = time.perf_counter(), time.process_time()
                before = (ctx.model, ctx.datamodule)
                stage.run(ctx)
                if ctx.model is not before[0] or ctx.datamodule is not before[1]:
                    check_later_stages(ctx, built, index)
                # where a run's time goes, per stage: wall seconds, and the CPU seconds of
                # all the process's threads (above wall when several cores computed, far
                # below when it waited on a download or a GPU); benchmarks read both
                seconds = time.perf_counter() - stage_started
                cpu_seconds = time.process_time() - cpu_started
                name = node["name"]
                tracker.log_metrics(
                    {f"time/{name}_seconds": seconds, f"time/{name}_cpu_seconds": cpu_seconds},
                    step=index,
                )
                termination.stop_if_requested()
            status = "FINISHED"
            diverged = _non_finite_objective(config, ctx.metrics)
            if diverged:
                # a diverged run is a result, not a crash: recorded as FAILED with the
                # reason, and a sweep treats it as a failed trial and goes on
                log.warning(diverged)
                tracker.set_tags({"pipelines.failure": diverged})
                status = "FAILED"
        except BaseException as exc:
            if isinstance(exc, TrainingDiverged):
                tracker.set_tags({"pipelines.failure": str(exc)})
            # Ctrl-C (Lightning turns it into SystemExit after a graceful stop), or SIGTERM,
            # whatever the signal interrupted failed with on its way out
            if isinstance(exc, (KeyboardInterrupt, SystemExit)) or termination.requested():
                status = "KILLED"
                # exit 143, also where Lightning's own SIGTERM exit is 0, and never a failed
                # job that a sweep would follow with the next one
                termination.stop_if_requested()
                if _interrupted_by_the_user(exc):
                    # 130, the shell's code for Ctrl-C; Lightning's graceful stop exits 1,
                    # which reads as a failure to scripts and schedulers
                    raise SystemExit(INTERRUPTED_EXIT_CODE) from None
            full = disk_full_error(exc, tracker.run_id, output_dir)
            if full is not None:
                with contextlib.suppress(Exception):  # the store may be on that disk too
                    tracker.set_tags({"pipelines.failure": str(full)[:500]})
                raise full from None
            raise
        finally:
            try:
                tracker.finish(status)
            finally:
                folder_lock.close()
            if status == "KILLED" and tracker.run_id and not secondary:
                _say_how_to_resume(tracker.run_id, output_dir)
    if not secondary:
        _print_summary(ctx, subject, time.perf_counter() - started)
    return ctx.metrics


def _log_data_time(tracker: Tracker, found: FoundData | None) -> None:
    """Record how long finding (or downloading) the data took before the run opened.

    The run opens once its data is there, so a download that fails leaves no run; one that
    succeeds is still accounted for, beside the stages' times but outside them: the book's
    datasets download once into a cache, and a first download counted into the ``prepare``
    stage would make one run of a series look minutes slower than the others.
    """
    if found is not None:
        tracker.log_metrics({"time/find_data_seconds": found.seconds}, step=0)


@dataclass
class _OpenedRun:
    """What :func:`_open_run` made ready: the checked config, its data, the tracked run."""

    config: dict[str, Any]
    stages: list[dict[str, Any]]
    subject: dict[str, str]
    #: a secondary DDP rank: it runs the same stages but tracks nothing (rank 0 owns the run)
    secondary: bool
    #: held until the run ends: one process per run folder
    folder_lock: ExitStack
    found: FoundData | None
    tracker: Tracker


def _open_run(
    cfg: DictConfig,
    output_dir: Path,
    overrides: list[str],
    job_num: int | None,
    resume_run_id: str | None,
) -> _OpenedRun:
    """Check the config, find the data, then open the tracked run: in that order, so a
    command refused (a config error, missing data) or interrupted on the way records
    nothing. The folder lock is released again where no run comes of it."""
    require_values(cfg)
    config: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    check_node_shapes(config)
    stages = [_stage_node(node) for node in config["pipeline"]["stages"]]
    check_config(config, stages)
    if interactive() and not distributed.is_secondary_process():
        print_config_tree(config)

    import lightning

    termination.install()
    lightning.seed_everything(int(config.get("seed", 0)), workers=True, verbose=False)
    subject = _run_subject(config, stages)
    secondary = distributed.is_secondary_process()
    distributed.use_job_command_for_ranks()
    # one process per run folder: a resume of a run still training is refused here
    folder_lock = ExitStack()
    if not secondary:
        folder_lock.enter_context(run_lock(output_dir, resume_run_id))
    try:
        # missing data is refused before a run is opened, like a config error
        found = find_data_before_run(config, stages)
        tracker = (
            Tracker()
            if secondary
            else _open_tracker(config, subject, overrides, job_num, resume_run_id)
        )
    except BaseException:
        folder_lock.close()
        raise
    return _OpenedRun(config, stages, subject, secondary, folder_lock, found, tracker)


def _unopened_run_outcome(job_num: int | None, resume_run_id: str | None) -> str:
    """What Ctrl-C before the run opened left: nothing, or the resumed run as it was."""
    if resume_run_id:
        return (
            f"before run {resume_run_id} was reopened: it is as it was, and `python -m "
            f"pipelines.resume {resume_run_id}` still continues it"
        )
    run = "the run" if job_num is None else f"job {job_num}'s run"
    return f"before {run} was opened: nothing of it was recorded"


#: the exit status of a run stopped by Ctrl-C (128 + SIGINT), as shells report it
INTERRUPTED_EXIT_CODE = termination.INTERRUPTED_EXIT_CODE


def _interrupted_by_the_user(exc: BaseException) -> bool:
    """Ctrl-C: a ``KeyboardInterrupt``, or the ``SystemExit(1)`` Lightning raises after it
    stopped a Trainer gracefully on one."""
    return isinstance(exc, KeyboardInterrupt) or (isinstance(exc, SystemExit) and exc.code == 1)


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


def disk_full_error(
    exc: BaseException, run_id: str | None, output_dir: Path
) -> PipelineError | None:
    """A full disk (or quota) while the run wrote a checkpoint, a figure or the store, as
    one paragraph that says the work done is kept and how to continue it; None for any
    other error. It was a 70-220-line traceback from deep inside torch or fsspec."""
    full = next(
        (
            e
            for e in exception_chain(exc)
            if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)
        ),
        None,
    )
    if full is None:
        return None
    where = f" while writing {full.filename}" if full.filename else ""
    resume = (
        f"continue the run where its last complete checkpoint left it with `python -m "
        f"pipelines.resume {run_id}`"
        if run_id
        else "run it again"
    )
    return PipelineError(
        f"The disk is full ({full.strerror}){where}. What the run finished is kept: its "
        f"checkpoints in {output_dir.resolve() / 'checkpoints'} (a damaged one is skipped "
        f"on resume) and its recorded metrics. Free some space, then {resume}."
    )


def _say_how_to_resume(run_id: str, output_dir: Path) -> None:
    """One line after Ctrl-C or SIGTERM: the run is recorded, and this continues it."""
    print(
        f"Interrupted: run {run_id} is marked KILLED; its checkpoints stay in "
        f"{output_dir.resolve() / 'checkpoints'}. Continue it where it stopped with "
        f"`python -m pipelines.resume {run_id}`.",
        file=sys.stderr,
        flush=True,
    )


def _optimises_return_value(hydra_cfg: Any) -> bool:
    """Whether the sweep's sweeper optimises the jobs' return values (Optuna's does; the
    basic grid sweeper ignores them, and its jobs only name the best one at the end)."""
    target = str(OmegaConf.select(hydra_cfg, "sweeper._target_", default="") or "")
    return "optuna" in target.lower()


def objective_value(cfg: DictConfig | dict[str, Any], metrics: dict[str, float]) -> float | None:
    """The configured ``objective.metric`` of a finished run (NaN when it diverged).

    None when the run did not produce that metric: a sweeper counts the trial as failed,
    and the warning names the metrics there are, so ``objective.metric=`` can be fixed.
    """
    name = str(_select(cfg, "objective.metric") or "")
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


def _non_finite_objective(config: dict[str, Any], metrics: dict[str, float]) -> str | None:
    name = _select(config, "objective.metric")
    value = metrics.get(str(name)) if name else None
    if value is None or math.isfinite(value):
        return None
    return (
        f"The objective {name} is {value}: training diverged (try a lower model.lr); the run "
        "is marked FAILED."
    )


def _select(config: DictConfig | dict[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        if not hasattr(node, "get"):
            return None
        node = node.get(part)
    return node


def require_values(cfg: DictConfig) -> None:
    """Mandatory values (``???`` in a config file) must be set before a run is opened."""
    # OmegaConf writes list items as stages[0]; overrides spell them stages.0
    missing = sorted(re.sub(r"\[(\d+)\]", r".\1", key) for key in OmegaConf.missing_keys(cfg))
    if missing:
        keys = ", ".join(f"'{key}'" for key in missing)
        example = " ".join(f"{key}=..." for key in missing)
        raise ConfigValueError(
            f"The config needs a value for {keys}, which has no default. Set it on the command "
            f"line, e.g. `python -m pipelines.run ... {example}`, or in a config file."
        )


def check_config(config: dict[str, Any], stages: list[dict[str, Any]]) -> None:
    """Fail fast on an unknown plugin, key or wrong type: before data loads or a run opens.

    What needs no plugin comes first: a plugin's signature (its keys and their types) is
    known only once its module is imported, and that imports torch and Lightning, 6-8 s on
    a 2-core machine. A misspelt engine key or a value out of range (``model.dropout=2``)
    is answered in about a second instead.
    """
    from pipelines.trainer import check_hardware, trainer_arguments

    check_seed(config.get("seed", 0))
    sweep.check_objective(config.get("objective"))
    check_engine_keys(config)
    SpeedSettings.from_config(config.get("speed"))
    TrackingSettings.from_config(config.get("tracking")).check()
    check_registered_names(config, stages)
    check_ranges_by_name(config, stages)
    registry.check("data", config["data"], path="data")
    registry.check("model", config["model"], path="model")
    for index, node in enumerate(stages):
        registry.check("stage", node, path=f"pipeline.stages[{index}]")
    check_hardware(trainer_arguments(config.get("trainer") or {}))


def check_ranges_by_name(config: dict[str, Any], stages: list[dict[str, Any]]) -> None:
    """The ranges a key's name implies (:data:`pipelines.validation.RANGES`), on the values
    as configured, before any plugin is imported. The plugins' own check repeats them with
    the types; this one only answers sooner (its example is the range's, not the plugin's
    default, which is not known yet)."""
    from pipelines.validation import check_ranges

    nodes = [("data", config.get("data")), ("model", config.get("model"))]
    nodes += [("trainer", config.get("trainer"))]
    nodes += [(f"pipeline.stages[{index}]", node) for index, node in enumerate(stages)]
    for path, node in nodes:
        if isinstance(node, dict):
            check_ranges({k: v for k, v in node.items() if k != "name"}, path=path)


def check_seed(seed: Any) -> None:
    """``seed`` is a whole number. Checked first: the data plugins take ``${seed}`` as their
    own, so ``seed=abc`` was reported as a wrong ``data.seed``, a key nobody had set."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigValueError(
            f"'seed' must be a whole number, got {seed!r}: it seeds every random draw of the "
            "run (the data split, the initial weights, the shuffling). Write e.g. `seed=42`."
        )
    from pipelines.validation import check_ranges

    check_ranges({"seed": seed}, path="")  # numpy's 0..2**32-1, whatever the data plugin


def check_registered_names(config: dict[str, Any], stages: list[dict[str, Any]]) -> None:
    """A model-registry name MLflow would refuse, refused now: MLflow checks it only when
    the report stage logs the model, after the whole training, which then ended in one
    warning and no logged model. MLflow's rules (``mlflow.utils.validation``), without
    importing MLflow for them: not blank, no '/' or ':', not '.' or '..'."""
    named = [("tracking.register_as", (config.get("tracking") or {}).get("register_as"))]
    named += [
        (f"pipeline.stages.{index}.register_as", node.get("register_as"))
        for index, node in enumerate(stages)
    ]
    for key, name in named:
        if name is None:
            continue
        text = str(name)
        if not text.strip() or any(c in text for c in "/:") or text.strip() in (".", ".."):
            raise ConfigValueError(
                f"'{key}' is the name the model is registered under in MLflow's model "
                f"registry, and MLflow refuses {text!r}: a name cannot be blank, contain '/' "
                f"or ':', or be '.' or '..'. Choose another, e.g. `{key}=digits-mlp`, or "
                f"leave it out (null) to log the model without registering it."
            )


#: the config groups every run needs, and the engine's own nodes of settings
REQUIRED_GROUPS = ("pipeline", "data", "model", "trainer")
SETTINGS_NODES = ("speed", "tracking", "objective", "paths")


def check_node_shapes(config: dict[str, Any]) -> None:
    """Every run has its groups, each a mapping, and ``pipeline.stages`` is a list.

    ``~model`` and ``speed=fast`` compose without complaint; the run then failed with a bare
    ``KeyError`` or "dictionary update sequence element" deep in the engine.
    """
    from pipelines.config import group_options

    for name in REQUIRED_GROUPS:
        if not isinstance(config.get(name), dict):
            options = ", ".join(group_options(name))
            got = "removed" if name not in config else f"set to {config[name]!r}"
            raise ConfigValueError(
                f"Every run needs a '{name}' config group, and it was {got}. Choose one with "
                f"`{name}=<option>` (known: {options}), or leave it at its default."
            )
    for name in SETTINGS_NODES:
        if name in config and not isinstance(config[name], dict | None):
            raise ConfigValueError(
                f"'{name}' is a group of settings, not a value (got `{name}={config[name]}`): "
                f"set its keys instead, e.g. `{name}.KEY=VALUE`."
            )
    stages = config["pipeline"].get("stages")
    if not isinstance(stages, list):
        raise ConfigValueError(
            f"'pipeline.stages' must be a list of stage names, e.g. "
            f"`pipeline.stages=[prepare,fit]`; got {stages!r}."
        )


#: keys of the config nodes the engine itself reads (plugins' nodes are checked against their
#: constructors by the registry)
ENGINE_NODES = {
    "pipeline": ("name", "stages"),
    "tracking": ("enabled", "uri", "experiment", "register_as"),
    "objective": ("metric", "direction"),
}
#: top-level keys that are not config groups
ENGINE_KEYS = ("seed", "paths", "speed", "objective")


def check_engine_keys(config: dict[str, Any]) -> None:
    """No misspelt key in the engine's own nodes, and none at the top level.

    ``+tracking.experimnt=foo`` or ``+seeed=3`` composed fine and were then never read: the
    run went on with the defaults, without a word. A top-level key with no close match to
    a known one is left alone (a plugin of the user's may read it).
    """
    from pipelines.config import config_groups
    from pipelines.errors import closest_match, did_you_mean

    for node, keys in ENGINE_NODES.items():
        for key in config.get(node) or {}:
            if key not in keys:
                raise ConfigValueError(
                    f"Unknown key '{node}.{key}'.{did_you_mean(key, keys)} The {node} keys "
                    f"are: {', '.join(keys)}. Remove or rename `{node}.{key}`."
                )
    known = {*config_groups(), *ENGINE_KEYS}
    for key in config:
        match = None if key in known else closest_match(key, known)
        if match:
            raise ConfigValueError(
                f"Unknown top-level key '{key}': nothing reads it. Did you mean '{match}'? "
                f"Remove or rename `{key}`."
            )


def _stage_node(node: Any) -> dict[str, Any]:
    """``fit`` or ``{name: fit, monitor: val/acc}`` -> a plugin node with a ``name``."""
    if isinstance(node, str):
        return {"name": node}
    if isinstance(node, dict) and "name" in node:
        return node
    raise PipelineError(
        f"Each entry of pipeline.stages must be a stage name or a mapping with a 'name' key; "
        f"got {node!r}. Known stages: {', '.join(registry.names('stage'))}."
    )


def _run_subject(config: dict[str, Any], stages: list[dict[str, Any]]) -> dict[str, str]:
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
    name = "-".join(_chosen(key, subject[key]) for key in ("model", "data") if key in subject)
    run_name = f"{name or subject['pipeline']}-{datetime.now():%Y%m%d-%H%M%S}"
    if job_num is not None:
        run_name += f"-job{job_num}"
    tags = {**subject, "overrides": " ".join(overrides)}
    return open_tracker(
        settings,
        run_name,
        tags=tags,
        parent_run_id=sweep.parent_run_id(),
        resume_run_id=resume_run_id,
    )


def _chosen(group: str, plugin: str) -> str:
    """The option chosen for ``group`` on the command line or by a preset (``digits_few``,
    ``co2``); the plugin's name where no Hydra job is running (the engine called directly)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return plugin
    choice = HydraConfig.get().runtime.choices.get(group)
    return str(choice) if choice else plugin


def _print_summary(ctx: RunContext, subject: dict[str, str], seconds: float) -> None:
    what = (
        f"{_chosen('model', subject['model'])} on {_chosen('data', subject['data'])} "
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


def report_error(exc: BaseException) -> None:
    """Print a user-facing error as one paragraph on stderr."""
    print(f"Error: {exc}", file=sys.stderr, flush=True)
