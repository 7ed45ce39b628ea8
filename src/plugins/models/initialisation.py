"""What a Keras layer starts with, for the built-in models (``model.init``: keras or torch).

``keras`` (the default) gives each layer Keras' defaults, which the book's figures rest on:
Glorot-uniform kernels and zero biases for dense, convolution and attention projections;
Glorot-uniform input kernels, orthogonal recurrent kernels, zero biases and a forget-gate
bias of 1 for recurrent layers; ``uniform(-0.05, 0.05)`` embeddings (the padding row stays
zero); batch norm with Keras' ``momentum=0.99`` (torch's 0.01) and ``epsilon=1e-3``, layer
norm with ``epsilon=1e-3``. ``torch`` keeps PyTorch's own defaults (Kaiming-uniform with
``a=sqrt(5)``, uniform biases, ``momentum=0.1``, ``eps=1e-5``).

On real MNIST (benchmarks/keras_defaults.py) Keras' initialisation gave +0.27 points to
the book's dense net and +0.37 to its convnet over 10 and 8 seeds, so it is the default
for every built-in model, not only the book presets. The book's VAE needs it: from
PyTorch's initialisation it starts in a collapsed posterior (KL ~0.06 nats on MNIST after
3 epochs, every latent point decoding to the same average digit), from Keras' it does not
(KL ~3.7 nats).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
from torch import nn

Init = Literal["keras", "torch"]

#: Keras' default ``Embedding`` initialiser: ``RandomUniform(-0.05, 0.05)``
EMBEDDING_LIMIT = 0.05
#: Keras' ``BatchNormalization(momentum=0.99)`` as torch's running-average weight
BATCH_NORM_MOMENTUM = 0.01
#: Keras' ``epsilon`` of ``BatchNormalization`` and ``LayerNormalization``
NORM_EPSILON = 1e-3


def initialise(module: nn.Module, init: Init, keep: Iterable[nn.Module] = ()) -> None:
    """Give every layer of ``module`` the ``init`` scheme's starting weights and settings.

    ``keep`` names sub-modules whose weights come from elsewhere (pretrained word vectors,
    an ImageNet backbone): they are left exactly as they are.
    """
    if init == "torch":
        return
    kept = {id(param) for part in keep for param in part.parameters()}
    kept |= {id(part) for part in keep}
    with torch.no_grad():
        for layer in module.modules():
            if id(layer) in kept or any(id(p) in kept for p in layer.parameters(recurse=False)):
                continue
            _keras_layer(layer)


def _keras_layer(layer: nn.Module) -> None:
    """One layer's own parameters and settings as Keras starts them (children apart)."""
    if isinstance(layer, (nn.Linear, nn.modules.conv._ConvNd)):
        nn.init.xavier_uniform_(layer.weight)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    elif isinstance(layer, nn.Embedding):
        nn.init.uniform_(layer.weight, -EMBEDDING_LIMIT, EMBEDDING_LIMIT)
        if layer.padding_idx is not None:
            layer.weight[layer.padding_idx].zero_()
    elif isinstance(layer, nn.RNNBase):
        _keras_recurrent(layer)
    elif isinstance(layer, nn.modules.batchnorm._BatchNorm):
        layer.momentum = BATCH_NORM_MOMENTUM
        layer.eps = NORM_EPSILON
    elif isinstance(layer, nn.LayerNorm):
        layer.eps = NORM_EPSILON
    elif isinstance(layer, nn.MultiheadAttention) and layer.in_proj_weight is not None:
        # Keras' MultiHeadAttention has one Glorot kernel per projection (query, key, value)
        for projection in layer.in_proj_weight.chunk(3):
            nn.init.xavier_uniform_(projection)
        if layer.in_proj_bias is not None:
            nn.init.zeros_(layer.in_proj_bias)


def _keras_recurrent(layer: nn.RNNBase) -> None:
    """Keras' LSTM/GRU: Glorot input kernels, orthogonal recurrent kernels, zero biases and
    (LSTM, ``unit_forget_bias=True``) a forget-gate bias of 1. torch sums two biases per
    gate, so the 1 goes into ``bias_ih`` only; its gate order is input, forget, cell, output."""
    for name, param in layer.named_parameters(recurse=False):
        if name.startswith("weight_ih"):
            nn.init.xavier_uniform_(param)
        elif name.startswith("weight_hh"):
            nn.init.orthogonal_(param)
        elif name.startswith("bias"):
            nn.init.zeros_(param)
            if isinstance(layer, nn.LSTM) and name.startswith("bias_ih"):
                units = layer.hidden_size
                param[units : 2 * units] = 1.0
