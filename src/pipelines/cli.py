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
        from pipelines.ui import main as ui

        ui(rest)
    elif command in ("evaluate", "predict"):
        from pipelines.evaluate import main as use

        use(command, rest)
    elif command in ("resume", "rerun"):
        from pipelines.resume import main as again

        again(command, rest)
    else:
        print(__doc__.strip())
        raise SystemExit(0 if command in ("-h", "--help") else 2)


if __name__ == "__main__":
    main()
