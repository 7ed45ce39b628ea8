"""A run's model as an MLflow pyfunc model: raw inputs in, the :class:`Predictor`'s table out,
in any process that has pipelines installed, without the run's record or its data.

The run's MLflow ``model`` packages what the predictor needs, as the model's artifacts:

* ``config``: ``config.yaml``, the run's resolved ``model`` and ``data`` config nodes;
* ``checkpoint``: ``model.ckpt``, the kept checkpoint's hyper-parameters and weights (the
  best one, or the final ``last.ckpt`` of a run without validation: what ``predict`` uses);
* ``data/<file>``: what the data plugin learned (its ``artifacts()``: ``tokenizer.json``,
  ``classes.json``, ``features.json``, ``scaling.json``).

Loaded (``mlflow.pyfunc.load_model("runs:/<id>/model")``, ``mlflow models serve``), it
builds the model plugin by name from the checkpoint, the data plugin from its node, hands it
the files (``use_artifacts``) and readies its encoding (``prepare_to_encode``): the same
:class:`Predictor` as ``python -m pipelines.predict`` and ``pipelines.load``, so all three
answer alike. A model that rebuilds an earlier run's network (a ``runs:/`` backbone) still
finds that run in ``$MLFLOW_TRACKING_URI``.

Inputs are what the data plugin's ``encode_values`` takes: texts (a list of strings, a
DataFrame's ``text`` column), images (paths or bytes, a DataFrame's ``path`` column), table
rows (a DataFrame of the training columns). Served, ``{"inputs": [...]}``,
``{"inputs": {"text": [...]}}``, ``{"dataframe_split": ...}`` and ``{"dataframe_records":
...}`` arrive as those. Refused inputs raise :class:`ServedModelError`, one paragraph,
which the server answers as HTTP 400 with that message.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mlflow.pyfunc
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from pipelines.errors import PipelineError

#: the artifact (and ``log_model`` name) of the run's served model
MODEL_ARTIFACT = "model"
CONFIG = "config"
CHECKPOINT = "checkpoint"
#: prefix of the data plugin's files among the model's artifacts
DATA_PREFIX = "data/"
#: the distributions a served model needs, pinned to the versions that logged it
REQUIREMENTS = ("torch", "lightning", "pipelines", "mlflow")
#: the model's code (MLflow's "models from code": nothing of it is unpickled when loaded)
CODE = '''"""The MLflow model of a pipelines run: pipelines.inference.served.ServedModel."""

import mlflow

from pipelines.inference.served import ServedModel

mlflow.models.set_model(ServedModel())
'''


class ServedModelError(MlflowException, PipelineError):
    """Inputs the model cannot take, or a model that cannot be rebuilt, in one paragraph:
    a :class:`PipelineError` for Python callers, an MLflow error (HTTP 400) for the server."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


class ServedModel(mlflow.pyfunc.PythonModel):
    """The pyfunc model of one run: :meth:`load_context` rebuilds its :class:`Predictor`
    from the packaged artifacts, :meth:`predict` answers with its table."""

    # ``model_input`` takes texts, paths, bytes or tables: no type hint, so MLflow neither
    # infers a signature that would refuse all but one of them, nor warns for the missing one
    _skip_type_hint_validation = True

    def __init__(self) -> None:
        self.run_id = self.run_name = ""
        self.predictor: Any = None
        self.lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"the MLflow model of run '{self.run_id}' ({self.run_name})"

    def load_context(self, context: Any) -> None:
        settings = _run_of(context.artifacts)
        self.run_id = str(settings.get("run_id", ""))
        self.run_name = str(settings.get("run_name", ""))
        try:
            self.predictor = build_predictor(context.artifacts, self.name)
        except PipelineError as exc:
            raise ServedModelError(str(exc)) from None

    def predict(self, context: Any, model_input, params: dict[str, Any] | None = None) -> Any:
        if self.predictor is None:
            self.load_context(context)
        try:
            inputs = plain_inputs(model_input)
            with self.lock:  # a plugin may keep state between encoding and decoding
                return self.predictor.predict(inputs)
        except ServedModelError:
            raise
        except PipelineError as exc:
            raise ServedModelError(str(exc)) from None


def build_predictor(artifacts: Mapping[str, str], name: str) -> Any:
    """The :class:`Predictor` of a served model's ``artifacts`` (name -> local path)."""
    import yaml

    from pipelines import registry
    from pipelines.inference.predictor import Predictor
    from pipelines.training.run_loader import model_from_checkpoint

    missing = [key for key in (CONFIG, CHECKPOINT) if key not in artifacts]
    if missing:
        raise PipelineError(
            f"{name} lacks its {' and '.join(missing)} artifact: it was not logged by "
            "pipelines' report stage, or was changed since. Log it again by re-running the run."
        )
    config = yaml.safe_load(Path(artifacts[CONFIG]).read_text(encoding="utf-8")) or {}
    if not isinstance(config.get("model"), Mapping) or not isinstance(config.get("data"), Mapping):
        raise PipelineError(f"The config.yaml of {name} names no model and data.")
    model = model_from_checkpoint(config["model"]["name"], artifacts[CHECKPOINT]).eval()
    datamodule = registry.build("data", config["data"], path="data")
    files = {
        key.removeprefix(DATA_PREFIX): Path(path)
        for key, path in artifacts.items()
        if key.startswith(DATA_PREFIX)
    }
    if hasattr(datamodule, "use_artifacts"):
        datamodule.use_artifacts(files)
    prepare_to_encode = getattr(datamodule, "prepare_to_encode", None)
    if prepare_to_encode is None or not prepare_to_encode(model):
        raise PipelineError(
            f"The data plugin of {name} ({type(datamodule).__name__}) cannot encode inputs "
            "from the files the run logged alone (it has no prepare_to_encode, or that "
            "needs the training data): this model cannot be served without its data. "
            "Use python -m pipelines.predict RUN_ID FILES where the data is."
        )
    return Predictor(model, datamodule, name=name)


