"""Forecasters for windows ``(N, T, features)`` -> one value (2nd ed. ch. 10).

Small and self-contained on purpose: each is the book's network for the Jena temperature
problem, a :class:`~plugins.models.base.Classifier` whose ``task`` (``regression``) and
``target_scale`` come from the data, so it logs ``val/mae`` / ``test/mae`` in degrees.

* ``dense_forecaster`` (10.2.3): Flatten -> Dense(16, relu) -> Dense(1).
* ``conv1d_forecaster`` (10.2.4): Conv1D(8, 24) -> MaxPool(2) -> Conv1D(8, 12) -> MaxPool(2)
  -> Conv1D(8, 6) -> global average pooling -> Dense(1).
* ``gru_forecaster`` (10.4): GRU(16), optionally stacked, with Keras-style recurrent dropout.
* ``hybrid_forecaster`` (1st ed. 6.4.4): Conv1D/MaxPool blocks shorten a long sequence,
  then a GRU reads what they extracted.
"""

from __future__ import annotations

import torch
from torch import nn

from pipelines.api import (
    ConfigValueError,
    DropoutRate,
    HiddenUnits,
    KernelSize,
    KernelSizes,
    LayerCount,
    LayerSize,
    PoolSize,
    TrainingArguments,
    Unpack,
    Width,
)
from plugins.models.base import Classifier, scaled


class _Forecaster(Classifier):
    """Shared constructor plumbing: a regressor unless the data says otherwise."""

    def __init__(self, **training: Unpack[TrainingArguments]) -> None:
        super().__init__(**{"task": "regression", **training})


def _window_shape(input_shape: tuple[int, ...], model: str) -> tuple[int, int]:
    """``(T, features)`` from the data's ``input_shape``, or a clear error."""
    if len(input_shape) != 2:
        raise ConfigValueError(
            f"'{model}' reads windows of shape (time steps, features) from forecasting data "
            f"(data=timeseries, co2, jena); this data gives inputs of shape {tuple(input_shape)}."
        )
    return int(input_shape[0]), int(input_shape[1])


class DenseForecaster(_Forecaster):
    """Book 10.2.3: Flatten -> [Dense(units, relu) -> Dropout]* -> Dense(num_classes)."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int = 1,
        hidden_units: HiddenUnits = (16,),
        dropout: DropoutRate = 0.0,
        width: Width = 1.0,
        **training: Unpack[TrainingArguments],
    ) -> None:
        super().__init__(**training)
        self.save_hyperparameters()
        steps, features = _window_shape(input_shape, "dense_forecaster")
        layers: list[nn.Module] = [nn.Flatten()]
        size = steps * features
        for units in scaled(hidden_units, width):
            layers += [nn.Linear(size, units), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            size = units
        layers.append(nn.Linear(size, num_classes))
        self.net = nn.Sequential(*layers)
        self.initialise()


class _ChannelsFirst(nn.Module):
    """(N, T, C) <-> (N, C, T): Conv1d wants channels first, the data gives time first."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)


def _conv_blocks(
    features: int,
    steps: int,
    filters: int,
    kernel_sizes: tuple[int, ...],
    pool_size: int,
    padding: str,
    model: str,
) -> tuple[list[nn.Module], int]:
    """Conv1D(relu) layers with a MaxPool1D between consecutive ones; (layers, steps left)."""
    if padding not in ("valid", "same"):
        raise ConfigValueError(f"'model.padding' must be 'valid' or 'same', got {padding!r}.")
    layers: list[nn.Module] = [_ChannelsFirst()]
    channels, length = features, steps
    for index, kernel in enumerate(kernel_sizes):
        if index > 0:
            layers.append(nn.MaxPool1d(pool_size))
            length //= pool_size
        layers += [nn.Conv1d(channels, filters, kernel, padding=padding), nn.ReLU()]
        if padding == "valid":
            length -= kernel - 1
        channels = filters
        if length < 1:
            raise ConfigValueError(
                f"'{model}' cannot convolve a window of {steps} time steps with kernel sizes "
                f"{list(kernel_sizes)} and pooling {pool_size} ('valid' padding leaves nothing "
                f"after layer {index + 1}). Use a longer 'data.sequence_length', smaller "
                "'model.kernel_sizes', or 'model.padding=same'."
            )
    return layers, length


