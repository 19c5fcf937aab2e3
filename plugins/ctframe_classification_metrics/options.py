"""Option schemas of the classification metrics."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ctframe import Options

Average = Literal["auto", "binary", "macro", "weighted"]

AVERAGE_DESCRIPTION = (
    "'binary': the positive class against the rest; 'macro'/'weighted': mean over classes (unweighted / "
    "weighted by class support); 'auto': binary for two classes, macro for more"
)


class AveragedOptions(Options):
    """Options of metrics that can be averaged over classes."""

    average: Average = Field("auto", description=AVERAGE_DESCRIPTION)


class CountOptions(AveragedOptions):
    """Options of metrics computed from the confusion matrix."""

    zero_division: Literal["zero", "one", "nan"] = Field(
        "zero",
        description="value when the denominator is zero (e.g. precision with nothing predicted positive)",
    )


ZERO_DIVISION = {"zero": 0.0, "one": 1.0, "nan": float("nan")}


def resolve_average(average: Average, classes: int) -> str:
    if average == "auto":
        return "binary" if classes == 2 else "macro"
    return average
