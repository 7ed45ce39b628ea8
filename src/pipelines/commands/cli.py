"""``pipelines COMMAND ...``: one command for everything, each also ``python -m pipelines.X``.

pipelines run [overrides]        train (python -m pipelines.run)
pipelines ui [--port N]          browse runs in the MLflow UI
pipelines evaluate RUN_ID        a run's model on its test split
pipelines predict RUN_ID FILE..  a run's model on new files
pipelines resume RUN_ID          continue a killed run where it stopped
pipelines rerun RUN_ID [K=V..]   the same run again, from its record
"""

from __future__ import annotations

import sys


def main() -> None:
    command, *rest = sys.argv[1:] or ["--help"]
    if command == "run":
        from pipelines.run import main as run

        sys.argv = [f"{sys.argv[0]} run", *rest]
        run()
    elif command == "ui":
        from pipelines.commands.ui import main as ui

        ui(rest)
    elif command in ("evaluate", "predict"):
        from pipelines.commands.evaluate import main as use

        use(command, rest)
    elif command in ("resume", "rerun"):
        from pipelines.commands.resume import main as again

        again(command, rest)
    elif command in ("-h", "--help"):
        print(__doc__.strip())
    else:
        from pipelines.errors import did_you_mean

        known = ["run", "ui", "evaluate", "predict", "resume", "rerun"]
        print(
            f"Error: unknown command '{command}'.{did_you_mean(command, known)} The commands "
            f"are: {', '.join(known)} (`pipelines --help` says what each does).",
            file=sys.stderr,
        )
        raise SystemExit(2)


if __name__ == "__main__":
    main()
