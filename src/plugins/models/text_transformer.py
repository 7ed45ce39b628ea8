"""The Transformer encoder classifier of 2nd ed. ch. 11 (``PositionalEmbedding`` +
``TransformerEncoder`` -> global max pooling -> Dropout -> Dense).

Input handling (token ids, real-valued sequences, images read row by row) is shared with the
other sequence models, see :mod:`plugins.models.sequence`.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from pipelines.api import (
    ConfigValueError,
    DropoutRate,
    HeadCount,
    LayerCount,
    LayerSize,
    TrainingArguments,
    Unpack,
    Width,
)
from plugins.models.base import Classifier, scaled
from plugins.models.sequence import SequenceInput, head
from plugins.models.word_vectors import WordVectorsMixin


class PositionalEmbedding(nn.Module):
    """Learned token embeddings plus learned position embeddings (the book's layer).

    Real-valued input gets a ``Linear`` projection to ``dim`` in place of the token lookup,
    with the same learned positions. ``max_length`` is the data's sequence length; shorter
    batches use the first positions. ``pretrained`` (:class:`SequenceInput`'s word-vector
    arguments) goes to the token embedding only; the positions are always learned.
    """

    def __init__(
        self, input_shape: tuple[int, ...], vocab_size: int | None, dim: int, **pretrained
    ) -> None:
        super().__init__()
        self.tokens = SequenceInput(input_shape, vocab_size, dim, project=True, **pretrained)
        self.max_length = self.tokens.steps
        self.positions = nn.Embedding(self.max_length, dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        embedded, mask = self.tokens(x)
        length = embedded.shape[1]
        if length > self.max_length:
            raise ConfigValueError(
                f"The transformer was built for sequences of at most {self.max_length} steps "
                f"(the data's input_shape) but got {length}."
            )
        positions = torch.arange(length, device=embedded.device)
        return embedded + self.positions(positions), mask


class TransformerNet(nn.Module):
    """PositionalEmbedding -> TransformerEncoder blocks -> masked global max -> Dense.

    A block is the book's ``TransformerEncoder``: multi-head self-attention, residual +
    LayerNorm, Dense(dense_dim, relu) -> Dense(embed_dim), residual + LayerNorm (post-norm,
    no dropout inside, as in the book). Padding (id 0) is masked out of the attention's keys
    and out of the max pooling, so appending padding does not change the output.
    """

    def __init__(
        self,
        embedding: PositionalEmbedding,
        num_classes: int,
        embed_dim: int,
        num_heads: int,
        dense_dim: int,
        num_layers: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.embedding = embedding
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                embed_dim, num_heads, dense_dim, dropout=0.0, batch_first=True
            )
            for _ in range(num_layers)
        )
        self.head = head(embed_dim, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, mask = self.embedding(x)
        padding = None
        if mask is not None:
            # a row of padding only would attend to nothing (NaN): let it see everything
            padding = ~mask & mask.any(dim=1, keepdim=True)
        for block in self.blocks:
            h = block(h, src_key_padding_mask=padding)
        if padding is not None:
            h = h.masked_fill(padding.unsqueeze(-1), float("-inf"))
        return self.head(h.amax(dim=1))


class Transformer(WordVectorsMixin, Classifier):
    """2nd ed. ch. 11's Transformer text classifier (embed_dim 256, 2 heads, dense_dim 32).

    ``embed_dim`` must divide by ``num_heads``; ``width`` multiplies ``embed_dim`` (rounded to
    a multiple of ``num_heads``) and ``dense_dim``. ``num_layers`` stacks encoder blocks (the
    book uses one); ``dropout`` is applied before the Dense head. ``word_vectors`` (GloVe,
    ``embed_dim`` dimensions) starts the token embedding from pretrained vectors for the
    data's ``vocabulary``, frozen while ``freeze_embeddings``; positions stay learned.
    """

    #: text data vectorizes to token ids for this model (``vectorize.mode: auto``)
    input_kind: ClassVar[str] = "tokens"

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        vocab_size: int | None = None,
        vocabulary: list[str] | None = None,
        embed_dim: LayerSize = 256,
        word_vectors: str | None = None,
        freeze_embeddings: bool = True,
        num_heads: HeadCount = 2,
        dense_dim: LayerSize = 32,
        num_layers: LayerCount = 1,
        dropout: DropoutRate = 0.5,
        width: Width = 1.0,
        **training: Unpack[TrainingArguments],
    ) -> None:
        super().__init__(**training)
        self.save_hyperparameters(ignore=["vocabulary"])  # 20,000 words: not in checkpoints
        if num_heads < 1 or embed_dim % num_heads:
            raise ConfigValueError(
                f"'model.embed_dim' ({embed_dim}) must be a multiple of 'model.num_heads' "
                f"({num_heads})."
            )
        if num_layers < 1:
            raise ConfigValueError(f"'model.num_layers' must be at least 1, got {num_layers}.")
        (per_head,) = scaled((embed_dim // num_heads,), width)
        (dense,) = scaled((dense_dim,), width)
        dim = per_head * num_heads
        embedding = PositionalEmbedding(
            input_shape,
            vocab_size,
            dim,
            word_vectors=word_vectors,
            vocabulary=vocabulary,
            freeze=freeze_embeddings,
            dim_key="model.embed_dim" + (" x model.width" if width != 1 else ""),
        )
        self.embeddings_found = embedding.tokens.embeddings_found
        self.net = TransformerNet(
            embedding,
            num_classes,
            dim,
            num_heads,
            dense,
            num_layers,
            dropout,
        )
        self.initialise(keep=embedding.tokens.pretrained())
