"""``python -m pipelines.evaluate``: see :mod:`pipelines.commands.evaluate`."""

from pipelines.commands.evaluate import main

if __name__ == "__main__":
    main("evaluate")
