"""The ``prepare`` stage: build and set up the data, then the model it implies."""

from __future__ import annotations

from typing import Any

from pipelines.api import DataNotFoundError, RunContext, set_up_datamodule
from plugins.models.generative import GENERATION


class Prepare:
    """Builds ``ctx.datamodule`` (downloads/loads and splits) and ``ctx.model``, before the
    run opens: data that cannot be used and a model that does not fit it are refused
    without leaving a run; :meth:`run` records what they are."""

    def before_run(self, ctx: RunContext) -> None:
        model_class = ctx.model_class()
        datamodule = set_up_datamodule(ctx.build_datamodule(), model_class)
        data_kwargs = datamodule.model_kwargs() if hasattr(datamodule, "model_kwargs") else {}
        _refuse_a_single_class(ctx, model_class, datamodule, data_kwargs)
        ctx.datamodule = datamodule
        # Models that load an earlier run's network (runs:/...) read it from this store.
        ctx.model = ctx.build_model(**data_kwargs, tracking_uri=ctx.tracking_uri)
        # kept for run(): a later stage's before_run may replace ctx's (a second prepare)
        self.built = (datamodule, ctx.model, data_kwargs)

    def run(self, ctx: RunContext) -> None:
        if not hasattr(self, "built"):  # called without the engine's before_run
            self.before_run(ctx)
        datamodule, ctx.model, data_kwargs = self.built
        ctx.datamodule = datamodule
        data_path = getattr(datamodule, "data_path", None)  # in_memory or streamed
        if data_path:
            ctx.tracker.set_tags({"pipelines.data_path": str(data_path)})
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


def _refuse_a_single_class(
    ctx: RunContext, model_class: type, datamodule: Any, data_kwargs: dict[str, Any]
) -> None:
    """A classifier of fewer than two classes, refused before training: it learns nothing and
    scores a perfect accuracy (an image folder with one class folder, ``data.classes=[3]``).
    A generative model may well learn one class (the VAE on one digit)."""
    classes = data_kwargs.get("num_classes")
    if (
        classes is None
        or classes >= 2
        or data_kwargs.get("task", "classification") != "classification"
        or getattr(model_class, "task", None) == GENERATION
    ):
        return
    names = list(getattr(datamodule, "classes", []) or [])
    found = f" ({', '.join(map(str, names))})" if names else ""
    data = ctx.config["data"]
    raise DataNotFoundError(
        f"Data '{data['name']}' gives {classes} class{found}, and a classifier needs at least 2: "
        "with one, every prediction is right and nothing is learnt. Check the data settings "
        "(data.classes, data.path or data.root) for the classes you meant, or train a "
        "generative model on it (pipeline=generative)."
    )
