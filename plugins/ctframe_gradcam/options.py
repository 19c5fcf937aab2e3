"""Explainer options (no torch import: listing plugins must stay cheap)."""

from __future__ import annotations

from pydantic import Field

from ctframe import Options


class GradientCamOptions(Options):
    aug_smooth: bool = Field(
        False, description="average over flipped and rescaled copies of the image (6x slower, smoother)"
    )
    eigen_smooth: bool = Field(
        False, description="keep the first principal component of the weighted activations (less noise)"
    )


class PerturbationCamOptions(GradientCamOptions):
    batch_size: int = Field(32, ge=1, le=4096, description="masked or ablated copies per forward pass")
