"""``python -m pipelines.resume``: see :mod:`pipelines.commands.resume`."""

from pipelines.commands.resume import main

if __name__ == "__main__":
    main("resume")
