"""The ct_volumes reader: new scans read as training read them, under the same pseudonymous names."""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from ctframe_ct_volumes.factory import build
from ctframe_ct_volumes.options import CtVolumesOptions
from ctframe_ct_volumes.pseudonym import KEY_ENV
from ctframe_ct_volumes.reader import build_reader
from ctframe_ct_volumes.synthetic import write_synthetic_set

from ctframe import BuildContext, DataError


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "0123456789abcdef" * 4)


def _setup(tmp_path: Path):
    root = tmp_path / "set"
    write_synthetic_set(root, patients=6, slices=4, size=(16, 16))
    options = CtVolumesOptions(
        root=root,
        labels=root / "labels.csv",
        classes=["normal", "nodule"],
        positive_class="nodule",
        image_size=16,
    )
    context = BuildContext(seed=0, device="cpu", recipe_dir=tmp_path, logger=logging.getLogger("test"))
    return root, options, context


def test_a_series_folder_reads_as_training_did(tmp_path):
    root, options, context = _setup(tmp_path)
    data = build(options, context)
    trained = {data.train.sample_ids[i]: data.train[i][0] for i in range(len(data.train))}
    read = build_reader(options, context).read([root / "case000", *sorted((root / "case001").iterdir())])
    assert len(read.images) == 8 and not read.skipped
    for index in range(len(read.images)):
        image, label, sample_id = read.images[index]
        assert label == -1 and read.files[sample_id] == sample_id and sample_id.startswith("se-")
        if sample_id in trained:
            assert torch.equal(image, trained[sample_id])


def test_the_reader_groups_slices_by_series(tmp_path):
    root, options, context = _setup(tmp_path)
    read = build_reader(options, context).read([root / "case000", root / "case001"])
    assert read.group_unit == "series" and set(read.groups) == set(read.files)
    assert len(set(read.groups.values())) == 2
    assert all(sample == f"{series}/{sample[-4:]}" for sample, series in read.groups.items())


def test_a_nifti_file_and_bad_inputs(tmp_path):
    _, options, context = _setup(tmp_path)
    hu = np.full((16, 16, 3), -850, np.float32)
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(hu, np.diag([0.8, 0.8, 2.5, 1])), path)
    broken = tmp_path / "broken.nii"
    broken.write_bytes(b"not a nifti")
    reader = build_reader(options, context)
    read = reader.read([path])
    assert len(read.images) == 3 and read.images[0][0].shape == (3, 16, 16)
    assert "scan" not in "".join(read.files)
    skipped = reader.read([path, broken], on_bad_image="skip")
    assert len(skipped.images) == 3 and [file for file, _ in skipped.skipped] == [str(broken)]
    with pytest.raises(DataError, match="broken.nii") as error:
        reader.read([broken])
    assert "\n" not in str(error.value)
