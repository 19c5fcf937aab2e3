"""Exports answer as ``ctframe predict`` does: the recalibration a model file holds is part of the
exported graph (fp32 graph against the fp64 numpy formula predict applies)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ctframe import Kind
from ctframe.runtime.model import logits_to_probabilities
from ctframe.runtime.recalibration import calibrated_probabilities
from ctframe.workflows.export import CHECK_BATCHES, TOLERANCE, ExportError, exportable, max_abs_difference
from ctframe.workflows.export_module import DecisionRule
from tests.core.contracts.components import build, names, tiny_classifier

CALIBRATIONS = [
    {"method": "none"},
    {"method": "temperature", "temperature": 2.5},
    {"method": "platt", "scale": 0.4, "shift": -1.3},
]


def _images() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randint(0, 256, (sum(CHECK_BATCHES), 3, 16, 16), dtype=torch.uint8)


@pytest.mark.parametrize("positive_index", [0, 1])
@pytest.mark.parametrize("calibration", CALIBRATIONS, ids=lambda c: c["method"])
def test_the_exported_module_applies_the_stored_recalibration(calibration, positive_index, tmp_path: Path):
    torch.manual_seed(0)
    classifier = tiny_classifier(tmp_path)
    images = _images()
    module = exportable(classifier, calibration, positive_index)
    with torch.inference_mode():
        raw = logits_to_probabilities(classifier.eval()(images)).double().numpy()
        got = module(images).double().numpy()
    expected = calibrated_probabilities(raw, calibration, positive_index)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)
    if calibration["method"] != "none":
        assert np.max(np.abs(got - raw)) > 1e-2  # the recalibration changes the answer


@pytest.mark.parametrize("name", names(Kind.EXPORTER))
def test_an_exported_file_carries_the_recalibration(name: str, tmp_path: Path):
    exporter = build(Kind.EXPORTER, name, tmp_path)
    calibration = CALIBRATIONS[2]
    module = exportable(tiny_classifier(tmp_path), calibration, 1)
    images = _images()
    path = tmp_path / f"model{exporter.suffix}"
    exporter.export(module, images[:2], path, {"class_names": '["dark", "bright"]'})
    assert max_abs_difference(exporter.load(path), module, images) <= TOLERANCE


def test_an_unknown_recalibration_is_refused():
    with pytest.raises(ExportError, match="calibration 'isotonic'"):
        exportable(torch.nn.Linear(2, 2), {"method": "isotonic"})


@pytest.mark.parametrize("name", names(Kind.EXPORTER))
def test_every_exporter_writes_the_decision_and_set_outputs(name: str, tmp_path: Path):
    exporter = build(Kind.EXPORTER, name, tmp_path)
    module = exportable(tiny_classifier(tmp_path), CALIBRATIONS[1], 1, DecisionRule(0.4, [0.3, 0.6]))
    assert module.output_names == ("probabilities", "decision", "set")
    images = _images()
    path = tmp_path / f"model{exporter.suffix}"
    exporter.export(module, images[:2], path, {"class_names": '["dark", "bright"]'})
    assert max_abs_difference(exporter.load(path), module, images) <= TOLERANCE  # probabilities first
    with torch.inference_mode():
        probabilities, decision, sets = module(images)
    p = probabilities.double().numpy()
    assert decision.tolist() == np.where(p[:, 1] >= 0.4, 1, 0).tolist()
    assert sets.numpy().tolist() == ((1 - p) <= np.array([0.3, 0.6]) + 1e-12).tolist()
