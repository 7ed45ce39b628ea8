"""Use a finished run's model: ``evaluate`` it on its data, ``predict`` on new files.

    python -m pipelines.evaluate RUN_ID [--split test|val|train] [KEY=VALUE ...]
    python -m pipelines.predict RUN_ID FILE [FILE ...] [--output FILE.csv] [data.KEY=VALUE ...]

The model is rebuilt from the run's own record: the model plugin its ``config.yaml`` names,
the constructor arguments and weights of its best checkpoint (loaded with
``weights_only=True``). The data is rebuilt from the same recorded config, so the split is
the run's, not today's defaults; what the data plugin fitted and logged under the run's
``data/`` artifacts (text: the vocabulary and class list) is handed back to it
(``use_artifacts``), so even other data is encoded as the model was trained. ``KEY=VALUE``
changes the data node (e.g. ``data.root=/elsewhere``). Files to predict on go through the
data plugin's own ``encode_inputs`` (images: resized and scaled like the training images;
text: vectorized with the run's vocabulary; tables: the run's feature columns, normalised
with its training statistics). ``evaluate`` shows beside each number what the run recorded
for the same checkpoint (``test/...``, and ``best/val_...`` for the val split).

``predict`` needs only the run's record where the data plugin can encode files from it
alone (``prepare_to_encode(model)``: text from the logged ``tokenizer.json``; images from
the model's ``input_shape`` and class names that are fixed or logged as
``data/classes.json``; tables from the logged ``data/features.json``), so the training data
may have moved or gone. Otherwise (older runs, plugins without it) it sets the data up as
``evaluate`` does, which ``data.KEY=VALUE`` arguments can point at the data's new place.

It prints CSV: a classifier's ``file,prediction,probability`` (the likeliest class), a
regressor's ``file,prediction`` (the value, in the target's units where the plugin has
``decode_outputs``). A plugin whose files hold many inputs each (a table: one per row) names
each input's ``(file, row)`` in ``encoded_rows`` after ``encode_inputs``; a ``row`` column
(data rows counted from 1, a header row not counted) then follows ``file``.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelines.errors import PipelineError
from pipelines.runtime.collector import defer_during_startup


def recorded_metric(metrics: dict[str, float], key: str) -> float | None:
    """What the run recorded for ``key`` (``<split>/<name>``) with the checkpoint evaluated.

    The test stage evaluates the best checkpoint, so ``test/...`` is that checkpoint's;
    ``val/...`` is the last epoch's, but the fit stage keeps the best epoch's as
    ``best/val_...``. Training metrics are means over an epoch of changing weights (with
    dropout on): nothing recorded matches a pass of the kept weights over the train split.
    """
    split, name = key.split("/", 1)
    if split == "test":
        return metrics.get(key)
    if split == "val":
        return metrics.get(f"best/val_{name.replace('/', '_')}")
    return None


def evaluate(
    run_id: str, split: str, overrides: list[str], tracking_uri: str | None
) -> dict[str, float]:
    """The run's model on one split of its data: ``<split>/loss``, ``<split>/acc``, ..."""
    import lightning as L

    from pipelines.inference.rebuild import rebuild
    from pipelines.training.trainer import plain_cuda_check_without_gpu, quiet_lightning

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
    loader = loaders[split]()
    if _is_empty(loader):
        raise PipelineError(_empty_split_message(record, split, loaders))
    results = trainer.test(model, dataloaders=loader, verbose=False)
    if not results:  # a loader of unknown length that yielded nothing
        raise PipelineError(_empty_split_message(record, split, loaders))
    (results,) = results
    # the module logs as test/..., whatever split it was given
    metrics = {f"{split}/{key.split('/', 1)[1]}": float(value) for key, value in results.items()}
    print(f"{record.run_name} ({record.run_id}) on its {split} split:")
    for key, value in sorted(metrics.items()):
        recorded = recorded_metric(record.metrics, key)
        note = f"   (recorded {recorded:.4f})" if recorded is not None else ""
        print(f"  {key:<12} {value:.4f}{note}")
    return metrics


def _is_empty(loader: Any) -> bool:
    """Whether ``loader`` holds no batches: ``[]`` (a split a data plugin does not have, as
    Lightning takes it) or a loader of length 0. One of unknown length is not judged here."""
    if isinstance(loader, (list, tuple)):
        return all(_is_empty(item) for item in loader)
    try:
        return len(loader) == 0
    except TypeError:  # an iterable-style loader: only a pass over it can tell
        return False


