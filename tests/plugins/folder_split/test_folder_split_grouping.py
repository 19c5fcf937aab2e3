"""folder_split with group_by="sequence": near-copy links, DataSplits.groups, the group report."""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from folder_split_support import CLASSES, build, make_folder
from PIL import Image

_spec = importlib.util.spec_from_file_location(
    "sequence_series_generator", Path(__file__).with_name("test_sequence_grouping.py")
)
series = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(series)


def planted_folder(root: Path, seed: int = 3) -> Path:
    """Per class, generated scan series numbered in order, then near-copies of slices of 8 different
    series numbered after the last file (far from their originals), as greyscale PNGs."""
    rng = np.random.default_rng(seed)
    for class_name, stem in zip(CLASSES, ("Covid", "Non-Covid"), strict=True):
        images, runs = series.make_series(rng, n_runs=12)
        images, _, _ = series.plant_copies(rng, images, runs, 8)
        folder = root / class_name
        folder.mkdir(parents=True)
        for k, image in enumerate(images, 1):
            Image.fromarray(image[:, :, 0]).save(folder / f"{stem} ({k}).png")
    return root


def manifest_groups(run: Path) -> dict[str, str]:
    with open(run / "split_manifest.csv", newline="") as handle:
        return {row["file"]: row["group"] for row in csv.DictReader(handle)}


def grouped(root: Path, run: Path | None = None, seed: int = 0, **overrides):
    values = {"image_size": 48, "leakage_check": True, "group_by": "sequence"}
    return build(root, run_dir=run, seed=seed, **{**values, **overrides})


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    return planted_folder(tmp_path_factory.mktemp("planted"))


def test_near_copy_links_make_the_leakage_check_quiet_where_runs_alone_leak(planted):
    louder = 0
    for seed in range(4):
        runs_only = grouped(planted, seed=seed, link_near_copies=False)
        louder += runs_only.summary["leakage"]["loud"]
        linked = grouped(planted, seed=seed)
        leakage = linked.summary["leakage"]
        assert leakage["count_above"] == 0 and not leakage["loud"], seed  # by construction
        links = linked.summary["grouping"]["links"]
        assert all(links[c]["runs_joined"] >= 1 for c in CLASSES)
        fewer = linked.summary["grouping"]["per_class"]
        more = runs_only.summary["grouping"]["per_class"]
        assert all(fewer[c]["groups"] < more[c]["groups"] for c in CLASSES)
    assert louder >= 3  # measured: 4 of 4 loud (11-23 test images with a planted copy in training)


def test_groups_map_every_split_sample_to_its_manifest_group(planted, tmp_path):
    data = grouped(planted, run=tmp_path / "run")
    recorded = manifest_groups(tmp_path / "run")
    ids = [sid for split in ("train", "val", "test") for sid in getattr(data, split).sample_ids]
    assert set(data.groups) == set(ids) == set(recorded)
    assert all(data.groups[sid] == recorded[sid] for sid in ids)
    sides: dict[str, set[str]] = {}
    for split in ("train", "val", "test"):
        for sid in getattr(data, split).sample_ids:
            sides.setdefault(data.groups[sid], set()).add(split)
    assert all(len(found) == 1 for found in sides.values())
    summary = json.loads(json.dumps(data.summary))  # JSON-ready
    grouping = summary["grouping"]
    assert grouping["mode"] == "sequence" and grouping["near_copy_level"] == 0.95
    for class_name in CLASSES:
        entry = grouping["per_class"][class_name]
        assert entry["images"] == sum(data.summary["counts"][s][class_name] for s in ("train", "val", "test"))
        assert sum(entry["sizes"].values()) == entry["groups"]
        assert 0 < entry["largest_share"] <= 1 and entry["largest_group"].startswith(class_name)
    assert [line.split(":")[0] for line in grouping["lines"]] == CLASSES
    # A resumed run reuses the recorded split, and the groups with it.
    again = grouped(planted, run=tmp_path / "run")
    assert again.summary["reused_recorded_split"] and dict(again.groups) == dict(data.groups)


def test_one_group_holding_too_much_of_a_class_is_a_warning(planted, caplog):
    with caplog.at_level(logging.WARNING, logger="ctframe.test"):
        data = grouped(planted, max_group_share=0.05)
    warnings = data.summary["grouping"]["warnings"]
    assert len(warnings) == 2 and all("max_group_share 5%" in w for w in warnings)
    assert any("chained several patients" in record.getMessage() for record in caplog.records)
    assert grouped(planted).summary["grouping"]["warnings"] == []  # the default 20% is not reached


def test_without_group_by_there_are_no_groups_and_csv_groups_are_filled(tmp_path):
    make_folder(tmp_path / "data", per_class=12)
    data = build(tmp_path / "data")
    assert dict(data.groups) == {} and "grouping" not in data.summary
    table = tmp_path / "patients.csv"
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "group"])
        for class_name in CLASSES:
            for k in range(12):
                writer.writerow([f"{class_name}/img{k:03d}.png", f"{class_name}-p{k // 3}"])
    patients = build(tmp_path / "data", group_by=str(table))
    assert set(patients.groups.values()) == {f"{c}-p{k}" for c in CLASSES for k in range(4)}
    assert patients.summary["grouping"]["per_class"]["COVID"]["groups"] == 4
    assert "links" not in patients.summary["grouping"]
    # Patients of 3 in 12 images (25%) pass the default 20%: a warning, but not about chained links.
    warnings = patients.summary["grouping"]["warnings"]
    assert len(warnings) == 2 and all("one patient or source" in w and "chained" not in w for w in warnings)


def test_bad_grouping_options_are_one_line_errors(tmp_path):
    from pydantic import ValidationError

    for bad in ({"max_group_share": 0}, {"max_group_share": 1.5}, {"link_near_copies": "sometimes"}):
        with pytest.raises(ValidationError) as caught:
            build(tmp_path, **bad)
        assert next(iter(bad)) in str(caught.value)
