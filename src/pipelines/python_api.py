"""The Python API for notebooks and scripts: ``pipelines.train`` and ``pipelines.load``.

    result = pipelines.train("model=convnet", "trainer.max_epochs=3")
    result.metrics                      # {'test/acc': 0.97, ...}, as MLflow recorded them
    pipelines.load(result.run_id).predict(["a.png", "b.png"])   # a pandas DataFrame

``train`` goes the CLI's way: its command-line checks, its config folders (installed
plugins' included) composed with Hydra's compose API, :func:`~pipelines.runner.run_pipeline`,
a run folder under ``outputs/runs/<date>/<time>`` of the working directory (never changed).
A mistake raises one :class:`~pipelines.errors.PipelineError` with the CLI's paragraph. What
a run changes in the process is put back after it: call it again and again in one kernel.
"""

from __future__ import annotations

import copy
import functools
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pipelines.errors import PipelineError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from pipelines.context import RunContext
    from pipelines.inference.predictor import Predictor

T = TypeVar("T")


@dataclass(repr=False)
class TrainResult:
    """One finished run: its MLflow id and name, final metrics, model and data module."""

    run_id: str | None  # None with tracking=none
    run_name: str | None
    #: the run's final metrics (``test/acc``, ``best/val_loss``, ...), as MLflow recorded them
    metrics: dict[str, float]
    #: the trained model, on the CPU (the best epoch's weights where a test stage loaded them)
    model: Any
    #: the data module, set up: its splits, classes and encoders
    datamodule: Any
    output_dir: Path
    tracking_uri: str | None

    def __repr__(self) -> str:
        metrics = ", ".join(f"{key}={value:.4g}" for key, value in sorted(self.metrics.items()))
        return (
            f"TrainResult(run {self.run_id} ({self.run_name}); {metrics}; "
            f"model={type(self.model).__name__}, datamodule={type(self.datamodule).__name__}, "
            f"output_dir={str(self.output_dir)!r})"
        )


