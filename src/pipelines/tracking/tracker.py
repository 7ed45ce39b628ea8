"""Run tracking: one MLflow run per pipeline run, or nothing at all with ``tracking=none``.

The engine talks to a small :class:`Tracker` interface so stages never import MLflow and a
run without tracking costs nothing. Metrics are buffered and sent with ``log_batch``: a
SQLite write per training step would dominate a small model's step time.
"""

from __future__ import annotations

import logging
import posixpath
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pipelines.tracking.store import TrackingSettings, get_or_create_experiment, open_client
from pipelines.tracking.store_checks import check_store, explained_store_errors

#: MLflow limits (see mlflow.utils.validation)
_MAX_PARAM_VALUE = 6000
_MAX_BATCH_PARAMS = 100
_MAX_BATCH_METRICS = 1000
_FLUSH_SECONDS = 10.0

log = logging.getLogger(__name__)

#: run tag holding the run's output folder (its checkpoints), which resume continues in
OUTPUT_DIR_TAG = "pipelines.output_dir"


class Tracker:
    """No-op tracker (``tracking=none``); :class:`MlflowTracker` records for real."""

    run_id: str | None = None
    uri: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record configuration values (strings in MLflow's params table)."""

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Record numeric values at a step (buffered; see :meth:`flush`)."""

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Record searchable labels (model, data, pipeline, ...)."""

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Copy a file into the run's artifacts."""

    def log_text(self, text: str, artifact_file: str) -> None:
        """Store text (e.g. the resolved config) as an artifact file."""

    def artifact_files(self, folder: str) -> list[str]:
        """The paths of the files directly in the run's artifact ``folder`` (not below)."""
        return []

    def delete_artifact(self, path: str) -> bool:
        """Remove the artifact file ``path`` from the run; whether it is gone.

        False where the artifact store cannot delete: MLflow's artifact repositories for
        Databricks, DBFS and FTP refuse, and some others silently do nothing.
        """
        return False

    def flush(self, wait: bool = True) -> None:
        """Send buffered metrics now; ``wait=False`` hands them to a background writer
        (training goes on while they are written; :meth:`finish` waits for them)."""

    def finish(self, status: str) -> None:
        """End the run with an MLflow status: FINISHED, FAILED or KILLED."""

    def child(self, run_name: str, tags: Mapping[str, str] | None = None) -> Tracker:
        """A nested run under this one (e.g. one per K-fold fold); finish it yourself."""
        return Tracker()


class MlflowTracker(Tracker):
    """One MLflow run, created up front so a crash still leaves a FAILED run behind."""

    def __init__(
        self,
        settings: TrackingSettings,
        run_name: str,
        tags: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
        resume_run_id: str | None = None,
    ) -> None:
        """``resume_run_id`` reopens that run (status RUNNING again) instead of creating one:
        a resumed training goes on in the run it started in."""
        settings.check()
        self.uri = settings.resolved_uri()
        with explained_store_errors(settings, self.uri):
            check_store(settings, self.uri)
            self.client = open_client(self.uri)
            if resume_run_id:
                run = self.client.get_run(resume_run_id)
                self.experiment_id = run.info.experiment_id
                self.client.update_run(resume_run_id, status="RUNNING")
                self.run_id = resume_run_id
                self.run_name = run.info.run_name
            else:
                self.experiment_id = get_or_create_experiment(
                    self.client, self.uri, settings.experiment
                )
                all_tags = dict(tags or {})
                if parent_run_id:
                    all_tags["mlflow.parentRunId"] = parent_run_id
                run = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
                self.run_id = run.info.run_id
                self.run_name = run_name
        self.settings = settings
        self._pending: list[Any] = []
        self._last_flush = time.monotonic()
        # one background writer, so metric batches and tags land in order; made on first use
        self._writer: ThreadPoolExecutor | None = None
        self._writes: list[Future[None]] = []

    def __getstate__(self) -> dict[str, Any]:
        # launchers pickle the sweep callback's tracker: the writer thread stays behind
        self.flush()
        return {**self.__dict__, "_writer": None, "_writes": []}

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(key, _param_value(value)) for key, value in params.items()]
        for chunk in _chunks(items, _MAX_BATCH_PARAMS):
            self.client.log_batch(self.run_id, params=chunk, synchronous=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        for key, value in metrics.items():
            self._pending.append(Metric(key, float(value), now, int(step or 0)))
        if (
            len(self._pending) >= _MAX_BATCH_METRICS
            or time.monotonic() - self._last_flush > _FLUSH_SECONDS
        ):
            self.flush(wait=False)

    def flush(self, wait: bool = True) -> None:
        # A log_batch into SQLite takes ~7 ms here (a commit per batch), paid once or twice
        # an epoch; in the background it overlaps training instead of adding to it.
        pending, self._pending = self._pending, []
        self._last_flush = time.monotonic()
        if pending:
            self._in_background(self._write_metrics, pending)
        finished = [write for write in self._writes if wait or write.done()]
        self._writes = [write for write in self._writes if write not in finished]
        errors = [write.exception() for write in finished if write.exception() is not None]
        if errors:  # a failed write is reported by the next flush, never lost
            raise errors[0]

    def _in_background(self, write: Any, *args: Any) -> None:
        """Queue a write for the one background writer, which keeps their order."""
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="mlflow-writer")
        self._writes.append(self._writer.submit(write, *args))

    def _write_metrics(self, metrics: list[Any]) -> None:
        for chunk in _chunks(metrics, _MAX_BATCH_METRICS):
            self.client.log_batch(self.run_id, metrics=chunk, synchronous=True)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        # ~7 ms each into SQLite, and stages set them while training waits: in the
        # background too. A failed write is raised by the next flush or by finish(), not
        # here: tags are set on the way out of failures, whose own error must stay the one
        from mlflow.entities import RunTag

        self._in_background(self._write_tags, [RunTag(k, str(v)) for k, v in tags.items()])

    def _write_tags(self, tags: list[Any]) -> None:
        self.client.log_batch(self.run_id, tags=tags, synchronous=True)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def artifact_files(self, folder: str) -> list[str]:
        items = self.client.list_artifacts(self.run_id, folder)
        return [item.path for item in items if not item.is_dir]

    def delete_artifact(self, path: str) -> bool:
        # MlflowClient has no call for it: through the run's artifact repository, which
        # may raise (NotImplementedError, MlflowException) or ignore it; what is listed
        # afterwards is the answer
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        try:
            artifact_uri = self.client.get_run(self.run_id).info.artifact_uri
            get_artifact_repository(artifact_uri, tracking_uri=self.uri).delete_artifacts(path)
            return path not in self.artifact_files(posixpath.dirname(path))
        except Exception as exc:
            log.debug("could not delete artifact %s of run %s: %s", path, self.run_id, exc)
            return False

    def finish(self, status: str) -> None:
        try:
            self.flush()
        except BaseException:
            if status == "FINISHED":
                status = "FAILED"  # metrics were lost: the run must not look complete
            raise
        finally:
            if self._writer is not None:
                self._writer.shutdown(wait=True)
                self._writer = None
            self.client.set_terminated(self.run_id, status=status)

    def child(self, run_name: str, tags: Mapping[str, str] | None = None) -> Tracker:
        return MlflowTracker(self.settings, run_name, tags=tags, parent_run_id=self.run_id)


def open_tracker(
    settings: TrackingSettings,
    run_name: str,
    tags: Mapping[str, str] | None = None,
    parent_run_id: str | None = None,
    resume_run_id: str | None = None,
) -> Tracker:
    """An MLflow tracker, or the no-op one when tracking is disabled."""
    if not settings.enabled:
        return Tracker()
    return MlflowTracker(
        settings, run_name, tags=tags, parent_run_id=parent_run_id, resume_run_id=resume_run_id
    )


def _param_value(value: Any) -> str:
    text = "None" if value is None else str(value)
    return text if len(text) <= _MAX_PARAM_VALUE else text[: _MAX_PARAM_VALUE - 3] + "..."


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
