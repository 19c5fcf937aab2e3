"""What an evaluation returns, in memory and as JSON."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ctframe.evaluation.aggregate import Aggregation, plural
from ctframe.evaluation.bootstrap import Estimate
from ctframe.evaluation.conformal import ConformalRule
from ctframe.evaluation.findings import Finding
from ctframe.evaluation.recalibrate import Recalibration
from ctframe.evaluation.threshold import ThresholdChoice
from ctframe.registry.settings import EvaluationSettings

if TYPE_CHECKING:
    from ctframe.base.contracts import DataSplits
    from ctframe.base.training import Predictions
    from ctframe.evaluation.paired import PairedDifference


@dataclass(frozen=True)
class EvaluationData:
    """The facts about the data that evaluation needs (built from :class:`~ctframe.DataSplits`)."""

    class_names: tuple[str, ...]
    positive_class: str
    files: Mapping[str, str] = field(default_factory=dict)
    """Sample id -> file it came from (for the predictions CSV)."""
    groups: Mapping[str, str] = field(default_factory=dict)
    """Sample id -> group (patient, sequence); set: confidence intervals resample whole groups, and each
    model is also evaluated per group."""
    group_unit: str = "group"
    """What a group is ("patient", "study", "series"), from :attr:`DataSplits.group_unit`."""
    sample_unit: str = "image"
    """What one sample is: "image", or a group unit when the predictions are already one per group
    (``ctframe metrics`` on a group-level file): titles and the bootstrap then say so."""
    differences: tuple[str, ...] = ()
    """How this data differs from what the models were trained on (external evaluation: mapped class
    names, groups missing or of another unit): reported as findings (``data_differs``)."""

    def __post_init__(self) -> None:
        if self.positive_class not in self.class_names:
            raise ValueError(f"positive class {self.positive_class!r} is not one of {list(self.class_names)}")

    @property
    def positive_index(self) -> int:
        return self.class_names.index(self.positive_class)

    @classmethod
    def from_splits(cls, splits: DataSplits) -> EvaluationData:
        return cls(
            tuple(splits.class_names),
            splits.positive_class,
            dict(splits.files),
            dict(splits.groups),
            splits.group_unit,
        )


@dataclass(frozen=True)
class ModelPredictions:
    """One model's predictions to evaluate: validation (threshold choice) and test (measurement)."""

    key: str
    title: str
    val: Predictions | None
    """``None`` when the threshold is given (a stored model on external data): never re-chosen."""
    test: Predictions
    threshold: ThresholdChoice | None = None
    """A threshold fixed beforehand; ``None``: choose it on ``val`` as the settings say."""
    group_threshold: ThresholdChoice | None = None
    """The same for the group-level decision (``group_threshold`` setting, on ``val``'s groups)."""
    aggregation: Aggregation | None = None
    """The model's own aggregation (a stored model); ``None``: the settings' ``aggregate``."""
    conformal: ConformalRule | None = None
    """The model's own conformal rule (a stored model); ``None``: fitted on ``val`` when the settings ask."""