def _one_paragraph(function: Callable[..., T]) -> Callable[..., T]:
    """A :class:`PipelineError` raised as the CLI shows it: its paragraph, without the
    engine's frames above it (a mistake in an override is not a bug to debug)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return function(*args, **kwargs)
        except PipelineError as exc:
            raise exc.with_traceback(None) from None

    return wrapper


@_one_paragraph
def train(
    *overrides: str, tracking_uri: str | None = None, progress: bool | None = None
) -> TrainResult:
    """Train one run from the CLI's overrides (``"model=convnet"``, ``"trainer.max_epochs=3"``).

    ``tracking_uri``: the MLflow store (default: ``$MLFLOW_TRACKING_URI``, else ``./mlruns``).
    ``progress``: a line per epoch where no progress bar is drawn (default: in Jupyter; at a
    terminal the CLI's bar shows); False: no bar either. Ctrl-C stops the run (KILLED) with
    a ``KeyboardInterrupt``. Raises :class:`~pipelines.errors.PipelineError`.
    """
    from omegaconf import OmegaConf, open_dict

    from pipelines.runner import run_pipeline
    from pipelines.runtime.console import interactive

    cfg = compose_config(list(overrides))
    output_dir = Path(str(OmegaConf.select(cfg, "hydra.run.dir"))).absolute()
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        if tracking_uri is not None:
            cfg.tracking.uri = tracking_uri
        if progress is False and cfg.trainer.get("enable_progress_bar") is None:
            cfg.trainer.enable_progress_bar = False  # no bar at a terminal either
    task_cfg = copy.deepcopy(cfg)  # what Hydra hands its task function: no hydra node
    with open_dict(task_cfg):
        del task_cfg["hydra"]
    in_jupyter = "ipykernel" in sys.modules
    lines = (in_jupyter if progress is None else progress) and not interactive()
    kept: list[RunContext] = []

    def on_start(context: RunContext) -> None:
        kept.append(context)
        context.epoch_lines = lines

    try:
        with _as_a_hydra_job(cfg):
            metrics = run_pipeline(
                task_cfg,
                output_dir=output_dir,
                overrides=list(cfg.hydra.overrides.task),
                on_start=on_start,
            )
    except SystemExit as exc:  # Ctrl-C or SIGTERM (the run is KILLED): not the kernel's end
        raise KeyboardInterrupt(f"the run was stopped (exit status {exc.code})") from None
    finally:
        for context in kept:
            _let_go(context)
    (context,) = kept
    return TrainResult(
        run_id=context.tracker.run_id,
        run_name=getattr(context.tracker, "run_name", None),
        metrics=dict(metrics),
        model=context.model,
        datamodule=context.datamodule,
        output_dir=output_dir,
        tracking_uri=context.tracker.uri,
    )


@_one_paragraph
def load(run_id: str, tracking_uri: str | None = None) -> Predictor:
    """A finished run's model with its encoders; ``.predict(inputs)`` takes file paths,
    strings or a DataFrame of table rows and returns the CLI ``predict``'s columns."""
    from pipelines.inference.predictor import Predictor

    return Predictor.from_run(run_id, tracking_uri)


def compose_config(overrides: list[str]) -> DictConfig:
    """The config ``python -m pipelines.run OVERRIDES`` runs with (its ``hydra`` node kept),
    after the command line's checks; their and Hydra's errors as the CLI's paragraph."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    from pipelines.checks.command_line import checked_overrides
    from pipelines.checks.composition import describe
    from pipelines.config import config_dir

    for override in overrides:
        if not isinstance(override, str) or override.startswith("-"):
            raise PipelineError(
                f"{override!r} is not an override: pipelines.train takes KEY=VALUE strings, "
                "as in pipelines.train('model=convnet', 'trainer.max_epochs=3'). Command-line "
                "flags (-m for a sweep, --cfg) are for `python -m pipelines.run`."
            )
    overrides = checked_overrides(overrides)  # the CLI's checks
    backup = get_gh_backup()  # whatever Hydra state the caller has, put back after
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(config_dir()), job_name="run", version_base="1.3"):
            return compose("config", overrides=overrides, return_hydra_config=True)
    except Exception as exc:
        message = describe(exc, overrides)
        if message is None:
            raise
        raise PipelineError(message) from None
    finally:
        restore_gh_from_backup(backup)


@contextmanager
def _as_a_hydra_job(cfg: DictConfig) -> Iterator[None]:
    """Hydra's job config set as the CLI has it (runs are named after the presets chosen);
    afterwards, what the run changed in the process put back: that config, the Ctrl-C and
    SIGTERM handlers (Lightning ignores Ctrl-C after one), ``MLFLOW_TRACKING_URI`` (which
    the report stage's ``mlflow.set_tracking_uri`` sets)."""
    from hydra.core.hydra_config import HydraConfig

    hydra_config, previous = HydraConfig.instance(), HydraConfig.instance().cfg
    signals = [signal.SIGINT, signal.SIGTERM]
    if threading.current_thread() is not threading.main_thread():
        signals = []  # a thread cannot set them, nor the run
    handlers = {signum: signal.getsignal(signum) for signum in signals}
    tracking_variable = os.environ.get("MLFLOW_TRACKING_URI")
    hydra_config.set_config(cfg)
    try:
        with warnings.catch_warnings():  # MLflow imports tqdm.auto: "install ipywidgets"
            warnings.filterwarnings("ignore", message="IProgress not found")
            yield
    finally:
        hydra_config.cfg = previous
        for signum, handler in handlers.items():
            if handler is not None:  # None: not set from Python
                signal.signal(signum, handler)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        if tracking_variable is not None:
            os.environ["MLFLOW_TRACKING_URI"] = tracking_variable


def _let_go(context: RunContext) -> None:
    """Hand back the GPU memory and the Trainer the run held: a result kept in a notebook
    holds its model and data on the CPU, without the optimizer's state."""
    import torch
    from lightning.pytorch import LightningModule

    model, datamodule = context.model, context.datamodule
    if isinstance(model, torch.nn.Module):
        model.cpu()
    if isinstance(model, LightningModule):
        model.trainer = None
    if hasattr(datamodule, "move_splits_to"):
        datamodule.move_splits_to(torch.device("cpu"))
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()
