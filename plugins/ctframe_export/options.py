"""Exporter options (no torch import: listing plugins must stay cheap)."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from ctframe import Options

OLDEST_OPSET = 7
"""The oldest ONNX opset asked for at all; whether a model converts that far is checked at export."""


def newest_opset() -> int | None:
    """The newest opset the installed onnx knows, or ``None`` without onnx (the exporter then says so)."""
    try:
        from onnx.defs import onnx_opset_version
    except ImportError:
        return None
    return int(onnx_opset_version())


class OnnxOptions(Options):
    opset: int | None = Field(
        None,
        description="ONNX opset version to write (--opset), 7 up to the installed onnx's newest; "
        "default: torch.onnx's own",
    )
    optimize: bool = Field(True, description="let torch.onnx fold constants and simplify the graph")

    @field_validator("opset")
    @classmethod
    def _known_opset(cls, value: int | None) -> int | None:
        newest = newest_opset()
        if value is not None and (value < OLDEST_OPSET or newest is not None and value > newest):
            known = f"{OLDEST_OPSET}..{newest}" if newest is not None else f"{OLDEST_OPSET} and newer"
            message = "--opset {value}: this onnx supports opsets {known}"
            raise PydanticCustomError("opset", message, {"value": value, "known": known})
        return value


class Pt2Options(Options):
    pass
