"""The shared state that a pipeline's stages read and extend, one stage after another."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines import registry
from pipelines.tracking.store import TrackingSettings
from pipelines.tracking.tracker import Tracker


@dataclass
class RunContext:
    """What stages share: the resolved config, the tracker, and what earlier stages built.

    Stages communicate only through this object, so any stage can be swapped for another
    that reads and writes the same fields.
    """

    config: dict[str, Any]
    tracker: Tracker
    output_dir: Path
    datamodule: Any = None
    model: Any = None
    #: final metrics of the run (``test/acc``, ...), printed in the summary and returned
    metrics: dict[str, float] = field(default_factory=dict)
    #: files produced by stages, by role (``best_checkpoint`` -> path)
    artifacts: dict[str, Path] = field(default_factory=dict)
    #: the config key of the stage now running (``pipeline.stages.2``), for its messages
    stage_key: str = "pipeline.stages"
    #: continuing a killed run: training stages start from their last checkpoint
    resuming: bool = False
    #: a line per epoch where no progress bar is drawn (``pipelines.train`` in a notebook)
    epoch_lines: bool = False

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    @property
    def tracking_uri(self) -> str:
        """The store this run is (or, with ``tracking=none``, would be) tracked in.

        Earlier runs referenced as ``runs:/<id>`` are looked up there even when this run
        itself is not tracked."""
        return (
            self.tracker.uri
            or TrackingSettings.from_config(self.config.get("tracking")).resolved_uri()
        )

    @property
    def tracking_enabled(self) -> bool:
        """Whether the run is tracked as configured (``tracking=none``: not), whatever this
        process's tracker (a secondary DDP rank tracks nothing in a tracked run)."""
        return TrackingSettings.from_config(self.config.get("tracking")).enabled

    def model_class(self) -> type:
        """The class of the configured model plugin (``model.name``), not built: what the
        data adapts to before it is set up."""
        return registry.load("model", self.config["model"]["name"], path="model.name")

    def build_datamodule(self) -> Any:
        """The data plugin named by ``data.name``, built from the ``data`` node."""
        return registry.build("data", self.config["data"], path="data")

    def build_model(self, **data_kwargs: Any) -> Any:
        """The model plugin named by ``model.name``; ``data_kwargs`` fill data-implied args.

        Checked with a dry forward pass on the data's shape, so a kernel larger than the
        images is one paragraph naming the key now, not torch's traceback in training
        (:mod:`pipelines.checks.model_shapes`).
        """
        from pipelines.checks.model_shapes import build_model_that_fits

        def build(node: Mapping[str, Any]) -> Any:
            return registry.build("model", node, path="model", **data_kwargs)

        data = self.config.get("data") or {}
        return build_model_that_fits(
            build, self.config["model"], data_kwargs, str(data.get("name", "?"))
        )

    def require(self, attribute: str, stage: str, provider: str) -> Any:
        """A field an earlier stage must have set, or a clear error naming the missing stage."""
        value = getattr(self, attribute)
        if value is None:
            from pipelines.errors import PipelineError

            raise PipelineError(
                f"The '{stage}' stage needs a {attribute}, which the '{provider}' stage builds. "
                f"Put '{provider}' before '{stage}' in pipeline.stages."
            )
        return value


def set_up_datamodule(datamodule: Any, model_class: type) -> Any:
    """Find, load and split ``datamodule``'s data for ``model_class`` (the ``prepare``
    stage's and ``evaluate``'s one way to do it): text data first learns how the model takes
    tokens, then Lightning's ``prepare_data`` finds the files (downloading the missing ones)
    and ``setup("fit")`` loads and splits them."""
    if hasattr(datamodule, "adapt_to_model"):  # e.g. text: token ids for an LSTM
        datamodule.adapt_to_model(model_class)
    prepare_data = getattr(datamodule, "prepare_data", None)
    if prepare_data is not None:
        prepare_data()
    datamodule.setup("fit")
    return datamodule
