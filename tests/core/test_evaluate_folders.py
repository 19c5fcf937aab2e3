"""``ctframe evaluate --data FOLDER`` on a release laid out like UCSD's (issue 25, item 4): sub-folders
without image files (metadata, split lists) are left out and named once, ``--classes`` picks the class
folders, and a name that is no sub-folder is one line. The grouped toy run and its .npy images."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np

from ctframe.commands.main import main
from tests.core.hostile_support import invoke, refused, tree
from tests.core.test_group_predictions import files, run, toy  # noqa: F401  (module fixtures)


def _release(images, root):
    """The toy's class folders beside a metadata folder, a split-list folder and an empty one."""
    shutil.copytree(images, root)
    (root / "meta").mkdir()
    (root / "meta" / "patients.csv").write_text("file,patient\n")
    (root / "TrainingTXT").mkdir()
    (root / "TrainingTXT" / "train.txt").write_text("a.png\n")
    (root / "empty").mkdir()
    return root


def test_folders_without_images_are_left_out_and_named(run, files, tmp_path, caplog):  # noqa: F811
    images, _ = files
    data = _release(images, tmp_path / "release")
    with caplog.at_level(logging.WARNING, logger="ctframe"):
        assert main(["evaluate", str(run), "--data", str(data), "--name", "release"]) == 0
    said = [r.getMessage() for r in caplog.records if "ignored sub-folders" in r.getMessage()]
    assert said == ["ignored sub-folders without image files: TrainingTXT, empty, meta"]
    source = json.loads((run / "external" / "release" / "source.json").read_text())
    assert source["ignored_folders"] == ["TrainingTXT", "empty", "meta"]
    assert set(source["class_counts"]) == {"dark", "bright"}


def test_classes_picks_the_class_folders(run, files, tmp_path):  # noqa: F811
    images, _ = files
    data = _release(images, tmp_path / "release")
    other = data / "other"
    other.mkdir()
    np.save(other / "x.npy", np.zeros((3, 8, 8), dtype=np.uint8))  # images, but not a class of the model
    argv = ["evaluate", str(run), "--data", str(data), "--name", "picked", "--classes", "dark,bright"]
    assert main(argv) == 0
    source = json.loads((run / "external" / "picked" / "source.json").read_text())
    assert set(source["class_counts"]) == {"dark", "bright"}


def test_a_class_that_is_no_sub_folder_is_one_line(run, files, tmp_path, monkeypatch):  # noqa: F811
    images, _ = files
    data = _release(images, tmp_path / "release")
    before = tree(tmp_path)
    code, out, err = invoke(
        ["evaluate", str(run), "--data", str(data), "--name", "x", "--classes", "dark,cats"]
    )
    refused(code, out, err, ["--classes 'cats'", "no such sub-folder", "bright, dark"])
    assert tree(tmp_path) == before


def test_a_mapped_class_and_another_group_unit_are_findings(run, files, tmp_path):  # noqa: F811
    images, _ = files
    data = tmp_path / "renamed"
    shutil.copytree(images / "dark", data / "CT_dark")
    shutil.copytree(images / "bright", data / "bright")
    argv = ["evaluate", str(run), "--data", str(data), "--name", "mapped", "--class-map", "CT_dark=dark"]
    assert main(argv) == 0
    findings = json.loads((run / "external" / "mapped" / "metrics.json").read_text())["findings"]
    said = [f["message"] for f in findings if f["code"] == "data_differs"]
    assert any("mapped onto the model's (CT_dark -> dark)" in line for line in said), said
    key = next(iter(json.loads((run / "metrics.json").read_text())["models"]))
    trained = json.loads((run / "models" / f"{key}.json").read_text())
    unit = trained["group_rule"]["unit"]
    assert any(f"decide per {unit} but this data is grouped per folder" in line for line in said), said
