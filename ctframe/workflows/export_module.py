"""The module an export writes: ``uint8`` images in, the probabilities ``ctframe predict`` reports out
(recalibrated inside the graph), and on request the decision and the conformal set as further outputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ctframe.base.errors import CtframeError
from ctframe.base.model_tools import OUTPUT_NAME
from ctframe.evaluation.conformal import TOLERANCE as SET_TOLERANCE
from ctframe.runtime.components import uncompiled
from ctframe.runtime.model import logits_to_probabilities
from ctframe.runtime.recalibration import SMALLEST_PROBABILITY

DECISION_NAME = "decision"
SET_NAME = "set"


class ExportError(CtframeError):
    """An export that could not be written, or whose file does not compute what the model computes."""


class ProbabilityModel(nn.Module):
    """What is exported: ``uint8`` RGB images -> fp32 class probabilities, whatever the head's layout,
    recalibrated as the model file's ``calibration`` says (the formulas of
    :func:`ctframe.runtime.recalibration.calibrated_probabilities`, in torch), so the file answers as
    ``ctframe predict`` does."""

    output_names: tuple[str, ...] = (OUTPUT_NAME,)
    """What an exporter names the outputs (``forward`` returns one tensor per name, or one tensor)."""

    def __init__(
        self, classifier: nn.Module, calibration: Mapping[str, Any] | None = None, positive_index: int = 1
    ):
        super().__init__()
        self.classifier = classifier
        self.method = "none" if not calibration else str(calibration.get("method", "none"))
        self.positive_index = positive_index
        if self.method == "temperature":
            self.temperature = float(calibration["temperature"])  # type: ignore[index]
        elif self.method == "platt":
            self.scale, self.shift = float(calibration["scale"]), float(calibration["shift"])  # type: ignore[index]
        elif self.method != "none":
            raise ExportError(f"calibration {self.method!r} is not one this ctframe can export")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        probabilities = logits_to_probabilities(self.classifier(images))
        if self.method == "none":
            return probabilities
        logs = torch.log(probabilities.clamp_min(SMALLEST_PROBABILITY))
        if self.method == "temperature":
            return torch.softmax(logs / self.temperature, dim=1)
        positive, negative = self.positive_index, 1 - self.positive_index
        chance = torch.sigmoid(self.scale * (logs[:, positive] - logs[:, negative]) + self.shift)
        columns = [chance, 1.0 - chance] if positive == 0 else [1.0 - chance, chance]
        return torch.stack(columns, dim=1)


@dataclass(frozen=True)
class DecisionRule:
    """The model's locked rule: ``threshold`` on the positive class (two classes; ``None``: the most
    probable class) and, when conformal, the quantile of each class in class order."""

    threshold: float | None
    quantiles: Sequence[float] | None = None


class DecisionModel(ProbabilityModel):
    """Probabilities, then the decision (class index, int64 ``(N,)``) and, with quantiles, the set
    (bool ``(N, C)``: class k is in when ``1 - p_k <= q_k``), as ``ctframe predict`` decides them."""

    def __init__(self, classifier: nn.Module, calibration: Any, positive_index: int, rule: DecisionRule):
        super().__init__(classifier, calibration, positive_index)
        self.threshold = rule.threshold
        self.register_buffer(
            "quantiles",
            None if rule.quantiles is None else torch.tensor(list(rule.quantiles), dtype=torch.float64),
        )
        self.output_names = (OUTPUT_NAME, DECISION_NAME) + ((SET_NAME,) if rule.quantiles is not None else ())

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        probabilities = super().forward(images)
        if probabilities.shape[1] == 2 and self.threshold is not None:
            positive = probabilities[:, self.positive_index] >= self.threshold
            decision = torch.where(positive, self.positive_index, 1 - self.positive_index).to(torch.int64)
        else:
            decision = probabilities.argmax(dim=1)
        if self.quantiles is None:
            return probabilities, decision
        scores = 1.0 - probabilities.double()
        return probabilities, decision, scores <= self.quantiles.unsqueeze(0) + SET_TOLERANCE


def exportable(
    classifier: nn.Module,
    calibration: Mapping[str, Any] | None = None,
    positive_index: int = 1,
    rule: DecisionRule | None = None,
) -> ProbabilityModel:
    """The classifier as it is exported: un-compiled, fp32, eval mode, on the CPU, probabilities out
    (recalibrated when ``calibration`` names a method), and the decision and set too with ``rule``."""
    module = uncompiled(classifier).float().cpu()
    if rule is None:
        return ProbabilityModel(module, calibration, positive_index).eval()
    return DecisionModel(module, calibration, positive_index, rule).eval()


def probabilities_of(output: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The probabilities among a module's outputs (the first, when there are several)."""
    return output[0] if isinstance(output, tuple) else output
