"""The decision rule shared by evaluation and metric plugins, and the checks every metric input gets."""

from __future__ import annotations

import numpy as np

from ctframe.base.contracts import MetricInput
from ctframe.base.errors import DataError


def predicted_labels(probabilities: np.ndarray, positive_index: int, threshold: float) -> np.ndarray:
    """Class index per sample.

    Two classes: the positive class when its probability is >= ``threshold``, else the other one.
    More classes: the most probable class (a single threshold has no meaning there).
    """
    probabilities = np.asarray(probabilities)
    if probabilities.shape[1] == 2:
        negative_index = 1 - positive_index
        return np.where(probabilities[:, positive_index] >= threshold, positive_index, negative_index)
    return np.argmax(probabilities, axis=1)


def checked_arrays(inputs: MetricInput) -> tuple[np.ndarray, np.ndarray]:
    """``(labels int64 (N,), probabilities float64 (N, C))`` or a :class:`DataError` naming the problem."""
    labels = np.asarray(inputs.labels)
    probabilities = np.asarray(inputs.probabilities, dtype=np.float64)
    classes = len(inputs.class_names)
    if probabilities.ndim != 2 or probabilities.shape[1] != classes:
        raise DataError(
            f"probabilities have shape {probabilities.shape}; expected (samples, {classes}) for classes "
            f"{list(inputs.class_names)}"
        )
    if labels.ndim != 1 or labels.shape[0] != probabilities.shape[0]:
        raise DataError(
            f"{labels.shape} labels for {probabilities.shape[0]} probability rows; give one label per row"
        )
    if labels.shape[0] == 0:
        raise DataError("no samples to evaluate; the split is empty")
    bad = ~np.isfinite(probabilities).all(axis=1)
    if bad.any():
        raise DataError(
            f"{int(bad.sum())} of {len(bad)} samples have NaN or infinite scores (first at row "
            f"{int(np.flatnonzero(bad)[0])}); the model diverged: lower the learning rate or check the inputs"
        )
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= classes:
        raise DataError(
            f"labels must be class indices 0..{classes - 1}; got values {np.unique(labels)[:5].tolist()}"
        )
    if not 0 <= inputs.positive_index < classes:
        raise DataError(f"positive_index {inputs.positive_index} is not a class index 0..{classes - 1}")
    return labels.astype(np.int64), probabilities
