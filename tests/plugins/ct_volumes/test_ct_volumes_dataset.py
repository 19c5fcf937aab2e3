"""The ct_volumes dataset on a tiny synthetic set: labels, patient-wise splits, pseudonymous ids,
windows and slice rules, folds, and the one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from ctframe_ct_volumes.factory import build, check
from ctframe_ct_volumes.options import CtVolumesOptions
from ctframe_ct_volumes.pseudonym import KEY_ENV
from ctframe_ct_volumes.synthetic import write_synthetic_set

from ctframe import BuildContext, DataError

KEY = "0123456789abcdef" * 4
MARKER = "SECRETX"


@pytest.fixture(scope="module")
def ct_set(tmp_path_factory) -> Path:
    """6 patients (3 per class) x 4 slices x 16 px; every identifying tag holds MARKER."""
    root = tmp_path_factory.mktemp("ct") / "set"
    write_synthetic_set(root, patients=6, slices=4, size=(16, 16), marker=MARKER)
    return root


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


def options(root: Path, **changes) -> CtVolumesOptions:
    values = {
        "root": root,
        "labels": root / "labels.csv",
        "classes": ["normal", "nodule"],
        "positive_class": "nodule",
        "image_size": 16,
        **changes,
    }
    return CtVolumesOptions.model_validate(values, context={"base_dir": root})


def context(root: Path, fold: tuple[int, int] | None = None) -> BuildContext:
    return BuildContext(seed=0, device="cpu", recipe_dir=root, fold=fold)


def _patients(data, split: str) -> set[str]:
    return {data.groups[sample] for sample in getattr(data, split).sample_ids}


def test_splits_keep_each_patient_on_one_side_and_ids_are_pseudonyms(ct_set):
    data = build(options(ct_set), context(ct_set))
    sides = [_patients(data, split) for split in ("train", "val", "test")]
    assert all(sides) and not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert sum(len(getattr(data, split)) for split in ("train", "val", "test")) == 6 * 4
    image, label, sample_id = data.test[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 16, 16) and label in (0, 1)
    assert sample_id.startswith("se-") and sample_id[-5] == "/" and sample_id[-4:].isdigit()
    assert all(group.startswith("p-") for group in data.groups.values())
    assert data.files == {sample: sample for sample in data.groups}
    shown = json.dumps([data.files, data.groups, data.summary])
    assert MARKER not in shown and str(ct_set) not in shown and "case0" not in shown
    assert data.summary["patients"] == 6 and data.summary["series"] == 6 and data.summary["lines"]


def test_labels_by_series_and_from_class_folders(ct_set, tmp_path):
    by_patient = build(options(ct_set), context(ct_set))
    # the same labels keyed by series pseudonym (a CSV may name raw ids or pseudonyms)
    series = {}
    for split in (by_patient.train, by_patient.val, by_patient.test):
        series.update({split.sample_ids[i].split("/")[0]: split[i][1] for i in range(len(split))})
    table = tmp_path / "series.csv"
    table.write_text(
        "series_id,label\n" + "".join(f"{s},{['normal', 'nodule'][y]}\n" for s, y in series.items())
    )
    by_series = build(options(ct_set, labels=table, label_key="series"), context(ct_set))
    assert len(by_series.train) + len(by_series.val) + len(by_series.test) == len(series) * 4
    # class folders: move each case under its class's folder
    folders = tmp_path / "folders"
    for line in (ct_set / "labels.csv").read_text().splitlines()[1:]:
        patient, label = line.split(",")
        case = f"case{int(patient[len(MARKER) :]):03d}"
        shutil.copytree(ct_set / case, folders / label / case)
    by_folder = build(options(folders, labels=None), context(folders))
    assert by_folder.summary["counts"] == by_patient.summary["counts"]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("patient_id,label\nNOBODY,normal\n", "rows 2 name a patient"),
        (f"patient_id,label\n{MARKER}0000,normal\n{MARKER}0000,nodule\n", "two labels in rows 2 and 3"),
        ("patient_id,label\nX,cat\n", "not one of classes"),
        ("id,label\nX,normal\n", "needs the columns patient_id and label"),
    ],
)
def test_bad_label_tables_are_refused_in_one_line(ct_set, tmp_path, table, message):
    path = tmp_path / "labels.csv"
    path.write_text(table)
    with pytest.raises(DataError, match=message) as error:
        build(options(ct_set, labels=path), context(ct_set))
    assert "\n" not in str(error.value) and "NOBODY" not in str(error.value)


def test_unlabelled_series_are_left_out_and_counted(tmp_path):
    root = tmp_path / "set"
    write_synthetic_set(root, patients=7, slices=2, size=(16, 16))
    path = tmp_path / "labels.csv"
    lines = (root / "labels.csv").read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")  # the last patient has no label
    data = build(options(root, labels=path), context(root))
    assert data.summary["series"] == 6 and data.summary["skipped"]["series without a label"] == 1


def test_a_missing_key_is_one_line(ct_set, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    for step in (check, build):
        with pytest.raises(DataError, match="no pseudonym key") as error:
            step(options(ct_set), context(ct_set))
        assert "\n" not in str(error.value)
    data = build(options(ct_set, raw_ids=True), context(ct_set))  # raw ids on request, with a warning
    assert any(MARKER in group for group in data.groups.values())


def test_window_and_slice_options_change_the_images(ct_set):
    lung = build(options(ct_set), context(ct_set))
    bone = build(options(ct_set, window="400,1800"), context(ct_set))
    rgb = build(options(ct_set, windows=["lung", "mediastinum", "bone"]), context(ct_set))
    first = lung.test.sample_ids[0]
    image_of = {
        name: dict(zip(d.test.sample_ids, (d.test[i][0] for i in range(len(d.test))), strict=True))
        for name, d in (("lung", lung), ("bone", bone), ("rgb", rgb))
    }
    assert not torch.equal(image_of["lung"][first], image_of["bone"][first])
    assert torch.equal(image_of["rgb"][first][0], image_of["lung"][first][0])  # R is the lung window
    assert torch.equal(image_of["rgb"][first][2], image_of["bone"][first][2])  # B the bone window
    assert torch.equal(image_of["lung"][first][0], image_of["lung"][first][1])  # one window: grey
    every = build(options(ct_set, slices="every", slice_step=2), context(ct_set))
    assert {s[-4:] for s in every.test.sample_ids} == {"0000", "0002"}
    big = build(options(ct_set, image_size=24), context(ct_set))
    assert big.test[0][0].shape == (3, 24, 24)


def test_folds_test_every_patient_once(ct_set):
    tested = []
    for fold in range(2):
        data = build(options(ct_set), context(ct_set, fold=(fold, 2)))
        assert data.summary["fold"] == [fold, 2]
        tested += sorted(_patients(data, "test"))
    assert len(tested) == len(set(tested)) == 6
