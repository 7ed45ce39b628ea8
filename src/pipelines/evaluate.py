"""Use a finished run's model: ``evaluate`` it on its data, ``predict`` on new files.

    python -m pipelines.evaluate RUN_ID [--split test|val|train] [KEY=VALUE ...]
    python -m pipelines.predict RUN_ID FILE [FILE ...] [--output predictions.csv]

The model is rebuilt from the run's own record: the model plugin its ``config.yaml`` names,
the constructor arguments and weights of its best checkpoint (loaded with
``weights_only=True``). The data is rebuilt from the same recorded config, so the split and
vocabulary are the run's, not today's defaults; ``KEY=VALUE`` changes the data node (e.g.
``data.root=/elsewhere``). Files to predict on go through the data plugin's own
``encode_inputs`` (images: resized and scaled like the training images; text: vectorized
with the fitted vocabulary).
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path
from typing import Any

from pipelines.collector import defer_during_startup, resume_after_startup
from pipelines.errors import PipelineError


def rebuild(run_id: str, overrides: list[str], tracking_uri: str | None) -> tuple[Any, Any, Any]:
    """(record, model, datamodule) of a run, set up as the run had them."""
    from omegaconf import OmegaConf

    from pipelines import registry
    from pipelines.context import set_up_datamodule
    from pipelines.run_loader import fetch_run, model_of

    record = fetch_run(run_id, tracking_uri)
    config = record.config_with(overrides)
    if any(not item.startswith("data.") for item in overrides):
        raise PipelineError(
            f"Only the data can be changed here ({overrides}); the model is the run's own. "
            "Write data.KEY=VALUE, or re-run with other settings: python -m pipelines.rerun."
        )
    model = model_of(record)
    data_node = OmegaConf.to_container(config.data, resolve=True)
    datamodule = set_up_datamodule(registry.build("data", data_node, path="data"), type(model))
    resume_after_startup()  # what follows (a pass over a split) makes garbage to collect
    return record, model, datamodule


def evaluate(
    run_id: str, split: str, overrides: list[str], tracking_uri: str | None
) -> dict[str, float]:
    """The run's model on one split of its data: ``<split>/loss``, ``<split>/acc``, ..."""
    import lightning as L

    from pipelines.trainer import plain_cuda_check_without_gpu, quiet_lightning

    record, model, datamodule = rebuild(run_id, overrides, tracking_uri)
    loaders = {
        "train": datamodule.train_dataloader,
        "val": datamodule.val_dataloader,
        "test": datamodule.test_dataloader,
    }
    quiet_lightning()
    plain_cuda_check_without_gpu()
    trainer = L.Trainer(
        logger=False, enable_progress_bar=False, enable_model_summary=False, devices=1
    )
    (results,) = trainer.test(model, dataloaders=loaders[split](), verbose=False)
    # the module logs as test/..., whatever split it was given
    metrics = {f"{split}/{key.split('/', 1)[1]}": float(value) for key, value in results.items()}
    print(f"{record.run_name} ({record.run_id}) on its {split} split:")
    for key, value in sorted(metrics.items()):
        recorded = record.metrics.get(key)
        note = f"   (recorded {recorded:.4f})" if recorded is not None else ""
        print(f"  {key:<12} {value:.4f}{note}")
    return metrics


def predict(
    run_id: str, files: list[Path], output: Path | None, tracking_uri: str | None
) -> list[dict[str, Any]]:
    """Predictions of the run's model for ``files``; written as CSV to ``output`` if given."""
    import torch

    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        raise PipelineError(f"No such file: {', '.join(missing)}.")
    record, model, datamodule = rebuild(run_id, [], tracking_uri)
    if not hasattr(datamodule, "encode_inputs"):
        raise PipelineError(
            f"The data plugin of run '{record.run_id}' ({type(datamodule).__name__}) cannot "
            "turn files into model inputs (it has no encode_inputs method)."
        )
    inputs = datamodule.encode_inputs(files)
    model.eval()
    with torch.no_grad():
        outputs = model.predict_step(inputs, 0)
    classes = list(getattr(datamodule, "classes", []) or [])
    rows = []
    for path, output_row in zip(files, outputs, strict=True):
        if getattr(model, "task", "classification") == "regression":
            rows.append({"file": str(path), "prediction": float(output_row.flatten()[0])})
            continue
        index = int(output_row.argmax())
        label = classes[index] if index < len(classes) else str(index)
        rows.append(
            {"file": str(path), "prediction": label, "probability": float(output_row[index])}
        )
    writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    if output:
        with open(output, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return rows


def main(command: str, argv: list[str] | None = None) -> None:
    """The ``evaluate`` / ``predict`` command line; errors as one paragraph, exit 2."""
    from pipelines.runner import report_error

    parser = argparse.ArgumentParser(
        prog=f"python -m pipelines.{command}", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("run_id", help="the run's id (the MLflow UI shows it), or runs:/<id>")
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else ./mlruns")
    if command == "evaluate":
        parser.add_argument("--split", default="test", choices=("test", "val", "train"))
        parser.add_argument("overrides", nargs="*", help="data.KEY=VALUE changes")
    else:
        parser.add_argument("files", nargs="+", type=Path, help="inputs (images, text files)")
        parser.add_argument("--output", type=Path, help="also write the predictions here (CSV)")
    options = parser.parse_args(argv)
    defer_during_startup()
    logging.basicConfig(level=logging.WARNING)
    try:
        if command == "evaluate":
            evaluate(options.run_id, options.split, options.overrides, options.tracking_uri)
        else:
            predict(options.run_id, options.files, options.output, options.tracking_uri)
    except PipelineError as exc:
        report_error(exc)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main("evaluate")
