"""The ``naive_baseline`` stage: the book's common-sense forecast, the bar a model must clear.

2nd ed. 10.2.2: "predict that the temperature 24 hours from now will be equal to the
temperature right now". On Jena it scores a validation MAE of 2.44 and a test MAE of 2.62
degrees; the book's densely connected network does not beat it.
"""

from __future__ import annotations

import logging

from pipelines.api import PipelineError, RunContext

log = logging.getLogger(__name__)


class NaiveBaseline:
    """Logs ``val/naive_mae`` and ``test/naive_mae`` in the data's own units.

    The data plugin computes it (``datamodule.naive_forecast_mae(split)``), because only the
    data knows where a window ends and where its target lies. ``test/naive_mae`` also goes
    into the run summary, beside the model's ``test/mae`` from the ``test`` stage.
    """

    def __init__(self, splits: tuple[str, ...] = ("val", "test")) -> None:
        self.splits = tuple(splits)

    def check(self, ctx: RunContext) -> None:
        """Right after ``prepare``: the data can score the baseline. In a pipeline that
        trains before this stage, non-forecasting data was refused only after training."""
        datamodule = ctx.require("datamodule", "naive_baseline", "prepare")
        if not hasattr(datamodule, "naive_forecast_mae"):
            raise PipelineError(
                f"The 'naive_baseline' stage needs forecasting data (a data plugin with "
                f"`naive_forecast_mae(split)`, e.g. data=co2, data=jena or data=timeseries); "
                f"data '{ctx.config['data']['name']}' has none."
            )

    def run(self, ctx: RunContext) -> None:
        self.check(ctx)
        compute = ctx.datamodule.naive_forecast_mae
        metrics = {f"{split}/naive_mae": float(compute(split)) for split in self.splits}
        ctx.tracker.log_metrics(metrics, step=0)
        ctx.metrics.update(metrics)
        log.info(
            "naive baseline: %s",
            ", ".join(f"{key} {value:.4f}" for key, value in metrics.items()),
        )
