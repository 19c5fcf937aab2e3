"""Every registered dataset: splits of ``(uint8 (3, H, W) RGB, int label, str id)`` items, and a reader
(when it registers one) that reads a file as training did."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ctframe import DataSplits, FileReader, Kind, ReadFiles, unescape_name
from tests.core.contracts.components import build, context, names, options_for, registry


def _check_item(item: object, classes: int, where: str) -> tuple[torch.Tensor, int, str]:
    assert isinstance(item, tuple) and len(item) == 3, f"{where}: items are (image, label, sample_id)"
    image, label, sample_id = item
    assert isinstance(image, torch.Tensor) and image.dtype == torch.uint8, f"{where}: a uint8 tensor"
    assert image.ndim == 3 and image.shape[0] == 3 and min(image.shape[1:]) > 0, f"{where}: (3, H, W) RGB"
    assert type(label) is int and 0 <= label < classes, f"{where}: label {label!r} is no class index"
    assert isinstance(sample_id, str) and sample_id, f"{where}: the sample id is a non-empty str"
    return image, label, sample_id


@pytest.mark.parametrize("name", names(Kind.DATASET))
def test_dataset_splits_hold_images_labels_and_ids(name: str, tmp_path: Path):
    data = build(Kind.DATASET, name, tmp_path)
    assert isinstance(data, DataSplits)
    classes = data.class_names
    assert isinstance(classes, tuple) and len(classes) >= 2 and all(isinstance(c, str) for c in classes)
    assert len(set(classes)) == len(classes) and data.positive_class in classes
    seen: dict[str, str] = {}
    for split in ("train", "val", "test"):
        dataset = getattr(data, split)
        assert len(dataset) > 0, f"the {split} split is empty"
        for index in range(len(dataset)):
            _, _, sample_id = _check_item(dataset[index], len(classes), f"{split}[{index}]")
            assert sample_id not in seen, f"{sample_id!r} is in both {seen.get(sample_id)} and {split}"
            seen[sample_id] = split
    assert set(data.files) <= set(seen), "files maps the ids of the splits' samples"
    assert all(isinstance(file, str) for file in data.files.values())
    assert data.augment is None or callable(data.augment)
    training = data.for_training()
    assert (training.train, training.val) == (data.train, data.val) and not hasattr(training, "test")


@pytest.mark.parametrize("name", names(Kind.DATASET))
def test_a_reader_reads_files_as_training_did(name: str, tmp_path: Path):
    component = registry().get(Kind.DATASET, name)
    if component.reader is None:
        pytest.skip(f"{name} registers no reader (optional)")
    data = build(Kind.DATASET, name, tmp_path)
    reader = component.reader(options_for(component, tmp_path), context(tmp_path))
    assert isinstance(reader, FileReader)
    expected = {}
    for index in range(min(len(data.test), 3)):
        image, _, sample_id = data.test[index]  # the test split is never augmented
        expected[unescape_name(data.files[sample_id])] = image
    read = reader.read([Path(file) for file in expected])
    assert isinstance(read, ReadFiles) and len(read.images) == len(expected) and not read.skipped
    for index in range(len(read.images)):
        image, label, sample_id = read.images[index]
        assert label == -1 and isinstance(sample_id, str)
        file = unescape_name(read.files[sample_id])
        assert image.dtype == torch.uint8 and torch.equal(image, expected[file]), f"{file} reads otherwise"
