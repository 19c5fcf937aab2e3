"""The ResNetV2 check refuses a run before it starts when its weights cannot be had."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
from ctframe_resnet_v2.options import ResNetV2Options
from ctframe_resnet_v2.weights import WeightsError

from ctframe import BuildContext
from ctframe.registry.plugins import build_registry


def _context(tmp_path: Path) -> BuildContext:
    return BuildContext(seed=0, device="cpu", recipe_dir=tmp_path, logger=logging.getLogger("test"))


def test_missing_weight_file_is_refused_by_the_check(tmp_path):
    component = build_registry(selection="resnet_v2").get("backbone", "resnet101v2")
    assert component.check is not None
    options = ResNetV2Options.model_validate({"weights": "missing.h5"}, context={"base_dir": tmp_path})
    with pytest.raises(WeightsError, match=r"missing.h5 does not exist; fix backbone.weights"):
        component.check(options, _context(tmp_path))
    component.check(ResNetV2Options(weights="none"), _context(tmp_path))  # nothing to fetch


def test_unreachable_imagenet_weights_are_refused_by_the_check(tmp_path, monkeypatch):
    from ctframe_resnet_v2 import download

    entry = download.IMAGENET_WEIGHTS["resnet50v2"]
    monkeypatch.setitem(
        download.IMAGENET_WEIGHTS, "resnet50v2", dataclasses.replace(entry, url="http://127.0.0.1:9/x.h5")
    )
    component = build_registry(selection="resnet_v2").get("backbone", "resnet50v2")
    options = ResNetV2Options(weights="imagenet", cache_dir=tmp_path)
    with pytest.raises(WeightsError, match="fetch that file yourself"):
        component.check(options, _context(tmp_path))
