"""``--json`` on the commands that print tables (issue 25, item 4): stdout holds one JSON object with the
folder and its metrics.json; the tables stay on stderr."""

from __future__ import annotations

import json

from tests.core.hostile_support import invoke
from tests.core.test_group_predictions import files, run, toy  # noqa: F401  (module fixtures)
from tests.toy.recipe import toy_recipe_text


def test_run_json(toy_site, tmp_path):
    recipe = tmp_path / "toy.toml"
    recipe.write_text(
        toy_recipe_text(evaluation={"bootstrap": 0}, dataset={"samples": 16}, trainer={"epochs": 2})
    )
    code, out, err = invoke(["run", str(recipe), "--output", str(tmp_path / "runs"), "--json"])
    assert code == 0, err
    answer = json.loads(out)
    assert answer["run_directory"].startswith(str(tmp_path / "runs"))
    assert set(answer["metrics"]["models"]) == {"toy"} and "findings" in answer["metrics"]


def test_evaluate_json(run, files):  # noqa: F811
    images, _ = files
    code, out, err = invoke(["evaluate", str(run), "--data", str(images), "--name", "as-json", "--json"])
    assert code == 0, err
    answer = json.loads(out)
    assert answer["external_evaluation"].endswith("as-json")
    assert answer["metrics"]["models"]