@dataclass(frozen=True)
class GroupEvaluation:
    """One model's test metrics per group (patient, study, series): each group one aggregated answer."""

    unit: str
    aggregation: Aggregation
    threshold: ThresholdChoice
    estimates: Mapping[str, Estimate]
    titles: Mapping[str, str]
    calibration: Mapping[str, Estimate]
    confusion: Mapping[str, Any]
    """Counts of (true class, predicted class) at the group threshold."""
    reliability: Mapping[str, Any]
    """The reliability diagram's bins (edges, counts, mean predicted, observed)."""
    images_per_group: Mapping[str, float]
    values: Mapping[str, Any] = field(default_factory=dict)
    warnings: Sequence[str] = ()
    groups: int = 0
    class_counts: Mapping[str, int] = field(default_factory=dict)
    """Groups per true class."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "aggregate": self.aggregation.as_dict(),
            "groups": self.groups,
            "class_counts": dict(self.class_counts),
            "images_per_group": dict(self.images_per_group),
            "threshold": self.threshold.as_dict(),
            "bootstrap": f"stratified bootstrap of {plural(self.unit)} (each {self.unit} one unit)",
            "metrics": {
                name: {"title": self.titles.get(name, name), **estimate.as_dict()}
                for name, estimate in self.estimates.items()
            },
            "calibration": {name: estimate.as_dict() for name, estimate in self.calibration.items()},
            "reliability": jsonable(dict(self.reliability)),
            "confusion": jsonable(dict(self.confusion)),
            "values": jsonable(dict(self.values)),
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class ModelEvaluation:
    """One model's test metrics with confidence intervals."""

    key: str
    title: str
    threshold: ThresholdChoice
    estimates: Mapping[str, Estimate]
    """Every scalar metric value by name, in recipe order."""
    titles: Mapping[str, str]
    """Display title per estimate name ("F1 Score")."""
    calibration: Mapping[str, Estimate]
    values: Mapping[str, Any] = field(default_factory=dict)
    """Non-scalar metric outputs (confusion matrix ...)."""
    warnings: Sequence[str] = ()
    samples: int = 0
    class_counts: Mapping[str, int] = field(default_factory=dict)
    group: GroupEvaluation | None = None
    """The same model answering per group, when the data has groups."""
    recalibration: Recalibration | None = None
    """The recalibration fitted on validation; every other test number is on its probabilities."""
    calibration_test: Mapping[str, Mapping[str, Estimate]] = field(default_factory=dict)
    """"before" / "after" recalibration: test ECE, Brier and log-loss ("nll") with CIs."""
    conformal: ConformalRule | None = None
    conformal_summary: Mapping[str, Any] = field(default_factory=dict)
    """Test coverage per class, abstention and accuracy on decided cases (:func:`conformal.summarise`)."""

    def as_dict(self) -> dict[str, Any]:
        group = {} if self.group is None else {"group_level": self.group.as_dict()}
        if self.recalibration is not None:
            test = {
                when: {name: estimate.as_dict() for name, estimate in scores.items()}
                for when, scores in self.calibration_test.items()
            }
            applied = (
                "test metrics, calibration, threshold and predictions use the recalibrated probabilities"
            )
            group["calibration_fit"] = {**self.recalibration.as_dict(), "test": test, "applied": applied}
        if self.conformal_summary:
            group["conformal"] = jsonable(dict(self.conformal_summary))
        return {
            "key": self.key,
            "title": self.title,
            "threshold": self.threshold.as_dict(),
            "test_samples": self.samples,
            "test_class_counts": dict(self.class_counts),
            "metrics": {
                name: {"title": self.titles.get(name, name), **estimate.as_dict()}
                for name, estimate in self.estimates.items()
            },
            "calibration": {name: estimate.as_dict() for name, estimate in self.calibration.items()},
            "values": jsonable(dict(self.values)),
            "warnings": list(self.warnings),
            **group,
        }


@dataclass(frozen=True)
class EvaluationResult:
    models: tuple[ModelEvaluation, ...]
    class_names: tuple[str, ...]
    positive_class: str
    settings: EvaluationSettings
    seed: int
    differences: tuple[PairedDifference, ...] = ()
    """Paired bootstrap differences of later models to the first (same test samples only)."""
    bootstrap_method: str = "stratified bootstrap of images"
    unit: str = "image"
    """What one test sample is (:attr:`EvaluationData.sample_unit`)."""
    findings: tuple[Finding, ...] = ()
    """What went wrong, one sentence each (:mod:`ctframe.evaluation.findings`)."""

    def __getitem__(self, key: str) -> ModelEvaluation:
        for model in self.models:
            if model.key == key:
                return model
        raise KeyError(key)

    def header(self) -> dict[str, Any]:
        """Facts shared by every model's metrics file."""
        return {
            "class_names": list(self.class_names),
            "positive_class": self.positive_class,
            "split": "test",
            "unit": self.unit,
            "bootstrap": {
                "resamples": self.settings.bootstrap,
                "confidence": self.settings.confidence,
                "method": f"percentile intervals, {self.bootstrap_method}",
                "seed": self.seed,
            },
            "calibration_bins": self.settings.calibration_bins,
            "settings": self.settings.model_dump(),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.header(),
            "models": {model.key: model.as_dict() for model in self.models},
            "paired_differences": [difference.as_dict() for difference in self.differences],
            "findings": [finding.as_dict() for finding in self.findings],
        }


def jsonable(value: Any) -> Any:
    """Plain JSON types; NaN and infinities become ``null`` (JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
