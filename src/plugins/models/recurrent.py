"""Recurrent networks (book 2nd ed. ch. 10-11, 1st ed. ch. 6): SimpleRNN, LSTM, GRU.

Input handling (token ids, real-valued sequences, images read row by row) is shared with the
other sequence models, see :mod:`plugins.models.sequence`.
"""

from __future__ import annotations

import warnings
from typing import ClassVar

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence

from pipelines.errors import ConfigValueError
from plugins.models.base import Classifier, Task, scaled
from plugins.models.sequence import SequenceInput, head, packed_to_front
from plugins.models.word_vectors import WordVectorsMixin


class RecurrentNet(nn.Module):
    """Input -> stacked (bi)RNN -> final hidden state(s) -> [Dropout] -> Dense.

    **Masking.** Token ids are packed (``pack_padded_sequence`` with each row's number of
    non-zero ids; padding is first moved behind the tokens, so left- and right-padded data
    agree), so padded steps never feed the final state and appending padding changes
    nothing. The output is the last layer's final hidden state, both directions
    concatenated when bidirectional (the backward direction's final state is the one after
    reading the first token).

    **Recurrent dropout** is DropConnect on the hidden-to-hidden weights (AWD-LSTM's weight
    drop, Merity et al. 2017): in training, each forward pass drops entries of every
    ``weight_hh`` matrix (scaled by ``1/(1-p)``) and then runs the *unchanged* fused kernel
    (cuDNN on a GPU, the fused CPU kernel here) over the whole sequence with those weights.
    The alternative, variational dropout on the recurrent state (Keras's
    ``recurrent_dropout``: one mask on ``h[t-1]`` reused at every step), has to multiply the
    state between every two steps, i.e. a Python loop over ``LSTMCell`` -- no cuDNN, one
    kernel launch per step, many times slower on a 600-token review. Both keep one mask for
    the whole sequence; dropping a whole column of ``weight_hh`` is exactly the variational
    mask, shared across the batch. In eval mode the full weights are used.
    """

    def __init__(
        self,
        source: SequenceInput,
        cell: type[nn.RNNBase],
        num_classes: int,
        units: int,
        num_layers: int,
        bidirectional: bool,
        dropout: float,
        recurrent_dropout: float,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ConfigValueError(f"'model.num_layers' must be at least 1, got {num_layers}.")
        for key, value in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if not 0.0 <= value < 1.0:
                raise ConfigValueError(f"'model.{key}' must be in [0, 1), got {value}.")
        self.input = source
        self.rnn = cell(
            source.features,
            units,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.directions = 2 if bidirectional else 1
        self.recurrent_dropout = recurrent_dropout
        self.recurrent_weights = [
            name for name, _ in self.rnn.named_parameters() if name.startswith("weight_hh")
        ]
        self.head = head(units * self.directions, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input.tokens and not x.is_floating_point():
            x = packed_to_front(x)
        sequence, mask = self.input(x)
        inputs: torch.Tensor | nn.utils.rnn.PackedSequence = sequence
        if mask is not None:
            lengths = mask.sum(dim=1).clamp(min=1).cpu()  # all-padding rows: one zero step
            if int(lengths.min()) < sequence.shape[1]:
                inputs = pack_padded_sequence(
                    sequence, lengths, batch_first=True, enforce_sorted=False
                )
        _, state = self.run(inputs)
        if isinstance(state, tuple):  # LSTM: (h_n, c_n)
            state = state[0]
        last = state[-self.directions :]  # the last layer's directions: (dirs, N, units)
        return self.head(last.transpose(0, 1).reshape(last.shape[1], -1))

    def run(self, inputs: torch.Tensor | nn.utils.rnn.PackedSequence):
        if not (self.training and self.recurrent_dropout > 0):
            return self.rnn(inputs)
        dropped = {
            name: F.dropout(getattr(self.rnn, name), self.recurrent_dropout, training=True)
            for name in self.recurrent_weights
        }
        with warnings.catch_warnings():  # cuDNN: "weights are not part of single contiguous
            warnings.simplefilter("ignore", UserWarning)  # chunk" -- expected, they are new
            return functional_call(self.rnn, dropped, (inputs,))


class Recurrent(WordVectorsMixin, Classifier):
    """Embedding (token ids) or the raw sequence -> RNN layers -> Dense.

    ``units`` per direction; ``num_layers`` stacked layers; ``bidirectional`` doubles the
    state the head sees; ``dropout`` between stacked layers and before the head;
    ``recurrent_dropout`` is DropConnect on the recurrent weights (see
    :class:`RecurrentNet`). ``width`` multiplies ``units``. ``word_vectors`` (GloVe) starts
    the embedding from pretrained vectors for the data's ``vocabulary``, frozen while
    ``freeze_embeddings`` (2nd ed. ch. 11).
    """

    #: text data vectorizes to token ids for this model (``vectorize.mode: auto``)
    input_kind: ClassVar[str] = "tokens"

    cell: ClassVar[type[nn.RNNBase]] = nn.LSTM

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        vocab_size: int | None = None,
        vocabulary: list[str] | None = None,
        embedding_dim: int = 256,
        word_vectors: str | None = None,
        freeze_embeddings: bool = True,
        units: int = 32,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        width: float = 1.0,
        optimizer: str = "rmsprop",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        l1: float = 0.0,
        l2: float = 0.0,
        task: Task = "classification",
        target_scale: float = 1.0,
    ) -> None:
        super().__init__(
            optimizer=optimizer,
            lr=lr,
            weight_decay=weight_decay,
            l1=l1,
            l2=l2,
            task=task,
            target_scale=target_scale,
        )
        self.save_hyperparameters(ignore=["vocabulary"])  # 20,000 words: not in checkpoints
        source = SequenceInput(
            input_shape,
            vocab_size,
            embedding_dim,
            word_vectors=word_vectors,
            vocabulary=vocabulary,
            freeze=freeze_embeddings,
        )
        self.embeddings_found = source.embeddings_found
        (size,) = scaled((units,), width)
        self.net = RecurrentNet(
            source,
            self.cell,
            num_classes,
            size,
            num_layers,
            bidirectional,
            dropout,
            recurrent_dropout,
        )


class SimpleRNN(Recurrent):
    """Fully connected recurrence with tanh (1st ed. ch. 6: ``SimpleRNN(32)`` on IMDB)."""

    cell = nn.RNN


class LSTM(Recurrent):
    """Long short-term memory (2nd ed. ch. 11: ``Bidirectional(LSTM(32))`` on IMDB)."""

    cell = nn.LSTM


class GRU(Recurrent):
    """Gated recurrent unit (2nd ed. ch. 10: ``GRU(32, recurrent_dropout=0.25)``)."""

    cell = nn.GRU
