"""The ``prepare`` stage: build and set up the data, then the model it implies."""

from __future__ import annotations

from pipelines import registry
from pipelines.context import RunContext, set_up_datamodule


class Prepare:
    """Builds ``ctx.datamodule`` (downloads/loads and splits) and ``ctx.model``."""

    def run(self, ctx: RunContext) -> None:
        model_class = registry.load("model", ctx.config["model"]["name"], path="model.name")
        datamodule = set_up_datamodule(ctx.build_datamodule(), model_class)
        ctx.datamodule = datamodule
        data_kwargs = datamodule.model_kwargs() if hasattr(datamodule, "model_kwargs") else {}
        # Models that load an earlier run's network (runs:/...) read it from this store.
        ctx.model = ctx.build_model(**data_kwargs, tracking_uri=ctx.tracking_uri)
        params = {f"data.{key}": value for key, value in data_kwargs.items()}
        if "vocabulary" in data_kwargs:  # text: thousands of words, too long for a param
            params["data.vocabulary_size"] = len(params.pop("data.vocabulary") or ())
        found = getattr(ctx.model, "embeddings_found", None)  # pretrained word vectors
        if found is not None:
            params["model.embeddings_found"] = found
        ctx.tracker.log_params(params)
        # what the data learned and the run needs to be reproduced (text: tokenizer.json)
        artifacts = datamodule.artifacts() if hasattr(datamodule, "artifacts") else {}
        for path in artifacts.values():
            ctx.tracker.log_artifact(path, "data")
