"""``ctframe cv``: group-disjoint folds that test every image once, pooled out-of-fold predictions, and
a cross-validation killed with SIGKILL mid-fold that resumes to the same result.

Tiny real runs (folder_split demo data at 32 px, a tiny ResNetV2 with random weights, 2 + 1 epochs), in
subprocesses with one thread so that the interrupted and the uninterrupted run do the same arithmetic.
Probabilities are fp32 (the evaluation default); training is pinned to fp32 too.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

PLUGINS = "folder_split,resnet_v2,dense_head,two_phase,classification_metrics"
FOLDS = 2
# Each subprocess registers a tiny ResNetV2 as the backbone component "tinyv2" (the plugin's code, 4-8-16-32
# wide stacks of 2 blocks) before running the command line: cross-validation does not depend on the width.
MAIN = (
    "import sys, ctframe_resnet_v2; from ctframe_resnet_v2.model import ARCHITECTURES, Architecture;"
    "ARCHITECTURES['tinyv2'] = Architecture((2, 2, 2, 2), 0, filters=(4, 8, 16, 32));"
    "ctframe_resnet_v2.DESCRIPTIONS['tinyv2'] = 'a tiny ResNetV2 for tests';"
    "from ctframe.commands.main import main; sys.exit(main())"
)


def _settings(demo: Path, group_by: str = "sequence") -> list[str]:
    values = [
        f"dataset.root={demo}",
        f"dataset.group_by={group_by}",
        "dataset.image_size=32",
        "backbone.component=tinyv2",
        "dataset.cache=none",
        "head.units=16",
        "trainer.initial.epochs=2",
        "trainer.finetuned.epochs=1",
        "trainer.precision=fp32",
        "trainer.progress=false",
        "trainer.tensorboard=false",
        "evaluation.bootstrap=50",
    ]
    return [argument for value in values for argument in ("--set", value)]


def _environment() -> dict[str, str]:
    threads = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return {**os.environ, "CTFRAME_PLUGINS": PLUGINS, "COLUMNS": "300", **threads}


def _cv(arguments: list[str]) -> subprocess.Popen:
    command = [sys.executable, "-c", MAIN, *arguments]
    return subprocess.Popen(
        command, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]
    return output


def _only_folder(parent: Path) -> Path:
    (folder,) = [p for p in parent.iterdir() if p.is_dir()]
    return folder


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    from ctframe_folder_split.demo import generate_demo_data

    return generate_demo_data(tmp_path_factory.mktemp("cv") / "demo", per_class=36, size=48)


@pytest.fixture(scope="module")
def reference(demo, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("reference")
    recipe = str(REPO / "recipes" / "quickstart.toml")
    _finish(_cv(["cv", recipe, "--folds", str(FOLDS), "-o", str(output), *_settings(demo)]))
    return _only_folder(output)


def test_folds_are_group_disjoint_and_test_every_image_once(reference):
    tested: list[str] = []
    every: set[str] | None = None
    for fold in range(FOLDS):
        manifest = _rows(reference / f"fold-{fold}" / "split_manifest.csv")
        files = {row["file"] for row in manifest if row["split"]}
        every = files if every is None else every
        assert files == every  # every fold splits the same images
        test = [row for row in manifest if row["split"] == "test"]
        tested += [row["file"] for row in test]
        test_groups = {row["group"] for row in test}
        assert not test_groups & {row["group"] for row in manifest if row["split"] in ("train", "val")}
        summary = json.loads((reference / f"fold-{fold}" / "split_summary.json").read_text())
        assert summary["fold"] == [fold, FOLDS]
    assert sorted(tested) == sorted(every)  # each image is test data exactly once


def test_pooled_predictions_are_the_union_of_the_folds(reference):
    for key in ("initial", "finetuned"):
        pooled = {row["file"]: row for row in _rows(reference / f"predictions_{key}.csv")}
        files = [reference / f"fold-{fold}" / f"predictions_{key}.csv" for fold in range(FOLDS)]
        folds = [row for path in files for row in _rows(path)]
        assert len(pooled) == len(folds)
        for row in folds:
            assert pooled[row["file"]]["p_non-COVID"] == row["p_non-COVID"]
            assert pooled[row["file"]]["group"] == row["group"] != ""
    summary = json.loads((reference / "folds.json").read_text())
    accuracy = summary["per_fold"]["finetuned"]["accuracy"]
    assert len(accuracy["folds"]) == FOLDS
    assert min(accuracy["folds"]) <= accuracy["mean"] <= max(accuracy["folds"])
    metrics = json.loads((reference / "metrics.json").read_text())
    assert "cluster bootstrap" in metrics["bootstrap"]["method"]  # groups are resampled, not images
    assert (reference / "report.html").is_file()


def test_sigkill_mid_fold_then_resume_gives_the_same_result(demo, reference, tmp_path):
    recipe = str(REPO / "recipes" / "quickstart.toml")
    process = _cv(["cv", recipe, "--folds", str(FOLDS), "-o", str(tmp_path), *_settings(demo)])
    deadline = time.monotonic() + 300
    while True:
        folders = [p for p in tmp_path.iterdir() if p.is_dir()]
        if folders and (folders[0] / "fold-1" / "checkpoints" / "initial_last.pt").exists():
            break
        assert process.poll() is None, process.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "fold 1 never started"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    root = _only_folder(tmp_path)
    assert not (root / "metrics.json").exists()
    _finish(_cv(["cv", "--resume", str(root)]))
    for key in ("initial", "finetuned"):
        assert _rows(root / f"predictions_{key}.csv") == _rows(reference / f"predictions_{key}.csv")
    got = json.loads((root / "metrics.json").read_text())["models"]
    expected = json.loads((reference / "metrics.json").read_text())["models"]
    assert got == expected


def test_image_level_and_grouped_cv_side_by_side(demo, reference, tmp_path):
    recipe = str(REPO / "recipes" / "quickstart.toml")
    settings = _settings(demo, group_by="regex:^(.*)$")  # each file its own group: image-level folds
    _finish(_cv(["cv", recipe, "--folds", str(FOLDS), "-o", str(tmp_path), *settings]))
    image_level = _only_folder(tmp_path)
    output = _finish(_cv(["compare", str(image_level), str(reference)]))
    assert image_level.name in output and reference.name in output