def _empty_split_message(record: Any, split: str, loaders: dict[str, Callable[[], Any]]) -> str:
    """Evaluating on a split the run's data does not have: which ``--split`` values have
    data, and how a run gets the missing split. Lightning only warned that the loader was
    empty and returned no results, which ended in a ``ValueError`` from unpacking them."""
    others = [name for name in ("test", "val", "train") if name != split]
    with_data = [name for name in others if _has_data(loaders[name])]
    where = (
        "Evaluate it on a split that has data: "
        + " or ".join(f"`--split {name}`" for name in with_data)
        + "."
        if with_data
        else "No other split of its data has rows either."
    )
    data_node = record.config.get("data") or {}
    fraction = f"{split}_fraction"
    if fraction in data_node:
        value = data_node[fraction]
        why = f" (data.{fraction}={value})"
        give = (
            f"To give it one, train it again with a {split} split: `python -m pipelines.rerun "
            f"{record.run_id} data.{fraction}=0.1`."
            if not value
            else f"To give it one, train it again with a larger data.{fraction} than {value}: "
            f"`python -m pipelines.rerun {record.run_id} data.{fraction}=VALUE`."
        )
    else:
        why = ""
        give = (
            f"Its data plugin '{data_node.get('name', '?')}' made no {split} rows from its "
            "data: point the data.* settings at data that has them (`python -m "
            f"pipelines.rerun {record.run_id} data.KEY=VALUE` trains it again on it)."
        )
    return (
        f"Run '{record.run_id}' ({record.run_name}) has no {split} split: its data{why} "
        f"left no {split} rows, so there is nothing to evaluate on. {where} {give}"
    )


def _has_data(make_loader: Callable[[], Any]) -> bool:
    """Whether the split behind ``make_loader`` has batches; one whose loader the data
    plugin refuses to build (a :class:`PipelineError`) has none to offer."""
    try:
        return not _is_empty(make_loader())
    except PipelineError:
        return False


def predict(
    run_id: str,
    files: list[Path],
    output: Path | None,
    tracking_uri: str | None,
    overrides: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Predictions of the run's model for ``files``, printed as CSV (and written to
    ``output`` if given); the rows :class:`~pipelines.inference.predictor.Predictor` makes.

    ``overrides`` (``data.KEY=VALUE``) matter only where the data must be set up (see
    :func:`~pipelines.inference.rebuild.rebuild`), e.g. to point an older run at its moved
    data."""
    from pipelines.inference.predictor import Predictor

    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        raise PipelineError(f"No such file: {', '.join(missing)}.")
    if output is not None and not output.parent.is_dir():
        raise PipelineError(
            f"Cannot write {output}: the folder {output.parent} does not exist. Create it, or "
            "give --output a path in an existing folder."
        )
    predictor = Predictor.from_run(run_id, tracking_uri, overrides)
    rows = predictor.predict_files(files).to_dict("records")
    _write_csv(sys.stdout, rows)
    if output:
        with open(output, "w", newline="") as handle:
            _write_csv(handle, rows)
    return rows


def _write_csv(target: Any, rows: list[dict[str, Any]]) -> None:
    writer = csv.DictWriter(target, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)


def main(command: str, argv: list[str] | None = None) -> None:
    """The ``evaluate`` / ``predict`` command line; errors as one paragraph, exit 2."""
    from pipelines.errors import report_error

    parser = argparse.ArgumentParser(
        prog=f"python -m pipelines.{command}", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("run_id", help="the run's id (the MLflow UI shows it), or runs:/<id>")
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else ./mlruns")
    if command == "evaluate":
        parser.add_argument("--split", default="test", choices=("test", "val", "train"))
        parser.add_argument("overrides", nargs="*", help="data.KEY=VALUE changes")
    else:
        parser.add_argument(
            "files",
            nargs="+",
            type=Path,
            help="inputs (images, text files, CSV tables: one prediction per row); "
            "data.KEY=VALUE among them changes the data node, where the run's data must be "
            "read (older runs)",
        )
        parser.add_argument("--output", type=Path, help="also write the predictions here (CSV)")
    options = parser.parse_intermixed_args(argv)
    if command == "predict":  # data.KEY=VALUE changes among the files
        options.overrides = [str(f) for f in options.files if _is_data_override(str(f))]
        options.files = [f for f in options.files if not _is_data_override(str(f))]
        if not options.files:
            parser.error("the following arguments are required: files")
    defer_during_startup()
    logging.basicConfig(level=logging.WARNING)
    try:
        if command == "evaluate":
            evaluate(options.run_id, options.split, options.overrides, options.tracking_uri)
        else:
            predict(
                options.run_id,
                options.files,
                options.output,
                options.tracking_uri,
                options.overrides,
            )
    except PipelineError as exc:
        report_error(exc)
        raise SystemExit(2) from None


def _is_data_override(argument: str) -> bool:
    """``data.KEY=VALUE`` among predict's files (a file so named would need ``./``)."""
    return argument.startswith("data.") and "=" in argument


if __name__ == "__main__":
    main("evaluate")
