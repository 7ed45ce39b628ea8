"""Command-line entry point: ``python -m pipelines.run [overrides]`` (Hydra).

Examples::

    python -m pipelines.run                          # mlp on digits, tracked in ./mlruns
    python -m pipelines.run model=convnet trainer.max_epochs=5
    python -m pipelines.run -m model=mlp,convnet     # a sweep: one MLflow parent, two children
    python -m pipelines.run --help                   # groups, options, plugins (--hydra-help)
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from pipelines.checks.command_line import check_one_mode, checked_overrides
from pipelines.checks.composition import describe, hydra_raises_composition_errors
from pipelines.config import config_dir
from pipelines.errors import PipelineError
from pipelines.runtime.collector import defer_during_startup
from pipelines.runtime.termination import exit_interrupted
from pipelines.tracking.sweep import close_unfinished_sweep, describe_search_error


@hydra.main(config_path=str(config_dir()), config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> object:
    from pipelines.runner import execute

    return execute(cfg)


def main() -> None:
    """Check the command line for unknown names, then hand it to Hydra."""
    arguments = sys.argv[1:]
    if "--help" in arguments or "-h" in arguments:
        from pipelines.commands.help import help_text

        print(help_text())
        return
    defer_during_startup()
    try:
        check_one_mode(arguments)
        arguments = checked_overrides(arguments)
    except PipelineError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    sys.argv[1:] = arguments  # what Hydra reads
    with hydra_raises_composition_errors():
        try:
            _hydra_main()
        except BaseException as exc:
            search_message = describe_search_error(exc)  # reads the sweep's state: first
            # a sweep stopped before Hydra's end-of-sweep callback: its parent run says so
            close_unfinished_sweep(exc)
            message = search_message or (
                describe(exc, arguments) if isinstance(exc, Exception) else None
            )
            if isinstance(exc, KeyboardInterrupt):
                # a run in progress handles its own Ctrl-C (KILLED, how to resume), and so
                # does a job's start-up; this is Hydra's work between them
                exit_interrupted("while no run was in progress")
            if message is None:
                raise
            print(f"Error: {message}", file=sys.stderr)
            raise SystemExit(2) from None


if __name__ == "__main__":
    main()
