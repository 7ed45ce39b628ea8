"""``python -m pipelines.predict RUN_ID FILE ...``: a finished run's model on new files.

See :mod:`pipelines.commands.evaluate`, which holds both commands.
"""

from pipelines.commands.evaluate import main

if __name__ == "__main__":
    main("predict")
