"""recipes/quickstart.toml end to end through the engine, shrunk (image size, epochs) to seconds."""

from __future__ import annotations

import csv
import json

import pytest

from ctframe.registry.recipe import load_recipe
from ctframe.workflows.engine import start_run
from tests.conftest import REPO

pytestmark = pytest.mark.usefixtures("one_torch_thread", "quickstart_plugins")


def test_quickstart_recipe_trains_both_phases_and_evaluates(tmp_path):
    recipe = load_recipe(
        REPO / "recipes" / "quickstart.toml",
        overrides=[
            f"dataset.root={tmp_path / 'demo-ct'}",
            "dataset.image_size=32",
            "dataset.cache=none",
            "head.units=16",
            "trainer.initial.epochs=2",
            "trainer.finetuned.epochs=1",
            "evaluation.bootstrap=0",
        ],
    )
    result = start_run(recipe, output=tmp_path / "runs")
    run = result.run_dir.path
    assert [(m.key, m.title) for m in result.trained] == [
        ("initial", "Initial Model"),
        ("finetuned", "Fine-Tuned Model"),
    ]
    assert (tmp_path / "demo-ct" / "COVID").is_dir()  # generated on first use
    for key, epochs in (("initial", 2), ("finetuned", 1)):
        with open(run / f"history_{key}.csv", newline="") as handle:
            assert len(list(csv.DictReader(handle))) == epochs
        assert (run / "checkpoints" / f"{key}_best.pt").is_file()
        assert (run / "checkpoints" / f"{key}_last.pt").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    text = json.dumps(metrics)
    for name in ("accuracy", "precision", "recall", "f1", "roc_auc", "initial", "finetuned"):
        assert name in text
