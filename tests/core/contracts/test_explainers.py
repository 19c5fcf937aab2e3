"""Every registered explainer: one map per image, ``(N, H, W)`` at the images' size, in [0, 1], through
the core's ``cam_maps`` (which hands it the model, the backbone's ``cam_layer``, images and targets)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ctframe import Explainer, Kind
from ctframe.runtime.explaining import cam_maps
from tests.core.contracts.components import build, names, tiny_classifier


@pytest.mark.parametrize("name", names(Kind.EXPLAINER))
def test_explainer_gives_one_map_in_0_1_per_image(name: str, tmp_path: Path):
    torch.manual_seed(0)
    explainer = build(Kind.EXPLAINER, name, tmp_path)
    assert isinstance(explainer, Explainer)
    images = torch.randint(0, 256, (3, 3, 16, 12), dtype=torch.uint8)
    maps = cam_maps(tiny_classifier(tmp_path), images, [0, 1, 1], method=explainer)
    assert isinstance(maps, np.ndarray) and maps.shape == (3, 16, 12)
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
