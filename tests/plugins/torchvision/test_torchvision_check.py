"""The torchvision backbone's check refuses a run before its run directory exists when the weights
cannot be had: a missing file, one of a suffix it cannot read, ImageNet weights offline."""

from __future__ import annotations

import logging
import urllib.error
from pathlib import Path

import pytest
from ctframe_torchvision.options import TorchvisionOptions
from ctframe_torchvision.weights import WeightsError

from ctframe import BuildContext
from ctframe.commands.main import main
from ctframe.registry.plugins import build_registry
from tests.toy.recipe import toy_recipe_text


def _context(tmp_path: Path) -> BuildContext:
    return BuildContext(seed=0, device="cpu", recipe_dir=tmp_path, logger=logging.getLogger("test"))


@pytest.fixture
def offline(monkeypatch):
    import ctframe.storage.download

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(ctframe.storage.download.urllib.request, "urlopen", refuse)


def _check():
    component = build_registry(selection="torchvision").get("backbone", "torchvision")
    assert component.check is not None
    return component.check


def test_local_weight_files_are_checked(tmp_path):
    check = _check()
    options = TorchvisionOptions.model_validate({"weights": "missing.pt"}, context={"base_dir": tmp_path})
    with pytest.raises(WeightsError, match=r"missing.pt does not exist; fix backbone.weights"):
        check(options, _context(tmp_path))
    (tmp_path / "weights.h5").write_bytes(b"keras")
    options = TorchvisionOptions(weights=tmp_path / "weights.h5")
    with pytest.raises(WeightsError, match=r"weights.h5: torchvision weights must be a torch state dict"):
        check(options, _context(tmp_path))
    check(TorchvisionOptions(weights="none"), _context(tmp_path))  # nothing to fetch


def test_imagenet_weights_offline_are_refused_by_the_check(tmp_path, offline):
    options = TorchvisionOptions(arch="resnet18", weights="imagenet", cache_dir=tmp_path)
    with pytest.raises(WeightsError, match="network is unreachable.*fetch that file yourself") as error:
        _check()(options, _context(tmp_path))
    assert "\n" not in str(error.value) and str(tmp_path / "resnet18-") in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_run_stops_before_creating_a_run_directory(
    toy_site, toy_recipe, tmp_path, monkeypatch, offline, capsys
):
    monkeypatch.setenv("CTFRAME_PLUGINS", "toy,torchvision")
    backbone = {"component": "torchvision", "arch": "resnet18", "cache_dir": tmp_path / "hub"}
    toy_recipe.write_text(toy_recipe_text(backbone=backbone))
    for command in (
        ["validate", "--quick", str(toy_recipe)],
        ["run", str(toy_recipe), "--output", str(tmp_path / "runs")],
    ):
        assert main(command) == 2
        error = capsys.readouterr().err
        assert "cannot download" in error and "Traceback" not in error
    assert not (tmp_path / "runs").exists()
