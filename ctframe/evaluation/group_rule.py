"""A model's own group rule: how it aggregates its images' probabilities and the group threshold it chose
on its validation groups. Saved in the model file, so ``ctframe predict`` and ``ctframe evaluate`` answer
per group as the run did, never with a rule chosen again on new data."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ctframe.evaluation.aggregate import Aggregation
from ctframe.evaluation.results import GroupEvaluation
from ctframe.evaluation.threshold import ThresholdChoice
from ctframe.registry.settings import EvaluationSettings
from ctframe.storage.modelfile import ModelFileError, ModelInfo

logger = logging.getLogger("ctframe")


@dataclass(frozen=True)
class GroupRule:
    aggregation: Aggregation
    threshold: ThresholdChoice
    """On the group probability; ``value`` ``None`` (argmax) for more than two classes."""
    unit: str | None = None
    """What a group was in the training data; ``None`` when it had no groups."""

    def as_record(self) -> dict[str, Any]:
        """The model file's ``group_rule`` field."""
        return {
            "unit": self.unit,
            "aggregate": self.aggregation.as_dict(),
            "threshold": self.threshold.value,
            "threshold_choice": self.threshold.as_dict(),
        }


def trained_rule(
    group: GroupEvaluation | None, settings: EvaluationSettings, classes: int, unit: str | None
) -> GroupRule:
    """The rule a run's evaluation settled on; without groups, the recipe's aggregation at the fixed
    threshold (a validation-chosen one needs validation groups)."""
    if group is not None:
        return GroupRule(group.aggregation, group.threshold, unit)
    if classes > 2:
        return GroupRule(Aggregation.from_settings(settings), ThresholdChoice("argmax", None), None)
    note = None
    if settings.group_threshold != "fixed":
        note = f"the training data had no groups to choose a {settings.group_threshold} threshold on"
    fixed = ThresholdChoice("fixed", settings.fixed_threshold, note=note)
    return GroupRule(Aggregation.from_settings(settings), fixed, None)


def default_rule(classes: int) -> GroupRule:
    """What a model file without a rule (written before ctframe stored one) gets: the default settings."""
    return trained_rule(None, EvaluationSettings(), classes, None)


def _from_record(record: Mapping[str, Any], info: ModelInfo) -> GroupRule:
    try:
        aggregate = dict(record["aggregate"])
        aggregation = Aggregation(
            str(aggregate["method"]), int(aggregate.get("k", 5)), float(aggregate.get("quantile", 0.9))
        )
        choice = dict(record.get("threshold_choice") or {})
        value = record["threshold"]
        threshold = ThresholdChoice(
            str(choice.get("method", "fixed" if value is not None else "argmax")),
            None if value is None else float(value),
            choice.get("chosen_on"),
            choice.get("note"),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError(
            f"{info.path}: its group_rule is damaged ({type(error).__name__}: {error}); it was edited"
        ) from None
    unit = record.get("unit")
    return GroupRule(aggregation, threshold, None if unit is None else str(unit))


def rule_of(info: ModelInfo) -> GroupRule:
    """The group rule a model file records; an older file without one gets :func:`default_rule`, said
    in one log line."""
    record = info.metadata.get("group_rule")
    if record is None:
        rule = default_rule(len(info.class_names))
        value = rule.threshold.value
        at = "the most probable class" if value is None else f"the fixed threshold {value:g}"
        logger.warning(
            "%s has no group rule (written before ctframe stored one): groups use the %s and %s",
            info.path.name,
            rule.aggregation.describe(),
            at,
        )
        return rule
    if not isinstance(record, Mapping):
        raise ModelFileError(f"{info.path}: its group_rule is not an object; it was edited")
    return _from_record(record, info)
