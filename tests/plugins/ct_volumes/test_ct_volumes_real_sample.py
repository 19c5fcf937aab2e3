"""The whole command chain on the shared real CT sample (skipped, saying so, when it is absent):
audit, validate, run, cv, predict (a DICOM folder, a NIfTI file, single DICOM files), evaluate,
explain and export, on real files with their quirks (JPEG 2000 without UIDs, no Modality, -3024
padding, NIfTI beside DICOM).

Labels are by path and anatomical: "chest" for the series that show lungs, "other" for the
abdominal and small series. Two volumes are left unlabelled on purpose: ``series.nii.gz`` is the
NIfTI export of a labelled DICOM series and ``example_ct_sm`` a crop of ``example_ct``; labelling
them would put one scan on both sides of the split under two ids.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from ctframe_ct_volumes.pseudonym import KEY_ENV

from ctframe.commands.main import main
from tests.conftest import REPO

pytestmark = pytest.mark.slow

PLUGINS = "ct_volumes,resnet_v2,dense_head,two_phase,classification_metrics,export,gradcam"
RECIPE = REPO / "recipes" / "ct_volumes.toml"
LABELS = {
    "chest": [
        "cip-copdgene-ct64/series",
        "cip-copdgene-ct64/second-subject-2-slices",
        "lungmask-2-slices",
        "covid19-ny-sbu-slices/A062055/axial",
        "covid19-ny-sbu-slices/A002304/axial",
    ],
    "other": [
        "dcmqi-3-slices",
        "totalsegmentator/series-j2k",
        "totalsegmentator/example_ct.nii.gz",
        "pydicom-ct-small",
    ],
}
SETTINGS = [
    'dataset.classes=["chest", "other"]',
    "dataset.positive_class=chest",
    "dataset.label_key=path",
    "dataset.slices=every",
    "dataset.slice_step=4",
    "dataset.image_size=32",
    "backbone.component=resnet50v2",
    "backbone.weights=none",
    "head.units=16",
    "trainer.initial.epochs=1",
    "trainer.finetuned.epochs=1",
    "trainer.progress=false",
    "evaluation.bootstrap=20",
]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> dict:
    from tests.plugins.ct_volumes.conftest import SAMPLE

    if not SAMPLE.is_dir():
        pytest.skip(f"shared CT sample data not present at {SAMPLE}")
    folder = tmp_path_factory.mktemp("ct-real")
    labels = folder / "labels.csv"
    labels.write_text(
        "path,label\n" + "".join(f"{p},{label}\n" for label, paths in LABELS.items() for p in paths)
    )
    overrides = [
        a
        for value in (f"dataset.root={SAMPLE}", f"dataset.labels={labels}", *SETTINGS)
        for a in ("--set", value)
    ]
    external = folder / "external.toml"
    external.write_text(
        f'[dataset]\ncomponent = "ct_volumes"\nroot = "{SAMPLE}"\nlabels = "{labels}"\nlabel_key = "path"\n'
        'classes = ["chest", "other"]\npositive_class = "chest"\nimage_size = 32\n'
        'slices = "every"\nslice_step = 4\n'
    )
    out, codes = folder / "out", {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CTFRAME_PLUGINS", PLUGINS)
        patch.setenv(KEY_ENV, "r" * 40)
        torch.set_num_threads(1)
        codes["audit"] = main(["audit", str(SAMPLE)])
        codes["validate"] = main(["validate", str(RECIPE), *overrides])
        codes["run"] = main(["run", str(RECIPE), "--output", str(folder / "runs"), *overrides])
        (run,) = (folder / "runs").iterdir()
        codes["cv"] = main(["cv", str(RECIPE), "--folds", "2", "--output", str(folder / "cv"), *overrides])
        codes["folder"] = main(
            ["predict", str(run), str(SAMPLE / "lungmask-2-slices"), "-o", str(out / "folder.csv")]
        )
        nifti = SAMPLE / "cip-copdgene-ct64" / "series.nii.gz"
        codes["nifti"] = main(["predict", str(run), str(nifti), "-o", str(out / "nifti.csv")])
        files = sorted(str(p) for p in (SAMPLE / "dcmqi-3-slices").iterdir() if p.suffix == ".dcm")
        codes["files"] = main(["predict", str(run), *files, "-o", str(out / "files.csv")])
        codes["evaluate"] = main(["evaluate", str(run), "--data", str(external), "--name", "again"])
        codes["explain"] = main(
            ["explain", str(run), str(SAMPLE / "totalsegmentator" / "series-j2k"), "-o", str(out / "explain")]
        )
        codes["export"] = main(["export", str(run), "--format", "onnx", "-o", str(out / "model.onnx")])
    return {"codes": codes, "run": run, "out": out, "cv": folder / "cv", "files": files}


def test_every_command_succeeds_on_real_files(chain):
    assert chain["codes"] == dict.fromkeys(chain["codes"], 0)


def test_the_run_keeps_patients_apart_and_leaves_the_duplicate_volumes_out(chain):
    manifest = _rows(chain["run"] / "volumes_manifest.csv")
    sides: dict[str, set[str]] = {}
    for row in manifest:
        sides.setdefault(row["patient"], set()).add(row["split"])
    assert all(len(splits) == 1 for splits in sides.values())
    assert len(sides) == 9  # 5 chest + 4 other patients; the NIfTI twin and the crop are unlabelled
    summary = json.loads((chain["run"] / "split_summary.json").read_text())
    assert summary["skipped"]["series without a label"] == 2


def test_predict_reads_a_folder_a_nifti_file_and_loose_dicom_files(chain):
    out = chain["out"]
    assert len(_rows(out / "folder.csv")) == 1  # 2 slices, every 4th: slice 0
    assert len(_rows(out / "nifti.csv")) == 20  # 79 slices, every 4th
    assert len(_rows(out / "files.csv")) == 1 and len(chain["files"]) == 3
    assert len(_rows(out / "explain" / "explanations.csv")) == 5  # 20 JPEG 2000 slices, every 4th


def test_cv_pools_out_of_fold_predictions_over_every_labelled_series(chain):
    cv = chain["cv"]
    (folder,) = [p for p in cv.iterdir() if p.is_dir()] if not (cv / "folds.json").is_file() else [cv]
    folds = json.loads((folder / "folds.json").read_text())
    assert len([p for p in folder.iterdir() if p.name.startswith("fold-")]) == 2, folds
    pooled = _rows(folder / "predictions_finetuned.csv")
    manifest = _rows(chain["run"] / "volumes_manifest.csv")
    assert len(pooled) == len(manifest)  # every labelled slice is out of fold exactly once
    assert {row["sample_id"] for row in pooled} == {row["sample_id"] for row in manifest}


def test_the_export_carries_no_local_path(chain):
    for written in (chain["out"] / "model.onnx", chain["out"] / "model.onnx.json"):
        data = written.read_bytes()
        assert b"ct-dicom-sample" not in data and b"labels.csv" not in data, written.name
