"""Options of the dense head (no torch import: listing plugins and validating recipes stay fast)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ctframe import Options


class DenseHeadOptions(Options):
    pooling: Literal["avg", "max"] = Field("avg", description="global pooling of the backbone's feature map")
    units: int = Field(1024, ge=1, description="width of the hidden Dense layer")
    activation: Literal["relu", "gelu", "linear"] = Field("relu", description="hidden layer activation")
    l2: float = Field(
        0.01, ge=0.0, description="Keras L2 factor on the hidden kernel: adds l2 * sum(w^2) to the loss"
    )
    batchnorm: bool = Field(True, description="BatchNormalization after the hidden layer")
    bn_epsilon: float = Field(1e-3, gt=0.0, description="BatchNorm epsilon (Keras default 1e-3)")
    bn_momentum: float = Field(
        0.99,
        gt=0.0,
        lt=1.0,
        description="BatchNorm moving-average momentum, Keras meaning (torch's is 1 - this)",
    )
    dropout: float = Field(0.5, ge=0.0, lt=1.0, description="dropout rate before the output layer")
    output: Literal["auto", "softmax"] = Field(
        "auto", description="auto: one sigmoid logit for two classes, softmax otherwise; softmax: always"
    )
