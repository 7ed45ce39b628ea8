"""Models for text and sequences (book 2nd ed. ch. 10-11, 1st ed. ch. 6): the shared input.

Every sequence model reads one of three inputs, told apart by what the data passes:

- **token ids** (``vocab_size`` given): int64 ``(N, T)``, 0 = padding, ``input_shape=(T,)``;
  an ``Embedding(vocab_size, dim, padding_idx=0)`` turns them into ``(N, T, dim)``;
- **real-valued sequences** (no ``vocab_size``): float ``(N, T, F)``, e.g. timeseries windows;
- **images** ``(N, C, H, W)``, read row by row as ``H`` timesteps of ``C*W`` features (the
  classic row-by-row MNIST RNN), so every sequence model runs on the default digits data.

A 1-D real input ``(N, T)`` is ``T`` timesteps of one feature. This module holds that input
handling, the bag-of-words model, the embedding bag and the 1-D convnet; the recurrent
models are in :mod:`plugins.models.recurrent`, the Transformer in
:mod:`plugins.models.text_transformer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
from torch import nn
from torch.nn import functional as F

from pipelines.api import (
    ConfigValueError,
    DropoutRate,
    HiddenUnits,
    KernelSize,
    LayerSize,
    LayerSizes,
    PoolSize,
    TrainingArguments,
    Unpack,
    Width,
)
from plugins.models.base import Classifier, scaled
from plugins.models.dense import MLP
from plugins.models.word_vectors import WordVectorsMixin, pretrained_embedding


def sequence_shape(input_shape: tuple[int, ...] | list[int]) -> tuple[int, int]:
    """``(timesteps, features)`` of a real-valued input of shape ``input_shape``."""
    shape = tuple(int(size) for size in input_shape)
    if len(shape) == 1:
        return shape[0], 1
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) == 3:  # an image (C, H, W): H rows of C*W values
        channels, height, width = shape
        return height, channels * width
    raise ConfigValueError(
        f"A sequence model reads (T,), (T, F) or image (C, H, W) inputs, not {shape}."
    )


def as_sequence(x: torch.Tensor) -> torch.Tensor:
    """A real-valued batch as ``(N, T, F)``: images ``(N, C, H, W)`` become ``(N, H, C*W)``."""
    if x.ndim == 4:
        n, c, h, w = x.shape
        return x.permute(0, 2, 1, 3).reshape(n, h, c * w)
    if x.ndim == 2:
        return x.unsqueeze(-1)
    return x


def packed_to_front(ids: torch.Tensor) -> torch.Tensor:
    """Token ids with the padding (0) moved behind the tokens, order kept: ``[0 0 5 7]`` ->
    ``[5 7 0 0]``. Left-padded data (Keras's ``pad_sequences`` default) then packs the same
    way as right-padded data, so the padding never reaches a recurrent layer's final state."""
    padding = (ids == 0).to(torch.int8)
    order = torch.sort(padding, dim=1, stable=True).indices
    return ids.gather(1, order)


class SequenceInput(nn.Module):
    """Token ids -> ``Embedding(padding_idx=0)``; real values -> ``(N, T, F)`` (optionally a
    per-timestep ``Linear`` projection to ``dim``). ``features`` is the output size per step.

    ``forward`` returns ``(sequence, mask)``, ``mask`` being ``True`` on real tokens (None for
    real-valued input, where every step counts).

    ``word_vectors`` (a GloVe or word2vec text file) fills the token embedding with
    pretrained vectors for ``vocabulary`` (the data's tokens by id), frozen unless ``freeze``
    is False; ``embeddings_found`` is then the number of vocabulary words the file held.
    ``dim_key`` names the setting behind ``dim`` in error messages.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        vocab_size: int | None,
        dim: int,
        project: bool = False,
        word_vectors: str | None = None,
        vocabulary: Sequence[str] | None = None,
        freeze: bool = True,
        dim_key: str = "model.embedding_dim",
    ) -> None:
        super().__init__()
        self.embeddings_found: int | None = None
        self.tokens = vocab_size is not None
        if word_vectors and not self.tokens:
            raise ConfigValueError(
                "'model.word_vectors' is for token ids, but the data gave no 'vocab_size': "
                "use text data vectorized into word ids (`data.vectorize.mode=int`), or set "
                "`model.word_vectors=null`."
            )
        if self.tokens:
            if vocab_size < 2:
                raise ConfigValueError(
                    f"'vocab_size' must be at least 2 (0 is the padding id), got {vocab_size}."
                )
            if len(input_shape) != 1:
                raise ConfigValueError(
                    f"Token ids come as (N, T) batches with input_shape=(T,), not {input_shape}."
                )
            self.steps = int(input_shape[0])
            embedding = nn.Embedding(vocab_size, dim, padding_idx=0)
            if word_vectors:
                self.embeddings_found = pretrained_embedding(
                    embedding, word_vectors, vocabulary, freeze=freeze, dim_key=dim_key
                )
            self.embed: nn.Module = embedding
            self.features = dim
        else:
            self.steps, width = sequence_shape(input_shape)
            self.embed = nn.Linear(width, dim) if project else nn.Identity()
            self.features = dim if project else width

    def pretrained(self) -> list[nn.Module]:
        """The embedding when it holds pretrained word vectors (left as they are by
        ``model.init``), else nothing."""
        return [self.embed] if self.embeddings_found is not None else []

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.tokens:
            if x.is_floating_point():
                raise ConfigValueError(
                    "The model was built for token ids (the data gave 'vocab_size') but got "
                    f"{x.dtype} values; token ids are int64 (N, T) with 0 as padding."
                )
            return self.embed(x), x != 0
        if not x.is_floating_point():
            raise ConfigValueError(
                f"The model got {x.dtype} values but no 'vocab_size' from the data: token ids "
                "need a data plugin that passes vocab_size (or set `model.vocab_size=...`)."
            )
        return self.embed(as_sequence(x)), None


def head(features: int, num_classes: int, dropout: float) -> nn.Sequential:
    """``[Dropout] -> Dense(num_classes)``: logits, or one value per target for regression."""
    layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout > 0 else []
    layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers)


class BagOfWords(MLP):
    """2nd ed. ch. 11's bag-of-words model: Dense(16, relu) -> Dropout(0.5) -> Dense.

    The MLP with the book's defaults; it reads bags of words (multi-hot, counts or TF-IDF,
    float ``(N, V)``), or anything else it can flatten.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        hidden_units: HiddenUnits = (16,),
        dropout: DropoutRate = 0.5,
        width: Width = 1.0,
        **training: Unpack[TrainingArguments],
    ) -> None:
        super().__init__(
            input_shape=input_shape,
            num_classes=num_classes,
            hidden_units=hidden_units,
            dropout=dropout,
            width=width,
            **training,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_floating_point():
            raise ConfigValueError(
                f"bow_dense reads bags of words (float (N, V) multi-hot, counts or TF-IDF), not "
                f"{x.dtype} token ids: use a sequence model (embedding_dense, lstm, ...) or a "
                "data setting that makes bags."
            )
        return self.net(x)


class EmbeddingBagNet(nn.Module):
    """Embedding -> masked mean over the real tokens (or flatten) -> [Dense, relu]* -> Dense."""

    def __init__(
        self,
        source: SequenceInput,
        num_classes: int,
        pooling: Literal["mean", "flatten"],
        hidden_units: tuple[int, ...],
        dropout: float,
    ) -> None:
        super().__init__()
        self.input = source
        self.pooling = pooling
        features = source.features * (source.steps if pooling == "flatten" else 1)
        layers: list[nn.Module] = []
        for units in hidden_units:
            layers += [nn.Linear(features, units), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            features = units
        self.hidden = nn.Sequential(*layers)
        self.head = head(features, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sequence, mask = self.input(x)
        if self.pooling == "flatten":
            pooled = sequence.flatten(1)
        elif mask is None:
            pooled = sequence.mean(dim=1)
        else:  # padding embeds to zeros (padding_idx=0): sum / number of real tokens
            pooled = sequence.sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1)
        return self.head(self.hidden(pooled))


class EmbeddingDense(WordVectorsMixin, Classifier):
    """Embedding(vocab_size, dim, padding_idx=0) -> pooling -> Dense (1st ed. ch. 6).

    ``pooling="mean"`` averages the real tokens' embeddings (padding excluded, so any length
    works); ``pooling="flatten"`` is the 1st edition's ``Embedding(10000, 8) -> Flatten ->
    Dense`` on fixed-length sequences. Real-valued input gets a per-timestep ``Linear``
    projection to ``embedding_dim`` instead of the lookup table.

    ``word_vectors`` (GloVe) starts the embedding from pretrained vectors for the data's
    ``vocabulary``, frozen while ``freeze_embeddings`` (2nd ed. ch. 11).
    """

    #: text data vectorizes to token ids for this model (``vectorize.mode: auto``)
    input_kind: ClassVar[str] = "tokens"

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        vocab_size: int | None = None,
        vocabulary: list[str] | None = None,
        embedding_dim: LayerSize = 16,
        word_vectors: str | None = None,
        freeze_embeddings: bool = True,
        pooling: Literal["mean", "flatten"] = "mean",
        hidden_units: HiddenUnits = (),
        dropout: DropoutRate = 0.0,
        width: Width = 1.0,
        **training: Unpack[TrainingArguments],
    ) -> None:
        super().__init__(**training)
        self.save_hyperparameters(ignore=["vocabulary"])  # 20,000 words: not in checkpoints
        (dim,) = scaled((embedding_dim,), width)
        source = SequenceInput(
            input_shape,
            vocab_size,
            dim,
            project=True,
            word_vectors=word_vectors,
            vocabulary=vocabulary,
            freeze=freeze_embeddings,
            dim_key="model.embedding_dim" + (" x model.width" if width != 1 else ""),
        )
        self.embeddings_found = source.embeddings_found
        hidden = scaled(hidden_units, width) if hidden_units else ()
        self.net = EmbeddingBagNet(source, num_classes, pooling, hidden, dropout)
        self.initialise(keep=source.pretrained())


class MaxPoolAtLeastOne(nn.Module):
    """MaxPool1D(size) that never shrinks a sequence below one step: the window is cut to
    the length, the last partial window counts (ceil), and a single step passes through."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1]
        if length <= 1 or self.size <= 1:
            return x
        size = min(self.size, length)
        return F.max_pool1d(x, size, ceil_mode=True)


class Conv1dNet(nn.Module):
    """[Conv1D(f, k, relu) -> MaxPool1D]* (no pool after the last) -> global max -> Dense."""

    def __init__(
        self,
        source: SequenceInput,
        num_classes: int,
        filters: tuple[int, ...],
        kernel_size: int,
        pool_size: int,
        padding: Literal["same", "valid"],
        dropout: float,
    ) -> None:
        super().__init__()
        self.input = source
        self.kernel_size = kernel_size
        self.padding = padding
        channels = source.features
        self.convs = nn.ModuleList()
        self.pools = nn.ModuleList()
        for index, size in enumerate(filters):
            self.convs.append(nn.Conv1d(channels, size, kernel_size, padding=padding))
            last = index == len(filters) - 1
            self.pools.append(nn.Identity() if last else MaxPoolAtLeastOne(pool_size))
            channels = size
        self.head = head(channels, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sequence, _ = self.input(x)
        h = sequence.transpose(1, 2)  # (N, channels, T)
        for conv, pool in zip(self.convs, self.pools, strict=True):
            if self.padding == "valid" and h.shape[-1] < self.kernel_size:
                h = F.pad(h, (0, self.kernel_size - h.shape[-1]))  # too short: one window
            h = pool(F.relu(conv(h)))
        return self.head(h.amax(dim=-1))


class Conv1D(WordVectorsMixin, Classifier):
    """1st ed. ch. 6's 1-D convnet: Embedding (tokens) or the raw sequence -> [Conv1D(32, 7,
    relu) -> MaxPool1D(5)] -> Conv1D(32, 7, relu) -> GlobalMaxPool1D -> Dense.

    ``padding="same"`` keeps short inputs (8 rows of a digit) long enough for every block,
    and pooling never shrinks a sequence below one step; the book used ``"valid"`` on
    500-token reviews (a ``"valid"`` convolution on a sequence shorter than its kernel sees
    it zero-padded to one window).
    """

    #: text data vectorizes to token ids for this model (``vectorize.mode: auto``)
    input_kind: ClassVar[str] = "tokens"

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        vocab_size: int | None = None,
        vocabulary: list[str] | None = None,
        embedding_dim: LayerSize = 128,
        word_vectors: str | None = None,
        freeze_embeddings: bool = True,
        filters: LayerSizes = (32, 32),
        kernel_size: KernelSize = 7,
        pool_size: PoolSize = 5,
        padding: Literal["same", "valid"] = "same",
        dropout: DropoutRate = 0.0,
        width: Width = 1.0,
        **training: Unpack[TrainingArguments],
    ) -> None:
        super().__init__(**training)
        self.save_hyperparameters(ignore=["vocabulary"])
        if not filters:
            raise ConfigValueError("'model.filters' needs at least one convolution size.")
        source = SequenceInput(
            input_shape,
            vocab_size,
            embedding_dim,
            word_vectors=word_vectors,
            vocabulary=vocabulary,
            freeze=freeze_embeddings,
        )
        self.embeddings_found = source.embeddings_found
        self.net = Conv1dNet(
            source,
            num_classes,
            scaled(filters, width),
            kernel_size,
            pool_size,
            padding,
            dropout,
        )
        self.initialise(keep=source.pretrained())
