"""The Python API (issue 25, item 5): ctframe.run returns the run, ctframe.load_model(path).predict answers
as `ctframe predict` does; docs/python.md's example runs as written (on the toy plugin). Probabilities
are fp32 model outputs compared exactly: the same computation on both paths."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest

import ctframe
from ctframe.commands.main import main
from tests.conftest import REPO
from tests.core.test_group_predictions import files, run, toy  # noqa: F401  (module fixtures)
from tests.toy.recipe import toy_recipe_text


def test_run_returns_the_run_with_its_metrics_models_and_report(toy_site, tmp_path):
    recipe = tmp_path / "toy.toml"
    recipe.write_text(toy_recipe_text(evaluation={"bootstrap": 0}))
    result = ctframe.run(
        recipe, output=tmp_path / "runs", trainer__epochs=2, overrides={"dataset.samples": 16}
    )
    assert result.path.parent == tmp_path / "runs" and result.report.is_file()
    assert list(result.models) == list(result.metrics["models"])
    resolved = (result.path / "recipe.toml").read_text()
    assert re.search(r"epochs = 2\b", resolved) and re.search(r"samples = 16\b", resolved)
    assert result.model().info.key == list(result.models)[-1]
    with pytest.raises(ctframe.CtframeError, match="no model 'missing'"):
        result.model("missing")
    with pytest.raises(ctframe.RecipeError, match="unknown section"):
        ctframe.run(recipe, output=tmp_path / "runs", nosuch__key=1)


def test_predict_answers_as_the_command_does(run, files, tmp_path):  # noqa: F811
    images, _ = files
    out = tmp_path / "preds.csv"
    assert main(["predict", str(run), str(images), "-o", str(out)]) == 0
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    answer = ctframe.load_model(run).predict(images)
    assert len(answer) == len(rows)
    assert [r["predicted_class"] for r in rows] == list(answer.predicted)
    columns = [c for c in rows[0] if c.startswith("p_")]
    written = np.array([[float(r[c]) for c in columns] for r in rows])
    np.testing.assert_allclose(answer.probabilities, written, atol=1e-7)  # the CSV holds 8 digits
    assert answer.rows()[0]["sample_id"] == answer.sample_ids[0]


def test_predict_takes_arrays_in_the_models_input_form(run, files):  # noqa: F811
    images, _ = files
    model = ctframe.load_model(run)
    by_path = model.predict(sorted(images.rglob("*.npy"))[:3])
    arrays = np.stack([np.load(p) for p in sorted(images.rglob("*.npy"))[:3]])
    by_array = model.predict(arrays)
    np.testing.assert_array_equal(by_array.probabilities, by_path.probabilities)
    assert by_array.files == ("", "", "")
    with pytest.raises(ctframe.DataError, match="uint8 RGB"):
        model.predict(arrays.astype(np.float32))


def test_the_docs_examples_run_as_written(toy_site, run, files, tmp_path, monkeypatch):  # noqa: F811
    """docs/python.md's two examples, with the toy recipe, run and images in place of the quickstart's."""
    images, _ = files
    one = next(images.rglob("*.npy"))
    recipe = tmp_path / "toy.toml"
    recipe.write_text(toy_recipe_text(evaluation={"bootstrap": 0}, dataset={"samples": 16}))
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "python.md").read_text(), flags=re.S)
    assert len(blocks) == 2
    swaps = {
        '"recipes/quickstart.toml"': repr(str(recipe)),
        "trainer__initial__epochs=5": "trainer__epochs=2",
        '"runs/quickstart-20261204-101500/models/finetuned.json"': repr(str(run)),
        '["scans/new/", "scans/x.png"]': repr([str(images), str(one)]),
    }
    names: dict = {}
    for block in blocks:
        for old, new in swaps.items():
            block = block.replace(old, new)
        exec(compile(block, "docs/python.md", "exec"), names)  # noqa: S102 - the documentation's own code
    assert names["run"].report.is_file() and names["model"].info.key
    assert len(names["answer"]) == len(list(images.rglob("*.npy"))) + 1
