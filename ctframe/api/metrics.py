"""Shared by metric components: the checked arrays of a :class:`ctframe.api.MetricInput` and the
decision rule (positive when its probability reaches the threshold)."""

from ctframe.evaluation.decision import checked_arrays, predicted_labels

__all__ = ["checked_arrays", "predicted_labels"]
