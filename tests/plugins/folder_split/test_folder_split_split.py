"""The split: seeded, stratified, group-aware, recorded, and never silently redone."""

from __future__ import annotations

import csv
import os
import shutil

import pytest
import torch
from folder_split_support import CLASSES, build, image_bytes, make_folder, split_of

from ctframe import DataError


def manifest(run) -> dict[str, dict[str, str]]:
    with open(run / "split_manifest.csv", newline="") as handle:
        return {row["file"]: row for row in csv.DictReader(handle)}


def test_split_is_stratified_and_covers_every_file(tmp_path):
    make_folder(tmp_path, per_class=40)
    data = build(tmp_path, test_fraction=0.3, val_fraction=0.15)
    counts = data.summary["counts"]
    for class_name in CLASSES:
        assert counts["test"][class_name] == 12  # 0.3 * 40
        assert counts["val"][class_name] == 4  # 0.15 * 28, rounded to whole images
        assert counts["train"][class_name] == 24
    splits = split_of(data)
    assert len(splits) == 80
    labels = {sid: label for sid, label in zip(data.train.sample_ids, data.train.labels, strict=True)}
    assert all(labels[sid] == CLASSES.index(sid.split("/")[0]) for sid in labels)


def test_same_files_and_seed_give_the_same_split_whatever_the_listing_order(tmp_path, monkeypatch):
    make_folder(tmp_path / "a", per_class=15)
    reference = split_of(build(tmp_path / "a", seed=7))
    torch.manual_seed(123)  # the split must not draw from torch's global random state
    real_scandir = os.scandir

    def reversed_scandir(path):
        return iter(sorted(real_scandir(path), key=lambda entry: entry.name, reverse=True))

    monkeypatch.setattr(os, "scandir", reversed_scandir)
    assert split_of(build(tmp_path / "a", seed=7)) == reference
    # Same content under other names: the order comes from content hashes, so nothing moves.
    renamed = tmp_path / "b"
    for class_name in CLASSES:
        (renamed / class_name).mkdir(parents=True)
        for path in (tmp_path / "a" / class_name).iterdir():
            shutil.copy(path, renamed / class_name / f"renamed-{path.name}")
    moved = split_of(build(renamed, seed=7))
    assert {sid.replace("renamed-", ""): split for sid, split in moved.items()} == reference
    assert split_of(build(tmp_path / "a", seed=8)) != reference


def test_exact_duplicates_always_share_a_split(tmp_path):
    make_folder(tmp_path, per_class=12)
    twin = image_bytes(5000)
    for name in ("twin-a.png", "twin-b.png"):
        (tmp_path / "COVID" / name).write_bytes(twin)
    (tmp_path / "non-COVID" / "twin-c.png").write_bytes(twin)  # same picture, other label
    for seed in range(12):
        data = build(tmp_path, seed=seed)
        splits = split_of(data)
        assert splits["COVID/twin-a.png"] == splits["COVID/twin-b.png"] == splits["non-COVID/twin-c.png"]
    assert data.summary["duplicates"]["sets"] == 1 and data.summary["duplicates"]["across_classes"] == 1


def test_regex_groups_stay_in_one_split(tmp_path):
    for class_name in CLASSES:
        folder = tmp_path / class_name
        folder.mkdir(parents=True)
        for patient in range(8):
            for slice_number in range(3):
                seed = hash((class_name, patient, slice_number)) % 10_000
                (folder / f"p{patient}-s{slice_number}.png").write_bytes(image_bytes(seed))
    data = build(tmp_path, group_by=r"regex:^(p\d+)-")
    splits = split_of(data)
    for class_name in CLASSES:
        for patient in range(8):
            assert len({splits[f"{class_name}/p{patient}-s{k}.png"] for k in range(3)}) == 1
    assert data.summary["groups"]["test"]["COVID"] >= 1
    assert sum(data.summary["groups"][s]["COVID"] for s in ("train", "val", "test")) == 8


def test_csv_groups_with_a_class_column_stay_in_one_split(tmp_path):
    make_folder(tmp_path, per_class=12)
    table = tmp_path / "patients.csv"
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class", "file", "patient_id"])
        for class_name in CLASSES:
            for k in range(12):
                writer.writerow([class_name, f"img{k:03d}.png", f"{class_name}-{k // 3}"])
    data = build(tmp_path, group_by=str(table), group_column="patient_id")
    splits = split_of(data)
    for class_name in CLASSES:
        for patient in range(4):
            assert (
                len({splits[f"{class_name}/img{k:03d}.png"] for k in range(3 * patient, 3 * patient + 3)})
                == 1
            )


