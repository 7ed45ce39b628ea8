"""``python -m pipelines.predict RUN_ID FILE ...``: a finished run's model on new files.

See :mod:`pipelines.evaluate`, which holds both commands.
"""

from pipelines.evaluate import main

if __name__ == "__main__":
    main("predict")
