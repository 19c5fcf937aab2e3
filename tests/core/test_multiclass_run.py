"""A three-class dataset needs no positive class: metrics average over the classes, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctframe.commands.main import main
from tests.plugins.folder_split.support import image_bytes

CLASSES = ["a", "b", "c"]


def _folder(root: Path, per_class: int = 12) -> Path:
    for index, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            (root / name / f"img{k:02d}.png").write_bytes(image_bytes(100 * index + k))
    return root


def _recipe(tmp_path: Path, positive: str | None) -> Path:
    recipe = tmp_path / "three.toml"
    positive_line = f'positive_class = "{positive}"\n' if positive else ""
    recipe.write_text(
        'metrics = ["accuracy", "precision", "roc_auc"]\n[run]\ndevice = "cpu"\n'
        f'[dataset]\ncomponent = "folder_split"\nroot = "{_folder(tmp_path / "data")}"\n'
        f'classes = {json.dumps(CLASSES)}\n{positive_line}image_size = 16\ncache = "none"\n'
        "leakage_check = false\n"
        '[backbone]\ncomponent = "resnet50v2"\nweights = "none"\n'
        '[head]\ncomponent = "dense"\nunits = 8\n'
        '[trainer]\ncomponent = "two_phase"\nprogress = false\ntensorboard = false\nprecision = "fp32"\n'
        "[trainer.initial]\nepochs = 1\n[trainer.finetuned]\nepochs = 0\n[evaluation]\nbootstrap = 20\n"
    )
    return recipe


@pytest.fixture(autouse=True)
def _plugins(monkeypatch):
    plugins = "folder_split,resnet_v2,dense_head,two_phase,classification_metrics"
    monkeypatch.setenv("CTFRAME_PLUGINS", plugins)


def test_three_classes_run_without_a_positive_class(tmp_path):
    assert main(["run", str(_recipe(tmp_path, None)), "--output", str(tmp_path / "runs")]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    model = metrics["models"]["initial"]
    assert model["threshold"]["method"] == "argmax"
    assert {"precision_macro", "roc_auc_macro", "accuracy"} <= set(model["metrics"])


def test_two_classes_still_need_one(tmp_path, capsys):
    recipe = _recipe(tmp_path, None)
    recipe.write_text(recipe.read_text().replace('"a", "b", "c"', '"a", "b"'))
    assert main(["validate", "--quick", str(recipe)]) == 2
    assert "name the positive class" in capsys.readouterr().err
