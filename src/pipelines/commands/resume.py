"""Continue or repeat an earlier run from its own record: ``resume`` and ``rerun``.

    python -m pipelines.resume RUN_ID            # a killed run goes on where it stopped
    python -m pipelines.rerun RUN_ID [KEY=VALUE]  # the same run again, as a new run

Both read the run's recorded ``config.yaml`` (the whole resolved config, seed included), not
today's defaults or config files. ``resume`` reopens the same MLflow run and restarts
training from the last checkpoint in the run's output folder: epochs and metric steps go
on, and no second run appears. ``rerun`` starts a new run tagged ``pipelines.rerun_of``
and first says which package versions or git commit differ from the recorded ones.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import datetime
from pathlib import Path

from pipelines.errors import PipelineError

RERUN_OF_TAG = "pipelines.rerun_of"
RESUMED_TAG = "pipelines.resumed"


def resume(run_id: str, tracking_uri: str | None) -> dict[str, float]:
    """Continue a stopped run in place, from the last checkpoint in its output folder."""
    from omegaconf import OmegaConf

    from pipelines.runner import run_pipeline
    from pipelines.tracking.tracker import OUTPUT_DIR_TAG
    from pipelines.training.run_loader import fetch_run

    record = fetch_run(run_id, tracking_uri)
    if record.status == "FINISHED":
        raise PipelineError(
            f"Run '{record.run_id}' ({record.run_name}) finished: there is nothing to resume. "
            f"To train it again from its record: python -m pipelines.rerun {record.run_id}"
        )
    output_dir = record.tags.get(OUTPUT_DIR_TAG)
    if not output_dir or not Path(output_dir).is_dir():
        raise PipelineError(
            f"Run '{record.run_id}' has no output folder on this machine "
            f"({output_dir or 'not recorded'}), where its checkpoints would be. Resume it "
            f"where it ran, or start it again: python -m pipelines.rerun {record.run_id}"
        )
    if not any(Path(output_dir).rglob("last.ckpt")):
        raise PipelineError(
            f"Run '{record.run_id}' saved no checkpoint before it stopped (in {output_dir}/"
            f"checkpoints): nothing to resume from. Start it again: "
            f"python -m pipelines.rerun {record.run_id}"
        )
    _track_into(record.client.tracking_uri)
    count = int(record.tags.get(RESUMED_TAG, "0")) + 1
    return run_pipeline(
        OmegaConf.create(record.config),
        output_dir=Path(output_dir),
        overrides=[],
        resume_run_id=record.run_id,
        tags={RESUMED_TAG: str(count)},
    )


def rerun(run_id: str, overrides: list[str], tracking_uri: str | None) -> dict[str, float]:
    """Run ``run_id``'s recorded config again (with ``overrides``) as a new run."""
    from pipelines.runner import run_pipeline
    from pipelines.tracking.provenance import differences, provenance_tags
    from pipelines.training.run_loader import fetch_run

    record = fetch_run(run_id, tracking_uri)
    changed = differences(record.tags, provenance_tags())
    if changed:
        print(
            "Note: this machine differs from the recorded run, so its numbers may too:\n  "
            + "\n  ".join(changed),
            file=sys.stderr,
        )
    _track_into(record.client.tracking_uri)
    config = record.config_with(overrides)
    # the folder a run made by `python -m pipelines.run` would get (conf/config.yaml)
    output_dir = Path("outputs/runs") / f"{datetime.now():%Y-%m-%d/%H-%M-%S-%f}"
    output_dir.mkdir(parents=True, exist_ok=True)
    return run_pipeline(
        config,
        output_dir=output_dir,
        overrides=[f"rerun_of={record.run_id}", *overrides],
        tags={RERUN_OF_TAG: record.run_id},
    )


def _track_into(uri: str) -> None:
    """Track into the store the record came from, whatever ``./mlruns`` is here.

    Through the environment (``tracking.uri`` wins over it, as it did for the original run),
    so the recorded config, and with it the run's params, stays exactly as it was.
    """
    import os

    os.environ["MLFLOW_TRACKING_URI"] = uri


def _parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m pipelines.{command}",
        description=(resume if command == "resume" else rerun).__doc__,
    )
    parser.add_argument("run_id", help="the run's id (the MLflow UI shows it), or runs:/<id>")
    parser.add_argument(
        "--tracking-uri",
        help="the store holding the run (default: $MLFLOW_TRACKING_URI, else ./mlruns)",
    )
    if command == "rerun":
        # a default, or argparse lists the optional overrides as required in its usage error
        parser.add_argument(
            "overrides", nargs="*", default=[], help="KEY=VALUE changes to the config"
        )
    return parser


def main(command: str, argv: list[str] | None = None) -> None:
    """The ``resume`` / ``rerun`` command line; errors as one paragraph, exit 2."""
    from pipelines.errors import report_error
    from pipelines.runtime.collector import defer_during_startup

    options = _parser(command).parse_args(argv)
    defer_during_startup()
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    try:
        if command == "resume":
            resume(options.run_id, options.tracking_uri)
        else:
            rerun(options.run_id, options.overrides, options.tracking_uri)
    except PipelineError as exc:
        report_error(exc)
        raise SystemExit(2) from None
    except KeyboardInterrupt:  # while the record is read: a run handles its own Ctrl-C
        from pipelines.runtime.termination import exit_interrupted

        exit_interrupted("before the run was opened: nothing was changed")


if __name__ == "__main__":
    main("resume")