def _run_of(artifacts: Mapping[str, str]) -> dict[str, Any]:
    """The ``run`` node (id and name) of the packaged config, for messages; {} if absent."""
    import yaml

    try:
        config = yaml.safe_load(Path(artifacts[CONFIG]).read_text(encoding="utf-8")) or {}
    except (KeyError, OSError, yaml.YAMLError):
        return {}
    run = config.get("run") if isinstance(config, Mapping) else None
    return dict(run) if isinstance(run, Mapping) else {}


def plain_inputs(model_input: Any) -> Any:
    """``model_input`` as the data plugin's ``encode_values`` takes it: the server's numpy
    arrays (``{"inputs": [...]}``) as lists of Python values, its columns (``{"inputs":
    {"text": [...]}}``) and rows (``[{"col": 1.0}]``) as a DataFrame; a DataFrame, a list
    of strings, paths or bytes as given."""
    import numpy as np
    import pandas as pd

    if isinstance(model_input, pd.Series):
        return [_plain(value) for value in model_input.tolist()]
    if isinstance(model_input, np.ndarray):
        return _column(model_input)
    if isinstance(model_input, Mapping):
        return pd.DataFrame({str(key): _column(values) for key, values in model_input.items()})
    if isinstance(model_input, (list, tuple)):
        items = [_plain(item) for item in model_input]
        if items and all(isinstance(item, Mapping) for item in items):
            return pd.DataFrame.from_records(
                [{str(key): _plain(value) for key, value in item.items()} for item in items]
            )
        return items
    return model_input


def _column(values: Any) -> list[Any]:
    import numpy as np

    if isinstance(values, np.ndarray):
        return [_plain(value) for value in values.reshape(-1)] if values.ndim else [_plain(values)]
    if isinstance(values, (list, tuple)):
        return [_plain(value) for value in values]
    return [_plain(values)]


def _plain(value: Any) -> Any:
    """A numpy scalar or 0-d array as its Python value (``np.str_`` as ``str``)."""
    import numpy as np

    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str):
        return str(value)
    return value


def log_served_model(
    ctx: Any, datamodule: Any, checkpoint: str | Path, register_as: str | None = None
) -> None:
    """Log the run's model as a pyfunc :class:`ServedModel` under ``model`` (registered as
    ``register_as`` where given), packaging the config's ``model`` and ``data`` nodes, the
    ``checkpoint``'s hyper-parameters and weights and ``datamodule.artifacts()``; into the
    run ``ctx.tracker`` tracks, which stays open.

    It is rebuilt from that package first: a data plugin that cannot encode without its
    data raises a :class:`PipelineError` here, not when someone loads the model. The
    requirements are named (MLflow's inference scans every module loaded)."""
    from importlib import metadata

    import torch
    import yaml

    from pipelines.training.run_loader import load_checkpoint

    run = {"run_id": ctx.tracker.run_id, "run_name": getattr(ctx.tracker, "run_name", "")}
    # the run's name and id go into the config artifact: a model_config would be logged as
    # params of the run, which reruns compare
    config = {**{key: ctx.config[key] for key in ("model", "data")}, "run": run}
    with tempfile.TemporaryDirectory(prefix="pipelines-served-") as tmp:
        folder = Path(tmp)
        artifacts = {CONFIG: folder / "config.yaml", CHECKPOINT: folder / "model.ckpt"}
        artifacts[CONFIG].write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        kept = load_checkpoint(checkpoint)  # weights and hyper-parameters, no optimizer state
        slim = {
            "hyper_parameters": dict(kept.get("hyper_parameters") or {}),
            "state_dict": kept["state_dict"],
        }
        torch.save(slim, artifacts[CHECKPOINT])
        learned = datamodule.artifacts() if hasattr(datamodule, "artifacts") else {}
        (folder / "data").mkdir()
        for name, path in learned.items():
            artifacts[f"{DATA_PREFIX}{name}"] = Path(shutil.copy(path, folder / "data" / name))
        files = {key: str(path) for key, path in artifacts.items()}
        served = ServedModel()
        served.load_context(SimpleNamespace(artifacts=files))  # refused here, not when loaded
        (folder / "served_model.py").write_text(CODE, encoding="utf-8")
        requirements = [f"{name}=={metadata.version(name)}" for name in REQUIREMENTS]
        mlflow.set_tracking_uri(ctx.tracker.uri)
        mlflow.start_run(run_id=ctx.tracker.run_id)
        try:
            with _no_progress_bars():
                mlflow.pyfunc.log_model(
                    name=MODEL_ARTIFACT,
                    python_model=str(folder / "served_model.py"),
                    artifacts=files,
                    pip_requirements=requirements,
                    registered_model_name=register_as,
                )
        finally:
            mlflow.end_run(status="RUNNING")  # the engine sets the run's final status


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """MLflow copies each artifact into the model with a progress bar per file."""
    variable = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(variable)
    os.environ[variable] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = before
