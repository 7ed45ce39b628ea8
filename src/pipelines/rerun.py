"""``python -m pipelines.rerun RUN_ID [KEY=VALUE ...]``: an earlier run again, from its record.

See :mod:`pipelines.commands.resume`, which holds both commands.
"""

from pipelines.commands.resume import main

if __name__ == "__main__":
    main("rerun")
