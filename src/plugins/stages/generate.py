"""The ``generate`` stage: samples from a generative model, now or from a finished run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.api import PipelineError, RunContext, check_arguments
from plugins.models.generative import Generative
from plugins.stages.requirements import model_name


class Generate:
    #: samples come from a trained network, not from building the configured model/data
    uses_configured_model = False

    """Draw samples with ``model.generate(...)`` and log them under ``generate/``.

    After ``fit`` it uses the trained model (the best checkpoint's weights when there is
    one). With ``source=runs:/<run_id>`` (or ``models:/<name>/<version>``) it needs no
    training at all: the network of that finished run is rebuilt from the run's own config
    and best checkpoint, and the samples go into this new run, tagged with the source.
    Every other key (``temperatures``, ``length``, ``seed_text``, ``grid_size``, ...) is
    passed to the model's ``generate``.
    """

    def __init__(self, source: str | None = None, **settings: Any) -> None:
        self.source = source
        self.settings = settings

    def check(self, ctx: RunContext) -> None:
        """Right after ``prepare``: the model it built can generate, and takes this stage's
        keys. Checked at the end, a classifier (``pipeline=generative`` with the default mlp)
        or a misspelt ``length`` was refused only after the whole training. A ``source``
        run's network is checked when it is loaded (it is not ``ctx.model``)."""
        if self.source is None and ctx.model is not None:
            self._settings_for(ctx.model, ctx.stage_key, ctx.output_dir, model_name(ctx))

    def run(self, ctx: RunContext) -> None:
        model = self._model(ctx)
        name = self.source or model_name(ctx)
        settings = self._settings_for(model, ctx.stage_key, ctx.output_dir, name)
        model.eval()
        files = model.generate(**settings)
        for path in files:
            ctx.tracker.log_artifact(path, "generate")
        show_samples(files)

    def _settings_for(self, model: Any, key: str, output_dir: Path, name: str) -> dict[str, Any]:
        """``generate``'s arguments for ``model`` (``name`` in messages: the configured
        model, or the source run), or a clear error if it cannot generate."""
        if not isinstance(model, Generative):
            raise PipelineError(
                f"The 'generate' stage needs a generative model (one with a `generate` method: "
                f"char_lstm, vae, dcgan, ...); '{name}' ({type(model).__name__}) has none. Use "
                "pipeline=classify for it, or a generative model: model=vae or model=dcgan "
                "on images, model=char_lstm with data=text_corpus."
            )
        return check_arguments(
            model.generate,
            self.settings,
            path=key,
            what=f"{type(model).__name__}.generate",
            implicit={"output_dir": output_dir / "generate", "epoch": None},
        )

    def _model(self, ctx: RunContext) -> Any:
        if self.source:
            from pipelines.api import load_run_model

            ctx.tracker.set_tags({"pipelines.source_run": self.source})
            return load_run_model(self.source, ctx.tracking_uri)
        model = ctx.require("model", "generate", "prepare")
        best = ctx.artifacts.get("best_checkpoint")
        if best:
            import torch

            state = torch.load(best, map_location="cpu", weights_only=True)
            model.load_state_dict(state["state_dict"])
        return model


#: characters of each generated text shown on the console (the whole text is an artifact)
SHOWN_CHARACTERS = 300


def show_samples(files: list[Any]) -> None:
    """What was generated, on the console: the start of each text (the book reads them
    side by side, one per temperature) and where each image is. The stage logged them as
    artifacts and printed nothing, so a user had to open the MLflow UI to see any."""
    for file in map(Path, files):
        if file.suffix == ".txt":
            text = file.read_text(encoding="utf-8")
            shown = text[:SHOWN_CHARACTERS] + ("..." if len(text) > SHOWN_CHARACTERS else "")
            print(f"--- {file.stem} ({len(text)} characters, {file})\n{shown}", flush=True)
        else:
            print(f"--- {file.name}: {file}", flush=True)
