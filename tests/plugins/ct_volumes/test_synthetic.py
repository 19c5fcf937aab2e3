"""The synthetic DICOM set: readable by pydicom, realistic HU and geometry, shuffled file names,
two classes that differ, a labels CSV, and markers planted in every identifying tag."""

from __future__ import annotations

import csv
import warnings

import numpy as np
import pydicom
import pytest
from ctframe_ct_volumes.pseudonym import IDENTIFYING_TAGS
from ctframe_ct_volumes.synthetic import CLASSES, write_synthetic_set
from pydicom import config
from pydicom.uid import ExplicitVRLittleEndian

from ctframe import DataError

MARKER = "CTFLEAK7"


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return write_synthetic_set(tmp_path_factory.mktemp("plain") / "set", patients=4, slices=6)


@pytest.fixture(scope="module")
def marked(tmp_path_factory):
    return write_synthetic_set(tmp_path_factory.mktemp("marked") / "set", patients=2, slices=4, marker=MARKER)


def read_series(folder):
    """(file name, dataset) per file, in file-name order."""
    return [(path.name, pydicom.dcmread(path)) for path in sorted(folder.glob("*.dcm"))]


def hu(ds):
    return ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def test_files_are_valid_uncompressed_ct_without_warnings(plain):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        files = read_series(plain.root / "case000")
        assert len(files) == 6
        for _, ds in files:
            assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
            assert ds.Modality == "CT" and (ds.Rows, ds.Columns) == (32, 32)
            assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1, -1024)
            assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
            assert [float(v) for v in ds.PixelSpacing] == [0.8, 0.8] and float(ds.SliceThickness) == 2.5
            values = hu(ds)
            assert values.min() < -900 and values.max() > 0  # air around a soft-tissue body


def test_geometry_follows_instance_number_but_file_names_do_not(plain):
    for case in sorted(plain.root.glob("case*")):
        files = read_series(case)
        by_name = [int(ds.InstanceNumber) for _, ds in files]
        assert sorted(by_name) == list(range(1, 7))
        assert by_name != sorted(by_name)  # file-name order is not slice order
        by_instance = sorted((int(ds.InstanceNumber), float(ds.ImagePositionPatient[2])) for _, ds in files)
        z = [position for _, position in by_instance]
        assert np.allclose(np.diff(z), -2.5)
        assert len({ds.SeriesInstanceUID for _, ds in files}) == 1
        assert len({ds.SOPInstanceUID for _, ds in files}) == 6


def test_realistic_hu_and_classes_that_differ(plain):
    dense = {}
    for case in sorted(plain.root.glob("case*")):
        files = read_series(case)
        volume = np.stack([hu(ds) for _, ds in sorted(files, key=lambda f: int(f[1].InstanceNumber))])
        assert volume.min() > -1100 and volume.max() < 200
        assert np.mean(volume < -950) > 0.1 and np.mean((volume > -950) & (volume < -400)) > 0.1
        # the blob sits in the patient's right lung: the image's left half, middle slices
        dense[files[0][1].PatientID] = int((volume[2:4, :, :16] > 0).sum())
    labels = dict(plain.patients)
    blob = [dense[p] for p, label in labels.items() if label == CLASSES[1]]
    none = [dense[p] for p, label in labels.items() if label == CLASSES[0]]
    assert min(blob) > max(none)


def test_labels_csv_maps_patient_ids_to_classes(plain):
    with plain.labels.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["patient_id"], r["label"]) for r in rows] == list(plain.patients)
    assert {label for _, label in plain.patients} == set(CLASSES)
    ids = {pydicom.dcmread(next(case.glob("*.dcm"))).PatientID for case in plain.root.glob("case*")}
    assert ids == {patient for patient, _ in plain.patients}


def test_markers_are_planted_in_every_identifying_tag(marked, monkeypatch):
    # marker values are invalid UIDs and dates on purpose; read them as they are
    monkeypatch.setattr(config.settings, "reading_validation_mode", config.IGNORE)
    patients, studies = set(), set()
    for case in sorted(marked.root.glob("case*")):
        for _, ds in read_series(case):
            for name in IDENTIFYING_TAGS:
                assert MARKER in str(ds.data_element(name).value), name
            assert MARKER in str(ds.file_meta.MediaStorageSOPInstanceUID)
            patients.add(ds.PatientID)
            studies.add(ds.StudyInstanceUID)
        assert MARKER not in case.name
    assert len(patients) == len(studies) == 2
    assert {patient for patient, _ in marked.patients} == patients


def test_pydicom_settings_are_restored(marked):
    assert config.settings.reading_validation_mode == config.settings.writing_validation_mode == config.WARN


def test_bad_arguments_are_refused(tmp_path, plain):
    with pytest.raises(DataError, match="not empty"):
        write_synthetic_set(plain.root)
    with pytest.raises(DataError, match="marker"):
        write_synthetic_set(tmp_path / "x", marker="lower case")
    with pytest.raises(DataError, match="at least 2"):
        write_synthetic_set(tmp_path / "y", patients=1)
