"""The ``report`` stage: figures of how training went, and the model as an MLflow model.

Artifacts of the run (``report/``):

* ``learning_curves.png``: training and validation loss and metric per epoch, drawn as the
  book draws them (training as dots, validation as a line), one panel per metric;
* ``confusion_matrix.png`` (classifiers): test-split counts, true class by row (of data
  streamed from disk too: its whole test split, read one batch at a time);
* ``sample_predictions.png`` (image classifiers): test images titled with the prediction,
  red where it is wrong;
* ``sample_predictions.csv`` (text classifiers): test texts with their true and predicted
  class, the confidence and whether it is right, the most confident mistakes first
  (:mod:`plugins.stages.text_samples`).

``samples`` is how many test examples either shows.

Two MLflow models are logged (``log_model``):

* ``model``, for classifiers and regressors whose data plugin encodes raw inputs: an MLflow
  pyfunc model whose ``predict`` takes what a person has (texts, image files, table rows)
  and returns labels with probabilities, or values in the target's units, with the
  preprocessing the run learned packaged in (:func:`pipelines.api.log_served_model`). It is
  what ``register_as`` (or ``tracking.register_as``) registers in MLflow's model registry.
* ``network``, the network alone, tensors in and out (``mlflow.pytorch.log_model``,
  signature and input example from the test split), for in-memory or streamed test data.

A model that cannot be logged costs a warning and a tag (``pipelines.log_model_error``,
``pipelines.log_network_error``), never the run. Without tracking the stage does nothing:
there is no run to hold the figures.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from pipelines.api import PipelineError, RunContext, log_served_model
from plugins.stages import text_samples
from plugins.stages.requirements import refuse_generative_model

log = logging.getLogger(__name__)

#: said after the refusal of a generative model in an untracked run, where the stage itself
#: would write nothing: one config must not pass untracked and fail once tracked
UNTRACKED_REFUSAL = (
    "It is refused with tracking=none too, where the report would write nothing, so that "
    "the same command does not pass untracked and fail once tracked."
)


class Report:
    """Learning curves, confusion matrix, sample predictions; the model as an MLflow model."""

    def __init__(
        self,
        figures: bool = True,
        log_model: bool = True,
        register_as: str | None = None,
        samples: int = 16,
        artifact_dir: str = "report",
    ) -> None:
        self.figures = figures
        self.log_model = log_model
        self.register_as = register_as
        self.samples = samples
        self.artifact_dir = artifact_dir

    def check(self, ctx: RunContext) -> None:
        """Right after ``prepare``: the model predicts classes or values. ``model=vae`` in
        the default classify pipeline trained and tested, then failed here with an
        IndexError in the confusion matrix (its outputs are images); refused up front, with
        or without tracking, so a run that works untracked does not fail tracked.

        Untracked, the stage would write nothing, so the message says why it refuses anyway:
        a user who only ran ``tracking=none`` would otherwise think the refusal pointless."""
        refuse_generative_model(
            ctx,
            "report",
            "a model's predictions on the test split (confusion matrix, sample predictions, "
            "the model logged for serving)",
            also="" if ctx.tracking_enabled else UNTRACKED_REFUSAL,
        )

    def run(self, ctx: RunContext) -> None:
        tracker = ctx.tracker
        if not tracker.run_id:
            return
        model = ctx.require("model", "report", "prepare")
        self.check(ctx)
        datamodule = ctx.require("datamodule", "report", "prepare")
        tracker.flush()
        test = _test_split(datamodule)
        streamed = test is None and getattr(datamodule, "data_path", None) == "streamed"
        classifier = getattr(model, "task", "classification") == "classification"
        with _uncompiled():
            probabilities = None
            if streamed and self.figures and classifier:
                # every test image, one batch in memory at a time; the first ones kept
                inputs, targets, probabilities = predict_streamed(
                    model, datamodule, keep=max(self.samples, 2)
                )
                test = (inputs, targets) if len(targets) else None
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                if self.figures:
                    for path in self._figures(ctx, model, datamodule, test, folder, probabilities):
                        tracker.log_artifact(path, self.artifact_dir)
            if self.log_model:
                tracking = ctx.config.get("tracking") or {}
                log_served(ctx, datamodule, self.register_as or tracking.get("register_as"))
                example = test[0][:2] if test is not None else None
                if example is None and streamed:
                    example = _first_streamed_inputs(datamodule, 2)
                if example is not None and len(example):
                    log_mlflow_model(ctx, model, example)

    def _figures(
        self,
        ctx: RunContext,
        model: Any,
        datamodule: Any,
        test: tuple[torch.Tensor, torch.Tensor] | None,
        folder: Path,
        probabilities: torch.Tensor | None = None,
    ) -> list[Path]:
        """The figures' files. ``probabilities``: the model's on the test split, where they
        were taken as it was streamed (then ``test`` holds every target but only the first
        inputs, those the sample figure shows); else they are predicted here."""
        paths = []
        curves = learning_curves(ctx.tracker.client, ctx.tracker.run_id)  # type: ignore[attr-defined]
        if curves:
            paths.append(_save(plot_learning_curves(curves), folder / "learning_curves.png"))
        if test is None or getattr(model, "task", "classification") != "classification":
            return paths
        inputs, targets = test
        if probabilities is None:
            probabilities = predict_probabilities(model, inputs, _prediction_batch(inputs))
        predicted = probabilities.argmax(dim=1)
        classes = class_names(datamodule, targets, probabilities.shape[1])
        matrix = confusion(targets.numpy(), predicted.numpy(), len(classes))
        paths.append(_save(plot_confusion(matrix, classes), folder / "confusion_matrix.png"))
        if inputs.ndim == 4 and inputs.shape[1] in (1, 3):
            shown = min(self.samples, len(inputs))
            if shown > 0:  # `samples: 0` turns the figure off
                figure = plot_samples(inputs[:shown], targets[:shown], predicted[:shown], classes)
                paths.append(_save(figure, folder / "sample_predictions.png"))
        else:  # drawn from the test items whose inputs are held (streamed: the first ones)
            held = len(inputs)
            table = text_samples.write_sample_table(
                folder / "sample_predictions.csv",
                datamodule,
                model,
                (inputs, targets[:held]),
                probabilities[:held],
                classes,
                self.samples,
            )
            if table is not None:  # None: not text data (a table of features, say)
                paths.append(table)
        return paths


def class_names(datamodule: Any, targets: torch.Tensor, outputs: int) -> list[str]:
    """The data module's class names; without them, the numbers of every class that the
    test labels or the model's ``outputs`` can name (a class missing from a small test
    split can still be predicted, and must have a row and a column)."""
    named = list(getattr(datamodule, "classes", []) or [])
    if named:
        return [str(name) for name in named]
    return [str(c) for c in range(max(int(targets.max()) + 1, outputs))]


def _test_split(datamodule: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The test inputs and targets of an in-memory data module; else None (streamed data
    is read batch by batch: :func:`predict_streamed`)."""
    splits = getattr(datamodule, "splits", None)
    if isinstance(splits, dict) and "test" in splits and len(splits["test"][0]):
        inputs, targets = splits["test"]
        return inputs.cpu(), targets.cpu()
    return None