class Conv1dForecaster(_Forecaster):
    """Book 10.2.4: Conv1D/MaxPooling1D blocks, global average pooling, Dense(1)."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int = 1,
        filters: LayerSize = 8,
        kernel_sizes: KernelSizes = (24, 12, 6),
        pool_size: PoolSize = 2,
        padding: str = "valid",
        width: Width = 1.0,
        **training: Unpack[TrainingArguments],
    ) -> None:
        super().__init__(**training)
        self.save_hyperparameters()
        steps, features = _window_shape(input_shape, "conv1d_forecaster")
        (channels,) = scaled((filters,), width)
        layers, _ = _conv_blocks(
            features, steps, channels, tuple(kernel_sizes), pool_size, padding, "conv1d_forecaster"
        )
        layers += [nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
        self.net = nn.Sequential(*layers)
        self.initialise()


class RecurrentDropoutGRU(nn.Module):
    """One GRU layer over ``(N, T, C)`` with Keras-style ``recurrent_dropout``.

    PyTorch's GRU has no recurrent dropout. In training with ``recurrent_dropout > 0`` this
    layer runs the same GRU equations step by step, multiplying the hidden state that feeds
    the recurrent transformation by one dropout mask per sequence, fixed across time steps
    (Gal & Ghahramani's variational dropout, as Keras does). Otherwise -- evaluation, or no
    recurrent dropout -- it is exactly ``nn.GRU`` (cuDNN on a GPU) with the same weights.
    """

    def __init__(self, input_size: int, units: int, recurrent_dropout: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= recurrent_dropout < 1.0:
            raise ConfigValueError(
                f"'model.recurrent_dropout' must be in [0, 1), got {recurrent_dropout}."
            )
        self.gru = nn.GRU(input_size, units, batch_first=True)
        self.recurrent_dropout = recurrent_dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """All hidden states ``(N, T, units)``."""
        if not (self.training and self.recurrent_dropout > 0):
            return self.gru(x)[0]
        keep = 1.0 - self.recurrent_dropout
        shape = (x.shape[0], self.gru.hidden_size)
        return self.unrolled(x, torch.bernoulli(x.new_full(shape, keep)) / keep)

    def unrolled(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``nn.GRU``'s equations step by step, ``mask`` on the state fed back into them."""
        gru = self.gru
        inputs = x @ gru.weight_ih_l0.T + gru.bias_ih_l0  # (N, T, 3 * units): r, z, n
        h = x.new_zeros(mask.shape)
        states = []
        for step in range(x.shape[1]):
            i_r, i_z, i_n = inputs[:, step].chunk(3, dim=1)
            h_r, h_z, h_n = ((h * mask) @ gru.weight_hh_l0.T + gru.bias_hh_l0).chunk(3, dim=1)
            r = torch.sigmoid(i_r + h_r)
            z = torch.sigmoid(i_z + h_z)
            n = torch.tanh(i_n + r * h_n)
            h = (1 - z) * n + z * h
            states.append(h)
        return torch.stack(states, dim=1)


class _LastState(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, -1]


def _gru_stack(
    input_size: int, units: int, num_layers: int, recurrent_dropout: float
) -> list[nn.Module]:
    if num_layers < 1:
        raise ConfigValueError(f"'model.num_layers' must be at least 1, got {num_layers}.")
    layers: list[nn.Module] = []
    for _ in range(num_layers):
        layers.append(RecurrentDropoutGRU(input_size, units, recurrent_dropout))
        input_size = units
    return [*layers, _LastState()]


class GRUForecaster(_Forecaster):
    """Book 10.4: GRU(units) [stacked ``num_layers`` deep] -> Dropout -> Dense(1).

    The book's best Jena model is ``units=32, num_layers=2, recurrent_dropout=0.5,
    dropout=0.5``; its first recurrent baseline is a single small layer (``units=16``).
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int = 1,
        units: LayerSize = 16,
        num_layers: LayerCount = 1,
        recurrent_dropout: DropoutRate = 0.0,
        dropout: DropoutRate = 0.0,
        width: Width = 1.0,
        **training: Unpack[TrainingArguments],
    ) -> None:
        super().__init__(**training)
        self.save_hyperparameters()
        _, features = _window_shape(input_shape, "gru_forecaster")
        (size,) = scaled((units,), width)
        layers = _gru_stack(features, size, num_layers, recurrent_dropout)
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(size, num_classes))
        self.net = nn.Sequential(*layers)
        self.initialise()


class HybridForecaster(_Forecaster):
    """Conv1D/MaxPool blocks, then a GRU (1st ed. 6.4.4): cheap on long sequences.

    The book's: Conv1D(32, 5) -> MaxPool(3) -> Conv1D(32, 5) -> GRU(32, recurrent_dropout
    0.5) -> Dense(1), on windows sampled twice as densely as the GRU alone can afford.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int = 1,
        filters: LayerSize = 32,
        kernel_size: KernelSize = 5,
        conv_layers: int = 2,
        pool_size: PoolSize = 3,
        padding: str = "valid",
        units: LayerSize = 32,
        recurrent_dropout: DropoutRate = 0.0,
        dropout: DropoutRate = 0.0,
        width: Width = 1.0,
        **training: Unpack[TrainingArguments],
    ) -> None:
        super().__init__(**training)
        self.save_hyperparameters()
        steps, features = _window_shape(input_shape, "hybrid_forecaster")
        if conv_layers < 1:
            raise ConfigValueError(f"'model.conv_layers' must be at least 1, got {conv_layers}.")
        channels, size = scaled((filters, units), width)
        layers, _ = _conv_blocks(
            features,
            steps,
            channels,
            (kernel_size,) * conv_layers,
            pool_size,
            padding,
            "hybrid_forecaster",
        )
        layers.append(_ChannelsFirst())  # back to (N, T', C) for the GRU
        layers += _gru_stack(channels, size, 1, recurrent_dropout)
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(size, num_classes))
        self.net = nn.Sequential(*layers)
        self.initialise()


__all__ = [
    "Conv1dForecaster",
    "DenseForecaster",
    "GRUForecaster",
    "HybridForecaster",
    "RecurrentDropoutGRU",
]
