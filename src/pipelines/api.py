"""The plugin contract: the one module a plugin of pipelines imports.

A plugin is a class registered under an entry-point group of its package's
``pyproject.toml``, exactly as the built-in ones are::

    [project.entry-points."pipelines.models"]   # a lightning.LightningModule
    tiny = "my_package.model:TinyNet"
    [project.entry-points."pipelines.data"]     # a lightning.LightningDataModule
    [project.entry-points."pipelines.stages"]   # a class with run(ctx)
    [project.entry-points."pipelines.configs"]  # a package of config group folders
    my_package = "my_package.conf"

The constructor's parameters are the plugin's config keys (``model.width=32``), checked
against their type hints, ranges included, before a run opens. The engine fills a few
arguments in itself where the constructor takes them: the data's
:meth:`DataPlugin.model_kwargs` (``input_shape``, ``num_classes``, ...) and ``tracking_uri``.

:class:`ModelPlugin`, :class:`DataPlugin` and :class:`StagePlugin` declare every hook the
engine may call on a plugin of that kind, with when it is called and what it returns.
Every hook is optional unless its docstring says otherwise: the engine asks for it by name
and does without where a plugin has none. They are protocols, for reading and for type
checkers; a plugin does not subclass them. The registry checks a plugin against its kind
when it loads it: a hook name it almost matches (``model_kwarg``) is refused, naming it.

The rest is the toolkit plugins may use: the run's context, one-paragraph errors,
downloads with checksums, batch loaders and their DDP shards, training as ``fit`` does.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from typing_extensions import TypedDict, Unpack

from pipelines.checks.ranges import (
    BatchSize,
    ClipValue,
    DropoutRate,
    Epochs,
    HeadCount,
    HiddenLayer,
    HiddenUnits,
    KernelSize,
    KernelSizes,
    LabelNoise,
    LayerCount,
    LayerSize,
    LayerSizes,
    LeakySlope,
    LearningRate,
    Penalty,
    PoolSize,
    Range,
    Seed,
    Width,
)
from pipelines.checks.validation import check_arguments
from pipelines.context import RunContext, set_up_datamodule
from pipelines.errors import (
    ConfigValueError,
    DataNotFoundError,
    PipelineError,
    TrainingDiverged,
    did_you_mean,
)
from pipelines.runtime.atomic import atomic_torch_save
from pipelines.runtime.downloads import (
    REFETCH,
    RemoteFile,
    download,
    ensure_file,
    extract_tar,
    file_already_there,
    folder_given_error,
    reading_data_file,
    unreadable_file_error,
)
from pipelines.runtime.termination import stop_if_requested
from pipelines.training.fit import fit_model
from pipelines.training.run_loader import is_run_reference, load_checkpoint, load_run_model
from pipelines.training.tensor_loader import (
    FollowsTrainerEpoch,
    SplitLoaders,
    TensorBatches,
    TensorSplitLoaders,
    distributed_shard,
    no_validation_data,
    shard_order,
)
from pipelines.training.trainer import build_trainer

if TYPE_CHECKING:
    import torch

#: what a model is for (:attr:`ModelPlugin.task`); the data says which of the first two it
#: poses (``model_kwargs()["task"]``)
Task = Literal["classification", "regression", "generation"]
GENERATION: Task = "generation"


# -- Argument types: ranges, and the training arguments every built-in model shares -------
# A key's range is part of its type in the signature: an alias imported above
# (``dropout: DropoutRate = 0.5``, ``seed: Seed``) or an ``Annotated[float, Field(ge=0,
# lt=1)]`` with a :class:`Range` after it to word the refusal, checked before a run opens.


class OptimizerArguments(TypedDict, total=False):
    """How a built-in model's weights are trained. Declared here once: a model takes them
    as ``**training: Unpack[OptimizerArguments]`` and passes them on to its base class,
    whose defaults they keep (``Classifier``: rmsprop at 0.001, no penalty). They are the
    model's config keys, with these types and ranges (``model.lr=0.01``); their config
    values are likewise declared once, in ``conf/_shared/model_training.yaml``."""

    optimizer: str
    """rmsprop, keras_rmsprop (Keras' RMSprop exactly: the book presets), adam, adamw or sgd."""
    lr: LearningRate
    weight_decay: Penalty
    """The optimizer's own weight decay."""
    l1: Penalty
    """The book's L1 penalty, ``l1 * sum|w|`` over weight matrices and kernels."""
    l2: Penalty
    """The book's L2 penalty, ``l2 * sum w^2`` over weight matrices and kernels."""
    optimizer_args: dict[str, Any] | None
    """More arguments for the optimizer's constructor, e.g. ``{eps: 1e-7}`` (Keras' Adam
    epsilon, the VAE preset's) or ``{momentum: 0.9}`` for SGD."""
    init: Literal["keras", "torch"]
    """What the layers start with: ``keras`` (Glorot-uniform kernels, zero biases,
    orthogonal recurrent kernels, Keras' batch-norm momentum and epsilon; the default) or
    ``torch`` (PyTorch's own defaults)."""


class TrainingArguments(OptimizerArguments, total=False):
    """:class:`OptimizerArguments`, and what the data poses (its ``model_kwargs()``): a
    model that learns classification or regression, as the data says, takes these."""

    task: Literal["classification", "regression"]
    target_scale: float
    """The target's standard deviation where the data normalised it: MAE in its units."""


class ModelPlugin(Protocol):
    """A model plugin: a ``lightning.LightningModule`` (required), and what it declares.

    It logs its metrics under the names the engine and the MLflow UI read: ``train/loss``,
    ``val/loss``, ``test/loss``, plus ``val/acc``/``test/acc`` (classification) or
    ``val/mae``/``test/mae`` (regression, in the data's own units).
    """

    task: ClassVar[Task]
    """What the model is for. ``generation`` (vae, dcgan, char_lstm) tells stages that read
    class scores (report, visualize) to refuse it, and the single-class check to allow it.
    Read on the class, before the model is built. Default: what the data poses."""

    input_kind: ClassVar[Literal["tokens"]]
    """``"tokens"``: the model embeds token ids. Text data then vectorizes into integer
    sequences instead of multi-hot bags (``vectorize.mode: auto``). Read on the class,
    before the data is set up (:meth:`DataPlugin.adapt_to_model`)."""

    embeddings_found: float
    """The share of the vocabulary found in a pretrained embedding file, logged as the
    run's ``model.embeddings_found`` parameter after the model is built."""

    def generate(self, output_dir: Path, epoch: int | None = None, **settings: Any) -> list[Path]:
        """Write samples (images, text) into ``output_dir``; return the files written.

        Called by the ``generate`` stage after every epoch (``epoch``) and at the end
        (``epoch=None``), with the stage's own settings. A model with ``generate`` is
        refused by ``predict``, which labels files."""
        ...

    @classmethod
    def rebuild_arguments(
        cls, hparams: dict[str, Any], tracking_uri: str | None = None
    ) -> dict[str, Any]:
        """The constructor arguments that rebuild the architecture from a run's saved
        hyper-parameters, when the checkpoint supplies every weight (``runs:/<id>``,
        ``evaluate``, ``predict``): e.g. without downloading pretrained weights again.
        Default: the hyper-parameters as saved."""
        ...

    def freeze_base(self) -> None:
        """Feature extraction (``feature_extraction`` stage): only the head learns."""
        ...

    def unfreeze_top(self, blocks: int) -> list[str]:
        """Fine-tuning (``fine_tuning`` stage): the top ``blocks`` of the pretrained base
        learn again; returns their names, for the log."""
        ...

    fused_steps_are_exact: ClassVar[bool]
    """True: ``training_step`` and ``validation_step`` give the same weights and metrics when
    the engine hands them, under ``speed.steps_per_call``, N batches one after the other
    within one Lightning step (each with its own ``batch_idx``): the model logs nothing per
    batch through ``self.log`` (Lightning would weight it by the N batches' size) and
    overrides no per-batch hook (``on_train_batch_start``, ...: called once per N).
    Read before ``fit``: ``steps_per_call: auto`` fuses only such models, and their
    validation batches. The built-in models' base class declares it. Default False."""


class DataPlugin(Protocol):
    """A data plugin: a ``lightning.LightningDataModule`` (required), and its hooks.

    Lightning's own hooks keep their meaning: ``prepare_data`` finds or downloads the files
    (called once, before the run opens, so missing data leaves no FAILED run; raise
    :class:`DataNotFoundError` naming the fix), ``setup`` loads and splits them, and the
    ``*_dataloader`` methods hand out batches of ``(inputs, targets)``.
    """

    classes: list[str]
    """The class names by label index, after ``setup`` (or :meth:`prepare_to_encode`):
    reports, sample figures and ``predict`` name classes with them."""

    splits: Mapping[str, tuple[torch.Tensor, ...]]
    """In-memory data: ``{"train"|"val"|"test": (inputs, targets)}`` after ``setup``, for
    stages that show samples (report, visualize)."""

    predict_inputs: str
    """What :meth:`encode_inputs` reads, in words ("text files, one document each"), for
    ``predict``'s messages. Default: the first sentence of its docstring."""

    test_texts: list[str]
    """Text data: the test split's original texts, in order, after ``setup``: the report's
    sample predictions show them instead of texts decoded from token ids."""

    vocabulary: list[str]
    """Text data: the tokens by id (id 0 is padding), for decoding inputs into text where
    there are no original texts (``vectorizer`` of the built-in text data comes first)."""

    vectorizer: Any
    """The built-in text data's fitted vectorizer (``vocabulary``, ``settings.mode``):
    sample predictions decode inputs with it; a third party gives ``vocabulary`` instead."""

    data_path: str
    """After ``setup``: ``"in_memory"`` or ``"streamed"`` (read from disk per batch; no
    ``splits``), the run's tag ``pipelines.data_path``; the engine moves no streamed splits."""

    encoded_rows: list[tuple[Path, int]]
    """After :meth:`encode_inputs` of tables: the (file, row) of each input, so
    ``predict`` prints one line per row instead of per file."""

    def model_kwargs(self) -> dict[str, Any]:
        """Model arguments the data implies, after ``setup``: ``input_shape``,
        ``num_classes``, ``task`` (``"regression"`` with ``target_scale``), ``vocab_size``,
        ... Each is passed to the model only if its constructor takes it; the ``model``
        config node wins over it. Logged as ``data.*`` parameters."""
        ...

    def adapt_to_model(self, model_class: type) -> None:
        """Choose how to read the data for ``model_class`` (its :attr:`ModelPlugin.input_kind`),
        before ``prepare_data`` and ``setup``; the data never imports a model."""
        ...

    def artifacts(self) -> dict[str, Path]:
        """Files the data learned that the run needs to be reproduced (a tokenizer, the
        class names, the normalisation), by file name; logged under ``data/`` after setup.
        :meth:`use_artifacts` takes them back."""
        ...

    def use_artifacts(self, files: Mapping[str, Path]) -> None:
        """The files an earlier run logged with :meth:`artifacts` (only those it has),
        handed over before ``setup`` by ``evaluate``, ``predict`` and ``rerun``: encode as
        that run did, not as today's data alone would."""
        ...

    def prepare_to_encode(self, model: Any) -> bool:
        """Ready :meth:`encode_inputs` (and ``classes``) for ``predict`` from the run's
        artifacts alone, without reading the training data. False: set the data up instead."""
        ...

    def encode_inputs(self, paths: list[Path]) -> torch.Tensor:
        """Files (images, texts, CSV tables) as one batch of model inputs, encoded as the
        training data was: what ``predict`` feeds the model."""
        ...

    def encode_values(self, values: Any) -> torch.Tensor:
        """Raw inputs as a person holds them, encoded as :meth:`encode_inputs` encodes files:
        texts (a list of strings, or a DataFrame's ``text`` column), images (paths or the
        files' bytes, or a DataFrame's ``path`` column), table rows (a DataFrame with the
        training columns), the latest rows of a series (a DataFrame in time order). What
        ``pipelines.load(run_id).predict`` and the run's served MLflow model feed the
        model; anything else is a :class:`ConfigValueError` saying what the plugin takes.
        Without it, only file paths can be predicted on."""
        ...

    def decode_outputs(self, outputs: torch.Tensor) -> torch.Tensor:
        """A regressor's outputs in the target's own units (a normalisation undone), for
        ``predict``."""
        ...

    def folds(self, k: int, seed: int) -> Iterator[tuple[Any, Any]]:
        """``k`` (train, validation) loader pairs over the training data, shuffled with
        ``seed``: what the ``kfold`` stage trains on."""
        ...

    def naive_forecast_mae(self, split: str) -> float:
        """The common-sense forecast's MAE on ``split``, in the target's units: what the
        ``naive_baseline`` stage logs beside the model's."""
        ...

    def move_splits_to(self, device: Any) -> None:
        """Move the in-memory splits to ``device`` once (``speed.data_on_device``), so
        batches are sliced there. :class:`TensorSplitLoaders` has it."""
        ...

    fused_batches_are_exact: bool
    """Whether handing over several batches at once (``speed.steps_per_call``) gives the
    model exactly the batches it would get one by one: in-memory data not augmented per
    batch. :class:`TensorSplitLoaders` has it."""

    steps_per_call: int
    """Training batches to hand over at once, one after the other in one batch
    (``speed.steps_per_call``; the engine cuts them apart), set before ``fit`` and back to
    1 after it: its presence says the data can. :class:`TensorSplitLoaders` has it."""

    val_steps_per_call: int
    """The same for validation batches. :class:`TensorSplitLoaders` has it."""


class StagePlugin(Protocol):
    """A stage plugin: one step of ``pipeline.stages``; ``run`` is required.

    Stages share one :class:`RunContext` and communicate only through it: ``prepare``
    sets ``ctx.datamodule`` and ``ctx.model``, ``fit`` adds ``ctx.artifacts
    ["best_checkpoint"]``, stages add their results to ``ctx.metrics``.
    """

    uses_configured_model: ClassVar[bool]
    """False for a stage that brings its own network (``deepdream``, ``generate`` from an
    earlier run): a pipeline of only such stages is named after the pipeline, not after
    the configured model and data. Default True."""

    def before_run(self, ctx: RunContext) -> None:
        """The work that can refuse the run, done before it opens, stage by stage
        (``prepare``: load and split the data, build the model), so a refusal leaves no run
        and no folder. It sees earlier hooks' results, not earlier ``run``s; log in ``run``."""
        ...

    def run(self, ctx: RunContext) -> None:
        """Do the stage's work on ``ctx``, in the order of ``pipeline.stages``. Required."""
        ...

    def check(self, ctx: RunContext) -> None:
        """Refuse, with a :class:`PipelineError` naming what to use instead, a model or data
        this stage cannot work with. Called on every later stage as soon as a stage has
        built or replaced ``ctx.model`` or ``ctx.datamodule``, before any training."""
        ...


#: plugin kind -> the protocol that declares its hooks
PROTOCOLS: dict[str, type] = {
    "model": ModelPlugin,
    "data": DataPlugin,
    "stage": StagePlugin,
}
#: hooks a plugin of the kind must have
REQUIRED_HOOKS: dict[str, tuple[str, ...]] = {"model": (), "data": (), "stage": ("run",)}


def hooks_of(kind: str) -> tuple[str, ...]:
    """The names of the hooks the engine may call on a plugin of ``kind``."""
    protocol = PROTOCOLS[kind]
    names = [*vars(protocol).get("__annotations__", {}), *vars(protocol)]
    return tuple(dict.fromkeys(n for n in names if not n.startswith("_")))


def method_hooks_of(kind: str) -> tuple[str, ...]:
    """The hooks of ``kind`` that are methods (the others are attributes)."""
    protocol = PROTOCOLS[kind]
    return tuple(n for n in hooks_of(kind) if callable(vars(protocol).get(n)))


def log_served_model(
    ctx: RunContext, datamodule: Any, checkpoint: str | Path, register_as: str | None = None
) -> None:
    """Log the run's MLflow pyfunc ``model`` (registered as ``register_as``, if given): raw
    inputs in, predictions out, anywhere, from the ``checkpoint``, the config's ``model`` and
    ``data`` nodes and ``datamodule.artifacts()`` alone (:mod:`pipelines.inference.served`)."""
    from pipelines.inference.served import log_served_model as log

    log(ctx, datamodule, checkpoint, register_as)


__all__ = [
    "GENERATION",
    "PROTOCOLS",
    "REFETCH",
    "REQUIRED_HOOKS",
    "BatchSize",
    "ClipValue",
    "ConfigValueError",
    "DataNotFoundError",
    "DataPlugin",
    "DropoutRate",
    "Epochs",
    "FollowsTrainerEpoch",
    "HeadCount",
    "HiddenLayer",
    "HiddenUnits",
    "KernelSize",
    "KernelSizes",
    "LabelNoise",
    "LayerCount",
    "LayerSize",
    "LayerSizes",
    "LeakySlope",
    "LearningRate",
    "ModelPlugin",
    "OptimizerArguments",
    "Penalty",
    "PipelineError",
    "PoolSize",
    "Range",
    "RemoteFile",
    "RunContext",
    "Seed",
    "SplitLoaders",
    "StagePlugin",
    "Task",
    "TensorBatches",
    "TensorSplitLoaders",
    "TrainingArguments",
    "TrainingDiverged",
    "Unpack",
    "Width",
    "atomic_torch_save",
    "build_trainer",
    "check_arguments",
    "did_you_mean",
    "distributed_shard",
    "download",
    "ensure_file",
    "extract_tar",
    "file_already_there",
    "fit_model",
    "folder_given_error",
    "hooks_of",
    "is_run_reference",
    "load_checkpoint",
    "load_run_model",
    "log_served_model",
    "method_hooks_of",
    "no_validation_data",
    "reading_data_file",
    "set_up_datamodule",
    "shard_order",
    "stop_if_requested",
    "unreadable_file_error",
]
