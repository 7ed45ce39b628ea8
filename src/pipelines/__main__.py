"""``python -m pipelines`` is ``python -m pipelines.run``."""

from pipelines.run import main

main()
