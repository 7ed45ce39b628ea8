"""The MLflow store a run is tracked in: where it is (``tracking.uri``, the environment, or
``./mlruns``), its experiment, and a client that survives parallel writers."""

from __future__ import annotations

import errno
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.errors import ConfigValueError, TrackingStoreError
from pipelines.tracking.store_checks import check_active

DEFAULT_STORE_DIR = "mlruns"


@dataclass(frozen=True)
class TrackingSettings:
    """Where and how a run is tracked (the ``tracking`` config node)."""

    enabled: bool = True
    uri: str | None = None
    experiment: str = "pipelines"

    @classmethod
    def from_config(cls, node: Mapping[str, Any] | None) -> TrackingSettings:
        """Settings from the ``tracking`` config node (missing keys take the defaults)."""
        node = node or {}
        experiment = node.get("experiment", "pipelines")
        return cls(
            enabled=bool(node.get("enabled", True)),
            uri=node.get("uri"),
            # null stays empty, for check() to refuse: str() made it an experiment "None"
            experiment="" if experiment is None else str(experiment),
        )

    def check(self) -> None:
        """Refuse an empty experiment name before anything runs.

        MLflow refuses ``''`` only when it creates the experiment (a traceback), and
        ``tracking.experiment=null`` would otherwise record the run in an experiment "None".
        """
        if self.enabled and not self.experiment.strip():
            raise ConfigValueError(
                "'tracking.experiment' is empty or null: every tracked run goes into a "
                "named MLflow experiment. Name one, e.g. "
                "`tracking.experiment=pipelines` (the default, also what leaving the key "
                "out gives), or run without tracking with `tracking=none`."
            )

    def uri_origin(self) -> str:
        """Which setting chose the store, as messages name it: the one a user changes."""
        if self.uri:
            return "set by tracking.uri"
        if os.environ.get("MLFLOW_TRACKING_URI"):
            return "set by the MLFLOW_TRACKING_URI variable"
        return "the default store: neither tracking.uri nor MLFLOW_TRACKING_URI is set"

    def resolved_uri(self, cwd: Path | None = None) -> str:
        """``tracking.uri`` if given, else ``$MLFLOW_TRACKING_URI``, else ``./mlruns`` (SQLite)."""
        if self.uri:
            return self.uri
        if os.environ.get("MLFLOW_TRACKING_URI"):
            return os.environ["MLFLOW_TRACKING_URI"]
        return default_store_uri(cwd)


def default_store_uri(cwd: Path | None = None) -> str:
    """SQLite metadata in ``./mlruns/mlflow.db``; MLflow 3 refuses plain file stores."""
    store = (cwd or Path.cwd()).resolve() / DEFAULT_STORE_DIR
    return f"sqlite:///{store / 'mlflow.db'}"


def _default_artifact_location(uri: str, experiment: str) -> str | None:
    """Keep artifacts beside a SQLite store (``mlruns/artifacts/<experiment>``).

    MLflow's own default is ``./mlruns`` relative to the working directory, which scatters
    artifacts wherever a run was started. Servers (http, databricks) choose for themselves.
    """
    if not uri.startswith("sqlite:///"):
        return None
    store_dir = Path(uri.removeprefix("sqlite:///")).parent
    return (store_dir / "artifacts" / experiment).as_uri()


def get_or_create_experiment(client: Any, uri: str, name: str) -> str:
    """The id of experiment ``name``, created (with artifacts beside the store) if needed."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        check_active(experiment, uri)
        return experiment.experiment_id
    try:
        return client.create_experiment(
            name,
            artifact_location=_default_artifact_location(uri, name),
            # the UI's "model training" layout (runs, metrics, charts), not its GenAI one
            tags={"mlflow.experimentKind": "custom_model_development"},
        )
    except MlflowException:  # created concurrently by a parallel job
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        check_active(experiment, uri)
        return experiment.experiment_id


#: how long a run waits for another process creating the same SQLite store's tables
LOCK_TIMEOUT_SECONDS = 60


def open_client(uri: str) -> Any:
    """An ``MlflowClient`` on ``uri`` that survives parallel jobs sharing one SQLite store.

    Two things go wrong when several processes start on one ``mlruns/mlflow.db`` (measured
    with 8 processes on a fresh store: ``duplicate column name`` from concurrent schema
    migrations): creating the tables is therefore done under a file lock, once per process;
    and a write that finds the database locked for longer than SQLite's own 5 s wait is
    retried with exponential backoff rather than failing the run.
    """
    from mlflow import MlflowClient

    if not uri.startswith("sqlite:///"):
        return _RetryingClient(MlflowClient(tracking_uri=uri))
    from filelock import FileLock, Timeout

    database = Path(uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    lock = Path(str(database) + ".lock")
    if not lock.exists() and not os.access(database.parent, os.W_OK):
        # filelock takes a refused lock file for one held by another process, and waits
        raise PermissionError(errno.EACCES, "cannot create the store's lock file", str(lock))
    try:
        with FileLock(str(lock), timeout=LOCK_TIMEOUT_SECONDS):
            if not database.exists():
                _create_store(uri)
            client = MlflowClient(tracking_uri=uri)
            client.search_experiments(max_results=1)  # creates or upgrades the tables
    except Timeout:
        raise TrackingStoreError(
            f"The tracking store {database} stayed locked for {LOCK_TIMEOUT_SECONDS} s: "
            f"another process holds {lock} while it creates the store's tables, which takes "
            f"seconds. If no other run is starting on this store, delete {lock} and run "
            "again."
        ) from None
    return _RetryingClient(client)


def _create_store(uri: str) -> None:
    """A new SQLite store whose ``Default`` experiment keeps its artifacts beside the store
    (``mlruns/artifacts/0``), as ours do: MLflow's client would record ``./mlruns`` of the
    working directory of whichever process created the store."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    artifacts = Path(uri.removeprefix("sqlite:///")).parent / "artifacts"
    SqlAlchemyStore(uri, artifacts.as_uri()).engine.dispose()


class _RetryingClient:
    """``MlflowClient`` whose calls are retried while SQLite reports the database locked."""

    attempts = 8

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_client":
            # not yet set while unpickling (launchers pickle the sweep callback's tracker)
            raise AttributeError(name)
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            delay = 0.1
            for attempt in range(self.attempts):
                try:
                    return attribute(*args, **kwargs)
                except Exception as exc:
                    if attempt == self.attempts - 1 or not _is_lock_error(exc):
                        raise
                    time.sleep(delay * (1.0 + random.random()))
                    delay *= 2

        return call


def _is_lock_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "database is locked" in text or "database table is locked" in text


def ui_command(uri: str | None) -> str:
    """The command that opens the MLflow UI on a store."""
    if not uri:
        return ""
    if uri == default_store_uri():
        return "python -m pipelines.ui"
    return f"python -m pipelines.ui --tracking-uri {uri}"
