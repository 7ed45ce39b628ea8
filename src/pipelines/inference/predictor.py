"""A finished run's model with the encoding its data plugin learned: raw inputs in, one row
of predictions per input out.

The same :class:`Predictor` answers ``python -m pipelines.predict`` (files),
``pipelines.load(run_id).predict`` (files, strings, a DataFrame) and the run's MLflow
``model`` (:mod:`pipelines.inference.served`), so all three give the same answers. A
classifier's row is its likeliest class by name and that class's probability; a
regressor's, the value in the target's own units (where the plugin has
``decode_outputs``). Files get a ``file`` column first, and a ``row`` column where the
plugin's ``encoded_rows`` names one input per table row.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.errors import ConfigValueError, PipelineError

if TYPE_CHECKING:
    import pandas as pd

#: inputs per forward pass: a table of many rows is not one huge batch
PREDICT_BATCH_SIZE = 1024


class Predictor:
    """``model`` (in eval mode) and ``datamodule`` (ready to encode inputs) of one run."""

    def __init__(self, model: Any, datamodule: Any, name: str = "the run") -> None:
        self.model = model
        self.datamodule = datamodule
        self.name = name

    @classmethod
    def from_run(
        cls, run_id: str, tracking_uri: str | None = None, overrides: list[str] | None = None
    ) -> Predictor:
        """The run's model and encoders from its record (``data.KEY=VALUE`` overrides matter
        only where the data must be set up, e.g. an older run whose data moved)."""
        from pipelines.inference.rebuild import rebuild

        record, model, datamodule = rebuild(
            run_id, list(overrides or []), tracking_uri, check_model=refuse_generative,
            to_encode=True,
        )  # fmt: skip
        return cls(model, datamodule, name=f"run '{record.run_id}' ({record.run_name})")

    @property
    def classes(self) -> list[str]:
        return list(getattr(self.datamodule, "classes", []) or [])

    def predict(self, inputs: Any) -> pd.DataFrame:
        """Predictions for raw ``inputs``: a list of :class:`~pathlib.Path` files (as
        ``predict`` reads them), or what the data plugin's ``encode_values`` takes (texts,
        image paths or bytes, a DataFrame of table rows)."""
        if _all_paths(inputs):
            return self.predict_files([Path(item) for item in inputs])
        encode_values = getattr(self.datamodule, "encode_values", None)
        if encode_values is None:
            if isinstance(inputs, (list, tuple)) and all(isinstance(i, str) for i in inputs):
                return self.predict_files([Path(item) for item in inputs])
            raise ConfigValueError(
                f"The data plugin of {self.name} ({type(self.datamodule).__name__}) reads "
                f"files only: {self.accepted_inputs()}. Give a list of their paths."
            )
        return self._table(self._outputs(encode_values(inputs)), sources=None)

    def predict_files(self, files: list[Path]) -> pd.DataFrame:
        """Predictions for files, through the data plugin's ``encode_inputs``."""
        missing = [str(path) for path in files if not path.is_file()]
        if missing:
            raise PipelineError(f"No such file: {', '.join(missing)}.")
        if not hasattr(self.datamodule, "encode_inputs"):
            raise PipelineError(
                f"The data plugin of {self.name} ({type(self.datamodule).__name__}) cannot "
                "turn files into model inputs (it has no encode_inputs method)."
            )
        try:
            inputs = self.datamodule.encode_inputs(files)
        except (OSError, ValueError) as exc:  # PIL's UnidentifiedImageError is an OSError
            raise PipelineError(
                f"predict cannot read these files as inputs of {self.name}: {exc}. What its "
                f"data plugin ({type(self.datamodule).__name__}) reads: "
                f"{self.accepted_inputs()}. Give predict files of that kind."
            ) from None
        return self._table(self._outputs(inputs), sources=self._input_sources(files))

    def accepted_inputs(self) -> str:
        """What the plugin's ``encode_inputs`` reads: its ``predict_inputs``, else the first
        sentence of that method's docstring."""
        described = getattr(self.datamodule, "predict_inputs", None)
        if described:
            return str(described)
        method = getattr(self.datamodule, "encode_inputs", None)
        doc = " ".join((getattr(method, "__doc__", None) or "").split()).replace("``", "")
        sentence = doc.split(". ")[0].rstrip(".")
        return sentence or "files like the ones it was trained on"

    def _outputs(self, inputs: Any) -> Any:
        import torch

        outputs = predict_in_batches(self.model, inputs)
        count = len(inputs) if hasattr(inputs, "__len__") else None
        if not isinstance(outputs, torch.Tensor) or outputs.ndim != 2 or len(outputs) != count:
            shape = tuple(outputs.shape) if isinstance(outputs, torch.Tensor) else type(outputs)
            raise PipelineError(
                f"predict is for classifiers and regressors (one row of class probabilities "
                f"or values per input), but the model of {self.name} "
                f"({type(self.model).__name__}) returned {shape} for {count} input(s). "
                "Use its own pipeline to apply it: python -m pipelines.run --help lists them."
            )
        return outputs

    def _table(self, outputs: Any, sources: list[dict[str, Any]] | None) -> pd.DataFrame:
        import pandas as pd

        if getattr(self.model, "task", "classification") == "regression":
            if hasattr(self.datamodule, "decode_outputs"):  # a normalised target, scaled back
                outputs = self.datamodule.decode_outputs(outputs)
            predicted = [{"prediction": shortest(row.flatten()[0])} for row in outputs]
        else:
            predicted = labelled(outputs, self.classes)
        if sources is not None:
            predicted = [{**s, **p} for s, p in zip(sources, predicted, strict=True)]
        return pd.DataFrame.from_records(predicted)

    def _input_sources(self, files: list[Path]) -> list[dict[str, Any]]:
        """Each input's ``file``, or, where ``encoded_rows`` lists them (a table: one input
        per row), its file and ``row``."""
        encoded_rows = getattr(self.datamodule, "encoded_rows", None)
        if encoded_rows is None:
            return [{"file": str(path)} for path in files]
        return [{"file": str(path), "row": row} for path, row in encoded_rows]