#: streamed inputs other than images (token ids) kept for the sample table, which draws
#: from them: as many as a streamed text setup keeps texts for (``STREAMED_TEST_TEXTS``)
STREAMED_SAMPLE_INPUTS = 512


@torch.no_grad()
def predict_streamed(
    model: Any, datamodule: Any, keep: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first test inputs, every test target and the class probabilities of every test
    input, of data streamed from disk (``data_path: streamed``): its test loader read batch
    by batch, so the whole split is covered with one batch in memory at a time. The first
    ``keep`` images are kept (the sample figure's), or of other inputs the first
    :data:`STREAMED_SAMPLE_INPUTS` (the sample table's)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    kept: list[torch.Tensor] = []
    targets: list[torch.Tensor] = []
    probabilities: list[torch.Tensor] = []
    loader = datamodule.test_dataloader()
    try:
        for batch_inputs, batch_targets in loader:
            if not targets and batch_inputs.ndim != 4:
                keep = max(keep, STREAMED_SAMPLE_INPUTS)
            missing = keep - sum(map(len, kept))
            if missing > 0:
                kept.append(batch_inputs[:missing].cpu())
            logits = model(batch_inputs.to(device, non_blocking=True)).float()
            probabilities.append(logits.softmax(dim=1).cpu())
            targets.append(batch_targets.cpu())
    finally:
        model.train(was_training)
        _close(loader)
    if not targets:
        return torch.empty(0), torch.empty(0, dtype=torch.int64), torch.empty(0, 0)
    log.info(
        "report: the data is streamed from disk: the confusion matrix covers its %d test "
        "items, read batch by batch",
        sum(map(len, targets)),
    )
    return torch.cat(kept), torch.cat(targets), torch.cat(probabilities)


def _first_streamed_inputs(datamodule: Any, count: int) -> torch.Tensor | None:
    """The first ``count`` test inputs of streamed data (the network's input example)."""
    loader = datamodule.test_dataloader()
    try:
        for inputs, _ in loader:
            return inputs[:count].cpu()
    finally:
        _close(loader)
    return None


def _close(loader: Any) -> None:
    """End a streamed loader's worker processes now, not when it is collected."""
    close = getattr(loader, "close", None)
    if callable(close):
        close()


def learning_curves(client: Any, run_id: str) -> dict[str, dict[str, list[float]]]:
    """``{"<prefix>loss": {"train": [...], "val": [...]}, ...}``: per-epoch values by step."""
    metrics = client.get_run(run_id).data.metrics
    curves: dict[str, dict[str, list[float]]] = defaultdict(dict)
    for key in sorted(metrics, key=lambda key: (not key.endswith("loss"), key)):
        for split in ("train", "val"):
            prefix, marker, name = key.rpartition(f"{split}/")
            # train/loss, fine_tuning/val/acc; not best/val_acc or a nested name
            if marker and name and "/" not in name and prefix.rstrip("/") not in ("best", "test"):
                history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
                curves[f"{prefix}{name}"][split] = [m.value for m in history]
    return {name: splits for name, splits in curves.items() if any(splits.values())}


def plot_learning_curves(curves: dict[str, dict[str, list[float]]]) -> Figure:
    figure = Figure(figsize=(5 * len(curves), 4), layout="constrained")
    panels = figure.subplots(1, len(curves), squeeze=False)[0]
    for axes, (name, splits) in zip(panels, curves.items(), strict=True):
        if "train" in splits:
            epochs = range(1, len(splits["train"]) + 1)
            axes.plot(epochs, splits["train"], "bo", label=f"Training {name}")
        if "val" in splits:
            epochs = range(1, len(splits["val"]) + 1)
            axes.plot(epochs, splits["val"], "b", label=f"Validation {name}")
        axes.set_title(f"Training and validation {name}")
        axes.set_xlabel("Epochs")
        axes.set_ylabel(name)
        axes.legend()
    return figure


def predict_classes(model: Any, inputs: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    return predict_probabilities(model, inputs, batch_size).argmax(dim=1)


#: the inputs of one prediction batch: up to 512 samples, fewer of large ones (512 images of
#: 180x180 took a run's peak memory in the convolutions' activations)
_PREDICTION_BYTES = 64 << 20


def _prediction_batch(inputs: torch.Tensor) -> int:
    """How many of ``inputs`` to predict at once: 512, or what ``_PREDICTION_BYTES`` holds."""
    sample = max(1, inputs[0].numel() * inputs.element_size()) if len(inputs) else 1
    return int(max(1, min(512, _PREDICTION_BYTES // sample)))


@torch.no_grad()
def predict_probabilities(model: Any, inputs: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Class probabilities (softmax of the logits, float32, on the CPU), in eval mode:
    the classes for the confusion matrix and the confidence of the sample table, from one
    pass over the test split."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        batches = [
            model(inputs[start : start + batch_size].to(device)).float().softmax(dim=1).cpu()
            for start in range(0, len(inputs), batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(batches)


def confusion(targets: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """Counts, true class by row and predicted class by column."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (targets, predicted), 1)
    return matrix


def plot_confusion(matrix: np.ndarray, classes: list[str]) -> Figure:
    size = max(4.0, 0.45 * len(classes) + 2)
    figure = Figure(figsize=(size, size), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, shrink=0.8)
    ticks = range(len(classes))
    axes.set_xticks(ticks, classes, rotation=90 if len(classes) > 10 else 0)
    axes.set_yticks(ticks, classes)
    axes.set_xlabel("Predicted")
    axes.set_ylabel("True")
    accuracy = np.trace(matrix) / max(1, matrix.sum())
    axes.set_title(f"Confusion matrix (test, accuracy {accuracy:.3f})")
    if len(classes) <= 20:
        threshold = matrix.max() / 2
        for (row, column), count in np.ndenumerate(matrix):
            color = "white" if count > threshold else "black"
            axes.text(column, row, str(count), ha="center", va="center", color=color, fontsize=8)
    return figure


def plot_samples(
    images: torch.Tensor, targets: torch.Tensor, predicted: torch.Tensor, classes: list[str]
) -> Figure:
    columns = min(8, len(images))
    rows = -(-len(images) // columns)
    figure = Figure(figsize=(1.6 * columns, 1.9 * rows), layout="constrained")
    for index, axes in enumerate(figure.subplots(rows, columns, squeeze=False).flat):
        axes.axis("off")
        if index >= len(images):
            continue
        image = images[index].float().permute(1, 2, 0).numpy().clip(0, 1)
        axes.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray")
        truth, guess = classes[int(targets[index])], classes[int(predicted[index])]
        axes.set_title(
            guess if guess == truth else f"{guess} ({truth})",
            color="black" if guess == truth else "red",
            fontsize=9,
        )
    return figure


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=100)
    return path


#: torch's warning for every ``nn.RNNBase`` traced by ``torch.export`` (pytorch#163809)
_RNN_FLAT_WEIGHTS = r"The tensor attributes .*_flat_weights.* were assigned during export"


def log_served(ctx: RunContext, datamodule: Any, register_as: str | None) -> None:
    """The run's model as its MLflow ``model``: raw inputs in, predictions out
    (:func:`~pipelines.api.log_served_model`), from the kept checkpoint (the weights
    ``predict`` uses), for data plugins that encode inputs (``encode_values``, or files
    with ``encode_inputs``). Where it cannot be logged (no checkpoint kept; a data plugin
    that cannot encode without its data), one warning line and a tag, never the run."""
    if not (hasattr(datamodule, "encode_values") or hasattr(datamodule, "encode_inputs")):
        return
    checkpoint = ctx.artifacts.get("best_checkpoint")
    try:
        if not checkpoint:
            raise PipelineError("the run kept no checkpoint (its pipeline has no fit stage)")
        log_served_model(ctx, datamodule, checkpoint, register_as)
    except Exception as exc:  # the run's results stand without it
        message = str(exc).strip()
        reason = message.splitlines()[0] if message else type(exc).__name__
        log.warning("The run's model could not be logged as an MLflow model: %s", reason)
        ctx.tracker.set_tags({"pipelines.log_model_error": message[:500]})


def log_mlflow_model(ctx: RunContext, model: Any, example: torch.Tensor) -> None:
    """The network alone as the run's MLflow ``network`` (pytorch flavor): tensors in and
    out, with signature and example.

    Requirements are named, not inferred: MLflow's inference imports and scans every module
    loaded, which took longer than training a small model. MLflow saves the model with
    ``torch.export`` (its ``pt2`` format: a traced graph, loaded without unpickling code), so
    a model whose ``forward`` branches on its data cannot be saved; that costs the run one
    warning line and a ``pipelines.log_network_error`` tag, never the run itself.
    """
    from importlib import metadata

    import mlflow
    from mlflow.models import infer_signature

    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        output = model(example.to(device)).float().cpu().numpy()
    example_array = example.numpy()
    requirements = [
        f"{package}=={metadata.version(package)}" for package in ("torch", "lightning", "pipelines")
    ]
    mlflow.set_tracking_uri(ctx.tracker.uri)
    mlflow.start_run(run_id=ctx.tracker.run_id)
    stderr = io.StringIO()
    try:
        with _quiet_export(stderr), _serving_check_on_cpu():
            mlflow.pytorch.log_model(
                model.cpu(),
                name="network",
                signature=infer_signature(example_array, output),
                input_example=example_array,
                pip_requirements=requirements,
            )
    except Exception as exc:  # an unexportable third-party model must not fail the run
        message = str(exc).strip()
        reason = message.splitlines()[0] if message else type(exc).__name__
        log.warning("The network could not be logged as an MLflow model: %s", reason)
        log.debug("MLflow model logging failed; stderr meanwhile:\n%s", stderr.getvalue())
        ctx.tracker.set_tags({"pipelines.log_network_error": message[:500]})
    else:
        sys.stderr.write(stderr.getvalue())  # saved: pass on whatever else was said
    finally:
        # hand the run back without ending it: the engine sets its final status
        mlflow.end_run(status="RUNNING")
        model.to(device)


def _uncompiled() -> contextlib.AbstractContextManager[Any]:
    """A model compiled for training (``speed.compile=true``) runs eagerly here: each new
    batch shape of the report (the whole test set, the example, the CPU) compiled it again,
    which took a run on an H200 from ~6 s to 82 s of reporting, for a few forward passes."""
    set_stance = getattr(torch.compiler, "set_stance", None)  # torch >= 2.6
    return set_stance("force_eager") if set_stance else contextlib.nullcontext()


@contextlib.contextmanager
def _serving_check_on_cpu() -> Iterator[None]:
    """MLflow checks the logged model by loading it back, on the GPU whenever one is there;
    a ``pt2`` model exported from the CPU (so that it loads on any machine) then fails that
    check with a warning that prints the whole input example. The check runs on the CPU,
    where the model was saved, unless the user chose a device."""
    variable = "MLFLOW_DEFAULT_PREDICTION_DEVICE"
    if os.environ.get(variable):
        yield
        return
    os.environ[variable] = "cpu"
    try:
        yield
    finally:
        os.environ.pop(variable, None)


@contextlib.contextmanager
def _quiet_export(stderr: io.StringIO) -> Iterator[None]:
    """``torch.export`` kept off the console while MLflow saves the model: torch's warning
    that each ``nn.RNNBase`` reassigns its flat weights while traced (harmless: export puts
    them back) is dropped, torch's logger says only errors, and stderr goes to ``stderr``,
    because a failed export prints its partial graph there (about 30 lines per try)."""
    torch_logger = logging.getLogger("torch")
    level = torch_logger.level
    torch_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(stderr):
            warnings.filterwarnings("ignore", _RNN_FLAT_WEIGHTS, UserWarning)
            yield
    finally:
        torch_logger.setLevel(level)
