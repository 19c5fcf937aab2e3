"""The study's classifier head: pooling -> Dense(ReLU, L2) -> BatchNorm -> Dropout -> output.

Values follow the Keras model the study used; the Keras names are kept in the option descriptions
so a reader can map one to the other.
"""

from __future__ import annotations

import torch
from torch import nn

from ctframe import BuildContext
from ctframe_dense_head.options import DenseHeadOptions

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "linear": nn.Identity}


def _glorot_uniform(layer: nn.Linear) -> None:
    # Keras Dense defaults: glorot-uniform kernel, zero bias (torch's nn.Linear defaults differ).
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)


class DenseHead(nn.Module):
    """Feature maps ``(N, C, h, w)`` (or already pooled ``(N, C)``) -> ``num_outputs`` logits."""

    def __init__(self, in_features: int, num_classes: int, options: DenseHeadOptions):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a classifier head needs at least 2 classes, got {num_classes}")
        self.options = options
        self.num_outputs = 1 if num_classes == 2 and options.output == "auto" else num_classes
        self.l2 = options.l2
        self.pool = nn.AdaptiveAvgPool2d(1) if options.pooling == "avg" else nn.AdaptiveMaxPool2d(1)
        self.hidden = nn.Linear(in_features, options.units)
        self.activation = _ACTIVATIONS[options.activation]()
        self.norm: nn.Module = (
            nn.BatchNorm1d(options.units, eps=options.bn_epsilon, momentum=1.0 - options.bn_momentum)
            if options.batchnorm
            else nn.Identity()
        )
        self.dropout = nn.Dropout(options.dropout)
        self.output = nn.Linear(options.units, self.num_outputs)
        _glorot_uniform(self.hidden)
        _glorot_uniform(self.output)

    def reduce_features(self, features: torch.Tensor) -> torch.Tensor:
        """The head's fixed, parameter-free first step (global pooling).

        Optional extension of the Head contract: a trainer that caches frozen-backbone outputs may
        store ``reduce_features(maps)`` instead of the maps (49x smaller for 7x7 maps), because
        ``forward`` accepts either.
        """
        return self.pool(features).flatten(1) if features.dim() == 4 else features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        hidden = self.activation(self.hidden(self.reduce_features(features)))
        return self.output(self.dropout(self.norm(hidden)))

    def load_keras_layers(self, layers) -> list[str]:
        """Take the weights of a Keras head of this shape (Keras layers after the backbone, in model
        order); returns the layer names used. See :func:`ctframe_dense_head.keras.load_keras_layers`."""
        from ctframe_dense_head.keras import load_keras_layers

        return load_keras_layers(self, layers)

    def penalty(self) -> torch.Tensor:
        """Keras ``regularizers.L2(l2)`` on the hidden kernel: ``l2 * sum(w ** 2)``."""
        if self.l2 == 0.0:
            return self.hidden.weight.new_zeros(())
        kernel = self.hidden.weight.reshape(-1)
        return self.l2 * torch.dot(kernel, kernel)  # one pass, no temporary: it runs every step


def build_dense_head(
    options: DenseHeadOptions, context: BuildContext, in_features: int, num_classes: int
) -> DenseHead:
    return DenseHead(in_features, num_classes, options)
