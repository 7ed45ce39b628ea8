"""``python -m pipelines.ui``: see :mod:`pipelines.commands.ui`."""

from pipelines.commands.ui import main

if __name__ == "__main__":
    main()
