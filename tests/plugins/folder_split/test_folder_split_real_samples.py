"""The shared real samples (skipped when ../shared/data is absent): quirks the pipeline must absorb."""

from __future__ import annotations

import csv

import pytest
from folder_split_support import build, split_of

from tests.conftest import SHARED_DATA

SHARED = SHARED_DATA
SARS = SHARED / "sarscov2-ct-sample"
UCSD = SHARED / "ucsd-covid-ct-sample"


@pytest.mark.skipif(not SARS.is_dir(), reason="shared sample data not present")
def test_sarscov2_sample_duplicates_share_a_split_and_images_are_canonical(tmp_path):
    data = build(SARS, run_dir=tmp_path, image_size=32, num_workers=2)
    splits = split_of(data)
    assert len(splits) == 120
    assert splits["COVID/Covid (128).png"] == splits["COVID/Covid (129).png"]
    assert splits["COVID/Covid (134).png"] == splits["COVID/Covid (135).png"]
    assert data.summary["duplicates"]["sets"] == 2
    image, _, _ = data.test[0]
    assert tuple(image.shape) == (3, 32, 32)


@pytest.mark.skipif(not UCSD.is_dir(), reason="shared sample data not present")
def test_ucsd_sample_patients_never_straddle_splits(tmp_path):
    data = build(
        UCSD,
        classes=["CT_COVID", "CT_NonCOVID"],
        positive_class="CT_COVID",
        image_size=32,
        group_by=str(UCSD / "patients.csv"),
        group_column="patient_id",
    )
    splits = split_of(data)
    assert len(splits) == 147  # JPEG-in-.png, greyscale and RGBA files all read
    with open(UCSD / "patients.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    sides: dict[str, set[str]] = {}
    for row in rows:
        sides.setdefault(row["patient_id"], set()).add(splits[f"{row['class']}/{row['file']}"])
    assert all(len(found) == 1 for found in sides.values())
    assert {s for found in sides.values() for s in found} == {"train", "val", "test"}
