"""Rebuild the model of an earlier run from its own record: config, hyper-parameters, weights.

``runs:/<run_id>`` and ``models:/<name>/<version or alias>`` (MLflow's model registry) both
resolve to a run; that run's logged ``config.yaml`` names the model plugin and its best
checkpoint holds the constructor arguments and the weights. Today's defaults play no part,
so a network trained months ago comes back as it was.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines import registry
from pipelines.errors import PipelineError

#: run tag naming the artifact path of the checkpoint the run's final metrics come from
BEST_CHECKPOINT_TAG = "pipelines.best_checkpoint"


def is_run_reference(text: str | None) -> bool:
    return bool(text) and str(text).startswith(("runs:/", "models:/"))


def resolve_run_id(reference: str, client: Any) -> str:
    """The run id behind ``runs:/<id>[/...]`` or ``models:/<name>/<version|alias>``."""
    from mlflow.exceptions import MlflowException

    if reference.startswith("runs:/"):
        run_id = reference.removeprefix("runs:/").strip("/").split("/")[0]
        if not run_id:
            raise PipelineError(f"'{reference}' names no run; write runs:/<run_id>.")
        return run_id
    parts = reference.removeprefix("models:/").strip("/").split("/")
    if len(parts) != 2:
        raise PipelineError(
            f"'{reference}' is not a registered-model reference; write "
            "models:/<name>/<version> or models:/<name>/<alias>."
        )
    name, version = parts
    try:
        found = (
            client.get_model_version(name, version)
            if version.isdigit()
            else client.get_model_version_by_alias(name, version)
        )
    except MlflowException as exc:
        raise PipelineError(
            f"No registered model version '{reference}' in the tracking store "
            f"({client.tracking_uri}): {exc.message}. List them in the MLflow UI's Models tab."
        ) from None
    if not found.run_id:
        raise PipelineError(f"The model version '{reference}' is not linked to a run.")
    return found.run_id


@dataclass
class RecordedRun:
    """What the tracking store holds of an earlier run: enough to rebuild or continue it."""

    run_id: str
    run_name: str
    status: str
    config: dict[str, Any]
    tags: dict[str, str]
    metrics: dict[str, float]
    client: Any

    def download(self, artifact: str, dest: str) -> str:
        return self.client.download_artifacts(self.run_id, artifact, dest)

    def artifact_files(self, folder: str, dest: str) -> dict[str, Path]:
        """The files directly in the run's artifact ``folder`` (e.g. ``data``: what its data
        plugin fitted, such as ``tokenizer.json``), downloaded into ``dest``, by file name;
        empty when the run logged nothing there."""
        from mlflow.exceptions import MlflowException

        try:
            items = list(self.client.list_artifacts(self.run_id, folder))
        except (MlflowException, OSError):
            return {}
        files: dict[str, Path] = {}
        for item in items:
            if item.is_dir:
                continue
            try:
                files[Path(item.path).name] = Path(self.download(item.path, dest))
            except (MlflowException, OSError):
                raise PipelineError(
                    f"The artifact '{item.path}' of run '{self.run_id}' is listed but cannot "
                    "be read (deleted from the artifact store?), so the run's data cannot be "
                    "rebuilt as it was."
                ) from None
        return files

    def config_with(self, overrides: list[str]) -> Any:
        """The recorded config (an OmegaConf node) with ``KEY=VALUE`` overrides applied."""
        from omegaconf import OmegaConf

        config = OmegaConf.create(self.config)
        # the recorded config holds every key the run had: `+key=` and `key=` are the same
        overrides = [item.lstrip("+") for item in overrides]
        for item in overrides:
            key, _, value = item.partition("=")
            if "." not in key and OmegaConf.is_dict(config.get(key)):
                raise PipelineError(
                    f"`{item}` would choose another {key} config, but a re-run changes the "
                    f"recorded config key by key: write its keys (e.g. `{key}.KEY=VALUE`; "
                    "tracking off: `tracking.enabled=false`), or start a new run with "
                    f"`python -m pipelines.run {key}={value} ...`."
                )
        try:
            config.merge_with_dotlist(overrides)
        except Exception as exc:  # omegaconf's grammar errors
            raise PipelineError(f"Bad override in {overrides}: {exc}. Write KEY=VALUE.") from None
        return config


def fetch_run(
    reference: str, tracking_uri: str | None = None, uri_option: str = "--tracking-uri"
) -> RecordedRun:
    """The record of ``reference`` (a run id, ``runs:/<id>`` or ``models:/...``), with the
    resolved config it ran with (its ``config.yaml`` artifact). ``tracking_uri`` defaults
    to where runs go: ``$MLFLOW_TRACKING_URI``, else ``./mlruns``.

    ``uri_option`` is how the caller's user names another store (the commands' option
    ``--tracking-uri``; ``tracking.uri`` inside a run's config), so "no such run" says
    what to change. A SQLite store that does not exist is reported, never created: asking
    for a run must not leave an empty ``./mlruns`` behind."""
    import os

    import yaml
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from pipelines.tracking.store import TrackingSettings
    from pipelines.tracking.store_checks import sqlite_file

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = tracking_uri or TrackingSettings().resolved_uri()
    where = f"point {uri_option} (or $MLFLOW_TRACKING_URI) at the store that holds it"
    database = sqlite_file(uri)
    if database is not None and not database.is_file():
        shown = reference
        if reference.startswith("runs:/"):
            shown = reference.removeprefix("runs:/").strip("/").split("/")[0] or reference
        raise PipelineError(
            f"No run '{shown}': there is no tracking store at {uri} (no file "
            f"{database}). Run the command in the folder you trained in (the one holding "
            f"./mlruns), or {where}."
        )
    if uri.startswith(("http://", "https://")):
        from pipelines.tracking.store_checks import server_silence, start_server_hint

        why = server_silence(uri)  # MLflow's client would retry it for ~255 s
        if why is not None:
            raise PipelineError(
                f"The MLflow tracking server {uri} did not answer: {why}. "
                f"{start_server_hint(uri)}, or {where}."
            )
    client = MlflowClient(tracking_uri=uri)
    run_id = resolve_run_id(
        reference if is_run_reference(reference) else f"runs:/{reference}", client
    )
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise PipelineError(
            f"No run '{run_id}' (from '{reference}') in the tracking store "
            f"{client.tracking_uri}. Check the id in the MLflow UI, or {where}."
        ) from None
    if run.data.tags.get("sweep") == "true":
        raise PipelineError(_sweep_parent_message(run))
    with tempfile.TemporaryDirectory() as tmp:
        try:
            config_path = client.download_artifacts(run_id, "config.yaml", tmp)
        except (MlflowException, OSError):
            raise PipelineError(
                f"Run '{run_id}' has no config.yaml artifact, so it cannot be rebuilt; "
                "use a run made by `python -m pipelines.run`."
            ) from None
        config = yaml.safe_load(Path(config_path).read_text())
    return RecordedRun(
        run_id=run_id,
        run_name=run.info.run_name,
        status=run.info.status,
        config=config,
        tags=dict(run.data.tags),
        metrics=dict(run.data.metrics),
        client=client,
    )


def _sweep_parent_message(run: Any) -> str:
    """A sweep's parent run only groups its jobs: it trained nothing to rebuild. Its tags
    name the best job (:func:`pipelines.tracking.sweep.log_best_job`), which is what users want."""
    run_id = run.info.run_id
    best = run.data.tags.get("best_job.run_id")
    pointer = (
        f"Its best job is run {best} ({run.data.tags.get('best_job.run_name', '')}): give "
        "that id instead."
        if best
        else "Use the id of one of its jobs (the MLflow UI lists them under it)."
    )
    return (
        f"Run '{run_id}' is a sweep's parent run ({run.info.run_name}): it groups the "
        f"sweep's jobs and trained no model itself. {pointer}"
    )


def load_run_model(reference: str, tracking_uri: str | None = None) -> Any:
    """The LightningModule of an earlier run, with the weights of its best checkpoint.

    Called by stages for a ``runs:/`` reference in a run's config, where the store is set
    with ``tracking.uri``."""
    return model_of(fetch_run(reference, tracking_uri, uri_option="tracking.uri"))


def model_of(record: RecordedRun) -> Any:
    """The LightningModule of a fetched run, with the weights of its best checkpoint."""
    from mlflow.exceptions import MlflowException

    from pipelines.training.checkpoint import checkpoint_damage

    artifact = record.tags.get(BEST_CHECKPOINT_TAG) or _first_checkpoint(
        record.client, record.run_id
    )
    if not artifact:
        raise PipelineError(_no_checkpoint_message(record))
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = record.download(artifact, tmp)
        except (MlflowException, OSError):
            raise PipelineError(
                f"The checkpoint '{artifact}' of run '{record.run_id}' is missing from its "
                "artifacts (deleted?), so its model cannot be rebuilt."
            ) from None
        damage = checkpoint_damage(path)
        if damage is not None:
            raise PipelineError(
                f"The checkpoint '{artifact}' of run '{record.run_id}' is damaged ({damage}): "
                "it was cut short or garbled after it was written (a full disk, an "
                "interrupted copy), so its model cannot be rebuilt. Train it again with "
                f"`python -m pipelines.rerun {record.run_id}`."
            )
        return model_from_checkpoint(
            record.config["model"]["name"], path, tracking_uri=record.client.tracking_uri
        )


def model_from_checkpoint(
    model_name: str, checkpoint_path: str | Path, tracking_uri: str | None = None
) -> Any:
    """The model plugin ``model_name`` built with the hyper-parameters of the checkpoint at
    ``checkpoint_path`` and loaded with its weights: the model of a run, from its config's
    model name and its kept checkpoint alone. ``tracking_uri``: where a model that reuses an
    earlier run's network (a ``runs:/`` backbone) finds that run."""
    checkpoint = load_checkpoint(checkpoint_path)
    factory = registry.load("model", model_name)
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    if hasattr(factory, "rebuild_arguments"):  # e.g. a backbone from another run
        hparams = factory.rebuild_arguments(hparams, tracking_uri=tracking_uri)
    model = factory(**hparams)
    model.load_state_dict(checkpoint["state_dict"])
    return model


