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

from pipelines.api import (
    ConfigValueError,
    DropoutRate,
    LayerCount,
    LayerSize,
    TrainingArguments,
    Unpack,
    Width,
)
from plugins.models.base import Classifier, scaled
from plugins.models.sequence import SequenceInput, head, packed_to_front
from plugins.models.word_vectors import WordVectorsMixin

#: the functional op behind each ``nn.RNNBase.mode``: one layer, one direction at a time
_LAYER_OPS = {
    "LSTM": torch.lstm,
    "GRU": torch.gru,
    "RNN_TANH": torch.rnn_tanh,
    "RNN_RELU": torch.rnn_relu,
}
#: cuDNN's note when weights are not one flat buffer (they are copied into one per call)
_NOT_CONTIGUOUS = "RNN module weights are not part of single contiguous chunk"


class RecurrentNet(nn.Module):
    """Input -> stacked (bi)RNN -> final hidden state(s) -> [Dropout] -> Dense.

    **Masking.** Padding (id 0) is first moved behind each row's tokens, so left- and
    right-padded data agree, and the batch is cut after its longest row's last token. The
    output is the last layer's state after each row's *own* last token, both directions
    concatenated when bidirectional (the backward direction's final state is the one after
    reading the first token), so padded steps never feed it and appending padding changes
    nothing. Forward, the state after token ``L-1`` is the output at step ``L-1`` (padding
    only comes later). Backward, each layer reads every row's tokens reversed in place (the
    padding stays behind them) and its outputs are put back in token order for the next
    layer. This is exactly what ``pack_padded_sequence`` computed, without a
    ``PackedSequence``: its data-dependent sizes cannot be traced by ``torch.export``, which
    MLflow uses to save the model, and on CPU a training step with packing took 1.3-3.4x as
    long (600-token batches, 1 thread). Only the cut to the longest row depends on the data;
    it is a speed-up, skipped while exporting (the exported model reads all ``T`` steps, to
    the same result).

    **Recurrent dropout** is DropConnect on the hidden-to-hidden weights (AWD-LSTM's weight
    drop, Merity et al. 2017): in training, each forward pass drops entries of every
    ``weight_hh`` matrix (scaled by ``1/(1-p)``) and then runs the *unchanged* fused kernel
    (cuDNN on a GPU, the fused CPU kernel here) over the whole sequence with those weights.
    The alternative, variational dropout on the recurrent state (Keras's
    ``recurrent_dropout``: one mask on ``h[t-1]`` reused at every step), has to multiply the
    state between every two steps, i.e. a Python loop over ``LSTMCell`` -- no cuDNN, one
    kernel launch per step, many times slower on a 600-token review. Both keep one mask for
    the whole sequence; dropping a whole column of ``weight_hh`` is exactly the variational
    mask, shared across the batch. In eval mode the full weights are used. (Token ids read
    in both directions take one kernel call per layer and direction, with the same masks.)
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
        if mask is not None:
            return self.head(self.read_tokens(sequence, mask))
        # The last layer's final states, read off its outputs rather than h_n: the forward
        # direction ends at the last step, the backward one at the first. (Under torch 2.11's
        # export h_n got a wrong shape, so LSTM models on images could not be logged.)
        output, _ = self.run(sequence)
        if self.directions == 1:
            return self.head(output[:, -1])
        units = self.rnn.hidden_size
        return self.head(torch.cat([output[:, -1, :units], output[:, 0, units:]], dim=1))

    def read_tokens(self, sequence: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(N, dirs * units)``: the last layer's state after each row's last token.

        ``sequence`` holds the tokens before the padding (``mask`` True on tokens); see the
        class docstring for why this is the packed result without packing.
        """
        lengths = mask.sum(dim=1).clamp(min=1)  # all-padding rows: one zero step
        if not torch.compiler.is_exporting():  # a data-dependent size: eager speed-up only
            sequence = sequence[:, : int(lengths.max())]
        # shape[0], not len(): len() would fix the exported model's batch size
        rows = torch.arange(lengths.shape[0], device=lengths.device)
        last = lengths - 1
        if self.directions == 1:  # every layer's step t saw only steps <= t: one fused call
            output, _ = self.run(sequence)
            return output[rows, last]
        order = _reversal(lengths, sequence.shape[1])
        weights = self.weights()
        inputs = sequence
        with warnings.catch_warnings():  # cuDNN: the weights are not one flat buffer
            warnings.filterwarnings("ignore", _NOT_CONTIGUOUS, UserWarning)
            for layer in range(self.rnn.num_layers):
                if layer:  # what nn.RNNBase's ``dropout`` does between stacked layers
                    inputs = F.dropout(inputs, self.rnn.dropout, self.training)
                forward = self.layer(inputs, weights, layer, "")
                backward = self.layer(_reorder(inputs, order), weights, layer, "_reverse")
                inputs = torch.cat([forward, _reorder(backward, order)], dim=2)
        return torch.cat([forward[rows, last], backward[rows, last]], dim=1)

    def layer(
        self, inputs: torch.Tensor, weights: dict[str, torch.Tensor], layer: int, suffix: str
    ) -> torch.Tensor:
        """The outputs ``(N, T, units)`` of one direction of one layer of ``self.rnn`` (its
        weights ``*_l{layer}{suffix}`` taken from ``weights``), read left to right from a
        zero state: the fused kernel of ``nn.RNNBase`` for a single layer and direction."""
        kinds = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")[: 4 if self.rnn.bias else 2]
        params = [weights[f"{kind}_l{layer}{suffix}"] for kind in kinds]
        zeros = inputs.new_zeros(1, inputs.shape[0], self.rnn.hidden_size)
        op = _LAYER_OPS[self.rnn.mode]
        state = [zeros, zeros] if self.rnn.mode == "LSTM" else zeros
        # one layer, no inter-layer dropout, not bidirectional, batch first
        outputs = op(inputs, state, params, self.rnn.bias, 1, 0.0, self.training, False, True)
        return outputs[0]

    def weights(self) -> dict[str, torch.Tensor]:
        """This pass's RNN weights by name: the parameters, with every ``weight_hh``
        DropConnect-dropped in training (a new mask per pass, gradients reach the
        parameters)."""
        weights = dict(self.rnn.named_parameters())
        if self.training and self.recurrent_dropout > 0:
            for name in self.recurrent_weights:
                weights[name] = F.dropout(weights[name], self.recurrent_dropout, training=True)
        return weights

    def run(
        self, inputs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
        """``self.rnn(inputs)`` with this pass's weights (see :meth:`weights`)."""
        if not (self.training and self.recurrent_dropout > 0):
            return self.rnn(inputs)
        with warnings.catch_warnings():  # cuDNN: "weights are not part of single contiguous
            warnings.simplefilter("ignore", UserWarning)  # chunk" -- expected, they are new
            return functional_call(self.rnn, self.weights(), (inputs,))


def _reversal(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """``(N, steps)`` indices that reverse each row's first ``lengths`` steps in place and
    keep the rest: ``[a b c 0 0]`` -> ``[c b a 0 0]``. Applying it twice gives the row back."""
    position = torch.arange(steps, device=lengths.device)
    ends = lengths[:, None]
    return torch.where(position < ends, ends - 1 - position, position)


def _reorder(values: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``values`` ``(N, T, F)`` with each row's steps taken in ``order`` ``(N, T)``."""
    return values.gather(1, order[:, :, None].expand(-1, -1, values.shape[2]))


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
        embedding_dim: LayerSize = 256,
        word_vectors: str | None = None,
        freeze_embeddings: bool = True,
        units: LayerSize = 32,
        num_layers: LayerCount = 1,
        bidirectional: bool = False,
        dropout: DropoutRate = 0.0,
        recurrent_dropout: DropoutRate = 0.0,
        width: Width = 1.0,
        **training: Unpack[TrainingArguments],
    ) -> None:
        super().__init__(**training)
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
        self.initialise(keep=source.pretrained())


class SimpleRNN(Recurrent):
    """Fully connected recurrence with tanh (1st ed. ch. 6: ``SimpleRNN(32)`` on IMDB)."""

    cell = nn.RNN


class LSTM(Recurrent):
    """Long short-term memory (2nd ed. ch. 11: ``Bidirectional(LSTM(32))`` on IMDB)."""

    cell = nn.LSTM


class GRU(Recurrent):
    """Gated recurrent unit (2nd ed. ch. 10: ``GRU(32, recurrent_dropout=0.25)``)."""

    cell = nn.GRU