def test_manifest_is_written_and_a_resumed_run_reuses_it(tmp_path):
    make_folder(tmp_path / "data", per_class=10)
    run = tmp_path / "run"
    first = build(tmp_path / "data", run_dir=run, seed=1)
    rows = manifest(run)
    assert set(rows) == set(split_of(first))
    assert {row["status"] for row in rows.values()} == {"ok"}
    assert all(len(row["sha256"]) == 64 and row["group"] for row in rows.values())
    # Another seed on resume: the recorded split wins.
    second = build(tmp_path / "data", run_dir=run, seed=99)
    assert split_of(second) == split_of(first) and second.summary["reused_recorded_split"]


@pytest.mark.parametrize("change", ["added", "removed", "modified"])
def test_changed_files_are_detected_not_silently_resplit(tmp_path, change):
    data_root = make_folder(tmp_path / "data", per_class=10)
    run = tmp_path / "run"
    build(data_root, run_dir=run)
    if change == "added":
        (data_root / "COVID" / "new.png").write_bytes(image_bytes(4242))
    elif change == "removed":
        (data_root / "COVID" / "img003.png").unlink()
    else:
        (data_root / "non-COVID" / "img004.png").write_bytes(image_bytes(4343))
    with pytest.raises(DataError, match=f"1 {change} ") as error:
        build(data_root, run_dir=run)
    assert "\n" not in str(error.value) and "start a new run" in str(error.value)


def test_reuse_manifest_of_an_earlier_run(tmp_path):
    make_folder(tmp_path / "data", per_class=10)
    build(tmp_path / "data", run_dir=tmp_path / "run1", seed=3)
    again = build(
        tmp_path / "data",
        run_dir=tmp_path / "run2",
        seed=4,
        reuse_manifest=tmp_path / "run1/split_manifest.csv",
    )
    assert manifest(tmp_path / "run2") == manifest(tmp_path / "run1")
    assert again.summary["reused_recorded_split"]


@pytest.mark.parametrize("mode", ["hardlink", "copy"])
def test_materialize_lays_out_the_split_idempotently(tmp_path, mode):
    make_folder(tmp_path / "data", per_class=8)
    run = tmp_path / "run"
    data = build(tmp_path / "data", run_dir=run, materialize=mode)
    target = run / "split"
    for sid, split in split_of(data).items():
        placed = target / split / sid
        assert placed.read_bytes() == (tmp_path / "data" / sid).read_bytes()
        if mode == "hardlink":
            assert os.path.samefile(placed, tmp_path / "data" / sid)
    stale = target / "train" / "COVID" / "stale.png"
    stale.write_bytes(b"left over")
    again = build(tmp_path / "data", run_dir=run, materialize=mode)
    assert again.summary["materialized"]["unchanged"] == 16 and again.summary["materialized"]["removed"] == 1
    assert not stale.exists()
    foreign = tmp_path / "foreign"
    (foreign / "x").mkdir(parents=True)
    with pytest.raises(DataError, match="did not put there"):
        build(tmp_path / "data", materialize=mode, materialize_dir=foreign)


def test_a_damaged_manifest_is_refused(tmp_path):
    make_folder(tmp_path / "data", per_class=6)
    run = tmp_path / "run"
    build(tmp_path / "data", run_dir=run)
    text = (run / "split_manifest.csv").read_text()
    (run / "split_manifest.csv").write_text(text.replace(",test,", ",holdout,", 1))
    with pytest.raises(DataError, match="unknown splits"):
        build(tmp_path / "data", run_dir=run)
    (run / "split_manifest.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="is not a split manifest"):
        build(tmp_path / "data", run_dir=run)


def test_a_class_made_only_of_copies_of_another_class_is_refused(tmp_path):
    make_folder(tmp_path, per_class=6)
    for k in range(2):  # non-COVID's two images are copies of COVID images: they join COVID's groups
        (tmp_path / "non-COVID" / f"img{k:03d}.png").write_bytes(
            (tmp_path / "COVID" / f"img{k:03d}.png").read_bytes()
        )
    for path in sorted((tmp_path / "non-COVID").iterdir())[2:]:
        path.unlink()
    with pytest.raises(DataError, match="'non-COVID' has only 0 independent group"):
        build(tmp_path)
