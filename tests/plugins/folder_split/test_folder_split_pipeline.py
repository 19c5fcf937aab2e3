"""Datasets, caches, augmentation, the sequence grouping / leakage wiring, the hooks and the CLI command."""

from __future__ import annotations

import csv
import json

import ctframe_folder_split.cache as cache
import numpy as np
import pytest
import torch
from folder_split_support import CLASSES, build, make_folder

from ctframe import DataError, DataSplits
from ctframe.base.contracts import Kind
from ctframe.commands.main import main
from ctframe.registry.plugins import build_registry


def test_items_follow_the_contract(tmp_path):
    make_folder(tmp_path, per_class=6, size=(30, 20))
    data = build(tmp_path, image_size=24)
    assert isinstance(data, DataSplits) and data.class_names == tuple(CLASSES)
    assert data.positive_index == 0 and data.augment is None
    image, label, sample_id = data.test[0]
    assert image.shape == (3, 24, 24) and image.dtype == torch.uint8
    assert label == CLASSES.index(sample_id.split("/")[0])
    assert data.files[sample_id] == str(tmp_path / sample_id)
    json.dumps(dict(data.summary))  # JSON-able for split_summary.json


def test_caches_give_identical_images_and_avoid_decoding_again(tmp_path, monkeypatch):
    make_folder(tmp_path / "data", per_class=5)
    images = {}
    for kind in ("none", "memory", "disk"):
        data = build(tmp_path / "data", cache=kind, cache_dir=tmp_path / "cache")
        images[kind] = {sid: img for img, _, sid in (data.train[i] for i in range(len(data.train)))}
    assert images["none"].keys() == images["memory"].keys() == images["disk"].keys()
    for sid, image in images["none"].items():
        assert torch.equal(image, images["memory"][sid]) and torch.equal(image, images["disk"][sid])
    assert len(list((tmp_path / "cache" / "16").rglob("*.u8"))) == 10

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(cache, "decode_canonical", no_decoding)
    import ctframe_folder_split.scan as scan

    monkeypatch.setattr(scan, "decode_canonical", no_decoding)
    data = build(tmp_path / "data", cache="disk", cache_dir=tmp_path / "cache")  # every image is cached
    for index in range(len(data.train)):
        image, _, sid = data.train[index]
        assert torch.equal(image, images["none"][sid])


def test_memory_cache_is_shared_with_loader_workers(tmp_path):
    make_folder(tmp_path, per_class=5)
    data = build(tmp_path)
    loader = torch.utils.data.DataLoader(data.train, batch_size=4, num_workers=1)
    batches = list(loader)
    assert sum(len(batch[1]) for batch in batches) == len(data.train)
    assert torch.equal(batches[0][0][0], data.train[0][0])


def test_augmentation_is_optional_seeded_and_keeps_uint8(tmp_path):
    make_folder(tmp_path, per_class=5)
    data = build(tmp_path, image_size=32, rotation_degrees=20, horizontal_flip=True, zoom_range=0.2)
    image = data.train[0][0]
    torch.manual_seed(0)
    first = data.augment(image)
    torch.manual_seed(0)
    assert torch.equal(first, data.augment(image))
    assert first.dtype == torch.uint8 and first.shape == image.shape and not torch.equal(first, image)
    flip_only = build(tmp_path, image_size=32, horizontal_flip=True).augment
    outputs = {flip_only(image).flip(-1).equal(image) for _ in range(20)} | {flip_only(image).equal(image)}
    assert outputs == {True, False}  # sometimes flipped, sometimes not


def test_sequence_grouping_and_leakage_check_on_demo_sequences(tmp_path):
    from ctframe_folder_split.demo import generate_demo_data

    root = generate_demo_data(tmp_path / "demo", per_class=40, size=48)
    run = tmp_path / "run"
    loose = build(root, run_dir=run, image_size=48, leakage_check=True)
    assert loose.summary["leakage"]["loud"]  # neighbouring slices on both sides
    assert json.loads((run / "leakage.json").read_text())["loud"]
    grouped = build(
        root, run_dir=tmp_path / "grouped", image_size=48, leakage_check=True, group_by="sequence"
    )
    assert not grouped.summary["leakage"]["loud"]
    groups = grouped.summary["groups"]
    assert 3 <= sum(groups[s]["COVID"] for s in ("train", "val", "test")) < 40  # runs, not single images
    sides: dict[str, set[str]] = {}
    with open(tmp_path / "grouped" / "split_manifest.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            sides.setdefault(row["group"], set()).add(row["split"])
    assert len(sides) < 80 and all(len(split) == 1 for split in sides.values())


def test_registered_through_the_entry_point_and_audit_declines_other_layouts(tmp_path):
    registry = build_registry(selection="folder_split")
    component = registry.get(Kind.DATASET, "folder_split")
    assert component is not None and component.plugin == "folder_split"
    for name, field in component.options.model_fields.items():
        assert field.description, name
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("hello")
    assert registry.manager.hook.ctframe_audit(root=tmp_path, options={}) is None


def test_demo_data_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CTFRAME_PLUGINS", "folder_split")
    target = tmp_path / "demo"
    arguments = ["demo-data", str(target), "--count", "4", "--size", "24"]
    assert main(arguments) == 0
    assert len(list((target / "COVID").glob("*.png"))) == 4
    assert np.asarray(__import__("PIL.Image").Image.open(target / "COVID" / "Covid (1).png")).shape == (
        24,
        24,
    )
    assert main(arguments) == 0  # a complete set is left alone
    assert main([*arguments[:-1], "32"]) == 2  # other settings: refused in one line
    assert "other settings" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["memory", "none"])
def test_group_and_image_counts_are_consistent(tmp_path, kind):
    make_folder(tmp_path, per_class=9)
    data = build(tmp_path, cache=kind)
    counts = data.summary["counts"]
    assert sum(counts[s][c] for s in counts for c in CLASSES) == 18
    assert counts == data.summary["groups"]  # no grouping: one group per distinct file


def test_caches_that_cannot_work_fail_with_one_line(tmp_path, monkeypatch):
    make_folder(tmp_path / "data", per_class=4)
    monkeypatch.setattr(cache, "physical_memory", lambda: 1000)  # bytes
    with pytest.raises(DataError, match='cache = "disk"'):
        build(tmp_path / "data")
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x")
    with pytest.raises(DataError, match="cannot create the image cache folder"):
        build(tmp_path / "data", cache="disk", cache_dir=blocked)
