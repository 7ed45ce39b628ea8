"""A finished run's model and data plugin, rebuilt from the run's own record."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from typing import Any

from pipelines.errors import PipelineError
from pipelines.runtime.collector import resume_after_startup


def rebuild(
    run_id: str,
    overrides: list[str],
    tracking_uri: str | None,
    check_model: Callable[[Any, Any], None] | None = None,
    to_encode: bool = False,
) -> tuple[Any, Any, Any]:
    """(record, model, datamodule) of a run, set up as the run had them.

    ``check_model(record, model)`` may refuse the model before its data is prepared (which
    can take long), e.g. a generative model asked to ``predict``. ``to_encode`` (``predict``):
    only ``encode_inputs`` and ``classes`` are needed, which a plugin with
    ``prepare_to_encode(model)`` readies from the run's record without reading its data;
    where it cannot (it returns False), the data is set up as for ``evaluate``."""
    from omegaconf import OmegaConf

    from pipelines import registry
    from pipelines.context import set_up_datamodule
    from pipelines.training.run_loader import fetch_run, model_of

    record = fetch_run(run_id, tracking_uri)
    config = record.config_with(overrides)
    if any(not item.startswith("data.") for item in overrides):
        raise PipelineError(
            f"Only the data can be changed here ({overrides}); the model is the run's own. "
            "Write data.KEY=VALUE, or re-run with other settings: python -m pipelines.rerun."
        )
    model = model_of(record)
    if check_model is not None:
        check_model(record, model)
    data_node = OmegaConf.to_container(config.data, resolve=True)
    datamodule = registry.build("data", data_node, path="data")
    if hasattr(datamodule, "use_artifacts"):
        # what the plugin fitted on the run's data (text: vocabulary, classes), not refitted
        # on whatever data.KEY=VALUE points at: the model only knows the run's encoding
        with tempfile.TemporaryDirectory() as tmp:
            datamodule.use_artifacts(record.artifact_files("data", tmp))
    prepare_to_encode = getattr(datamodule, "prepare_to_encode", None) if to_encode else None
    if prepare_to_encode is None or not prepare_to_encode(model):
        try:
            datamodule = set_up_datamodule(datamodule, type(model))
        except PipelineError as exc:
            if not to_encode:
                raise
            raise PipelineError(
                f"{exc} (predict must read the data of run '{record.run_id}': its data "
                f"plugin ({type(datamodule).__name__}) cannot encode files from the run's "
                "record alone, e.g. for a run logged by an older version. Give the data's "
                "new place as data.KEY=VALUE after the files.)"
            ) from exc
    resume_after_startup()  # what follows (a pass over a split) makes garbage to collect
    return record, model, datamodule