def _no_checkpoint_message(record: RecordedRun) -> str:
    """Why a run has no checkpoint, from what it recorded, and what to do about it.

    "Did its fit stage finish an epoch?" was the only answer, also for runs that finished
    training: a run without validation data used to keep its final weights only in its
    output folder, and a pipeline without a training stage keeps no weights at all.
    """
    run = f"Run '{record.run_id}' ({record.run_name})"
    if record.status == "RUNNING":
        return (
            f"{run} is still running and has logged no checkpoint yet: its fit stage logs "
            "one when it ends. Run this command again once the run has finished."
        )
    if record.status != "FINISHED":
        return (
            f"{run} ended {record.status} before its fit stage logged a checkpoint, so there "
            f"is no model to rebuild. Continue it with `python -m pipelines.resume "
            f"{record.run_id}` (from the last epoch saved in its output folder), or train it "
            f"again with `python -m pipelines.rerun {record.run_id}`."
        )
    trained = any(key == "epoch" or key.endswith("/epoch") for key in record.metrics)
    if trained:
        from pipelines.tracking.tracker import OUTPUT_DIR_TAG

        output_dir = record.tags.get(OUTPUT_DIR_TAG) or "its output folder"
        return (
            f"{run} finished training but logged no checkpoint: it was trained without "
            "validation data (data.val_fraction=0) by an earlier version of the pipelines, "
            f"which kept its final weights only on the machine it ran on ({output_dir}/"
            f"checkpoints/last.ckpt). Train it again with `python -m pipelines.rerun "
            f"{record.run_id}`: runs now log their final weights as their model."
        )
    pipeline = (record.config.get("pipeline") or {}).get("name", "?")
    source = record.tags.get("pipelines.source_run")
    hint = (
        f"Its model came from {source}: give that run instead."
        if source
        else "Use a run of a pipeline that trains a model (e.g. pipeline=classify)."
    )
    return (
        f"{run} logged no checkpoint: its pipeline '{pipeline}' trained no model of its "
        f"own, so there are no weights to rebuild. {hint}"
    )


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's tensors and plain values, never its code.

    ``weights_only=True``: unpickling may only build tensors and plain containers, so a
    checkpoint from an untrusted run cannot execute anything when loaded.
    """
    import pickle

    import torch

    from pipelines.training.checkpoint import checkpoint_damage

    damage = checkpoint_damage(path)
    if damage is not None:
        raise PipelineError(
            f"Cannot load {path}: it is damaged ({damage}), cut short or garbled after it "
            "was written (a full disk, an interrupted copy). Use an intact copy."
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise PipelineError(
            f"Refusing to load {path}: it is not plain weights (it holds Python objects that "
            f"would run code when unpickled: {first_line}). Only load checkpoints you trust, "
            "and re-save them as a state_dict of tensors."
        ) from None


def _first_checkpoint(client: Any, run_id: str) -> str | None:
    for item in client.list_artifacts(run_id, "checkpoints"):
        if item.path.endswith(".ckpt"):
            return item.path
    return None
