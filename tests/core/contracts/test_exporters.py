"""Every registered exporter: writes a tiny model to a file that ``load`` runs, with a dynamic batch,
agreeing with the PyTorch model as ``ctframe export`` requires."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ctframe import Exporter, Kind
from ctframe.workflows.export import CHECK_BATCHES, TOLERANCE, exportable, max_abs_difference
from tests.core.contracts.components import build, names, tiny_classifier


@pytest.mark.parametrize("name", names(Kind.EXPORTER))
def test_exported_file_agrees_with_the_model(name: str, tmp_path: Path):
    torch.manual_seed(0)
    exporter = build(Kind.EXPORTER, name, tmp_path)
    assert isinstance(exporter, Exporter)
    assert isinstance(exporter.suffix, str) and exporter.suffix.startswith(".")
    module = exportable(tiny_classifier(tmp_path))
    images = torch.randint(0, 256, (sum(CHECK_BATCHES), 3, 16, 16), dtype=torch.uint8)
    path = tmp_path / f"model{exporter.suffix}"
    exporter.export(module, images[:2], path, {"class_names": '["dark", "bright"]'})
    assert path.exists()
    run = exporter.load(path)
    assert max_abs_difference(run, module, images) <= TOLERANCE  # batches of 1, 3 and 8
