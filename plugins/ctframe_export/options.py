"""Exporter options (no torch import: listing plugins must stay cheap)."""

from __future__ import annotations

from pydantic import Field

from ctframe import Options


class OnnxOptions(Options):
    opset: int | None = Field(
        None, ge=7, description="ONNX opset version to write (--opset); default: torch.onnx's own"
    )
    optimize: bool = Field(True, description="let torch.onnx fold constants and simplify the graph")


class Pt2Options(Options):
    pass
