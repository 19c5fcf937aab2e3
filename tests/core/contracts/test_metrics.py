"""Every registered metric: a callable from a MetricInput to named values (finite floats, or values
stored as JSON), and the optional ``batched`` form agreeing with it."""

from __future__ import annotations

import json
import numbers
from pathlib import Path

import numpy as np
import pytest

from ctframe import Kind, Metric, MetricInput
from tests.core.contracts.components import build, names


def _inputs() -> MetricInput:
    rng = np.random.default_rng(0)
    labels = np.array([0, 1] * 10)
    positive = np.clip(labels * 0.4 + rng.uniform(0, 0.6, size=labels.size), 0, 1)  # informative
    probabilities = np.stack([1 - positive, positive], axis=1)
    return MetricInput(labels, probabilities, ("negative", "positive"), positive_index=1, threshold=0.5)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@pytest.mark.parametrize("name", names(Kind.METRIC))
def test_metric_maps_an_input_to_named_values(name: str, tmp_path: Path):
    metric = build(Kind.METRIC, name, tmp_path)
    assert isinstance(metric, Metric)
    values = metric(_inputs())
    assert values and all(isinstance(key, str) and key for key in values), "named values"
    for key, value in values.items():
        if _is_number(value):
            assert np.isfinite(float(value)), f"{key} = {value}"
        else:
            json.dumps(value)  # stored in metrics.json as it is
    titles = getattr(metric, "titles", {}) or {}
    assert all(isinstance(title, str) for title in titles.values())


@pytest.mark.parametrize("name", names(Kind.METRIC))
def test_batched_metric_agrees_with_the_metric(name: str, tmp_path: Path):
    """``batched(inputs, weights)`` (optional) computes the plain values once per row of weights;
    bootstrapping uses it. Every row of ones gives the values themselves."""
    metric = build(Kind.METRIC, name, tmp_path)
    batched = getattr(metric, "batched", None)
    if batched is None:
        pytest.skip(f"{name} offers no batched form (optional)")
    inputs = _inputs()
    rows = batched(inputs, np.ones((3, len(inputs.labels))))
    plain = {key: float(value) for key, value in metric(inputs).items() if _is_number(value)}
    assert set(rows) <= set(plain), "batched returns only names the metric returns as numbers"
    for key, row in rows.items():
        assert np.asarray(row).shape == (3,)
        np.testing.assert_allclose(row, plain[key], rtol=1e-9, err_msg=key)