def _all_paths(inputs: Any) -> bool:
    return (
        isinstance(inputs, (list, tuple))
        and bool(inputs)
        and all(isinstance(item, Path) for item in inputs)
    )


def predict_in_batches(model: Any, inputs: Any) -> Any:
    """The model's ``predict_step`` over ``inputs`` (in eval mode, without gradients): a
    tensor of more than ``PREDICT_BATCH_SIZE`` rows that many at a time, concatenated;
    anything else (a plugin's own input structure) in one call, as it comes."""
    import torch

    model.eval()
    with torch.no_grad():
        if not isinstance(inputs, torch.Tensor) or len(inputs) <= PREDICT_BATCH_SIZE:
            return model.predict_step(inputs, 0)
        parts = [
            model.predict_step(inputs[start : start + PREDICT_BATCH_SIZE], 0)
            for start in range(0, len(inputs), PREDICT_BATCH_SIZE)
        ]
    if all(isinstance(part, torch.Tensor) and part.ndim > 0 for part in parts):
        return torch.cat(parts)
    return parts  # not rows: the shape check after this names what the model returned


def shortest(value: Any) -> float:
    """A model output as the float its own precision holds: float32's 25.434982, not the
    float64 expansion 25.434982299804688 of the same number."""
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor) and value.dtype == torch.float32:
        return float(str(np.float32(value.item())))
    return float(value)


def labelled(outputs: Any, classes: list[str]) -> list[dict[str, Any]]:
    """A classifier's likeliest class per row of probabilities, by name where ``classes``
    has it, with its probability."""
    rows = []
    for output_row in outputs:
        index = int(output_row.argmax())
        label = classes[index] if index < len(classes) else str(index)
        rows.append({"prediction": label, "probability": shortest(output_row[index])})
    return rows


def refuse_generative(record: Any, model: Any) -> None:
    """Refuse generative models (VAE, GAN, character LSTM) before their data is prepared:
    they draw samples, they do not label inputs, and have a pipeline for that."""
    if callable(getattr(model, "generate", None)):
        raise PipelineError(
            f"Run '{record.run_id}' ({record.run_name}) trained a generative model "
            f"({type(model).__name__}); predict is for classifiers and regressors, which "
            "label or score inputs. Draw samples from it instead: python -m "
            f"pipelines.run pipeline=generate pipeline.stages.0.source=runs:/{record.run_id}"
        )
