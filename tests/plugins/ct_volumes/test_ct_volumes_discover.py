"""Discovery and series reading on small synthetic DICOM files written with pydicom."""

from __future__ import annotations

import numpy as np
import pytest
from ctframe_ct_volumes import discover as disc
from ctframe_ct_volumes.series import valid_uid

from ctframe.api import DataError


def _stack(tmp_path, make_slice, heights=(0, 1, 2), **tags):
    return [make_slice(tmp_path / "scan" / f"s{z}", z, **tags) for z in heights]


def test_a_series_reads_in_hu_in_position_order(tmp_path, make_slice):
    # Names run against the positions: s2 is the lowest slice; the order must come from the headers.
    for name, z in (("s2", 0), ("s0", 2), ("s1", 1)):
        make_slice(tmp_path / "deep" / "er" / name, z)
    found = disc.discover(tmp_path)
    (series,) = found.series
    assert [p.name for p in (s.path for s in series.slices)] == ["s2", "s1", "s0"]
    volume = series.volume()
    assert volume.dtype == np.float32 and volume.shape == (3, 8, 8)
    assert volume[:, 0, 0].tolist() == [-1024, -924, -824]  # 100*z - 1024
    assert volume[0, 0].tolist() == [float(c - 1024) for c in range(8)]  # columns stay columns
    assert series.spacing == (1.0, 0.5, 0.5)
    assert (series.patient_id, series.patient_id_source, series.study_id) == ("P1", "PatientID", "1.2.3")
    assert not found.skipped


def test_instance_number_orders_when_positions_are_missing(tmp_path, make_slice):
    for name, number in (("a", 3), ("b", 1), ("c", 2)):
        make_slice(tmp_path / name, float(number), ImagePositionPatient=None)
    (series,) = disc.discover(tmp_path).series
    assert [s.path.name for s in series.slices] == ["b", "c", "a"]


def test_a_truncated_file_among_good_ones_is_a_counted_skip(tmp_path, make_slice):
    paths = _stack(tmp_path, make_slice)
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[:-40])  # pixel data cut short: the header still reads
    (tmp_path / "scan" / "garbage").write_bytes(b"\0" * 128 + b"DICM" + b"\x01\x02broken")
    (tmp_path / "scan" / "cut").write_bytes(data[:300])  # cut inside the header
    found = disc.discover(tmp_path)
    assert found.skipped == {disc.TRUNCATED: 2, disc.UNREADABLE: 1}
    assert found.examples[disc.TRUNCATED] == [tmp_path / "scan" / "cut", paths[1]]
    assert found.series[0].slice_count == 2


def test_mixed_sizes_in_one_series_are_refused_naming_its_folder(tmp_path, make_slice):
    _stack(tmp_path, make_slice, series="1.2.3.99")
    make_slice(tmp_path / "scan" / "big", 5, series="1.2.3.99", size=16)
    with pytest.raises(DataError, match=r"a series in .* mixes image sizes \(8x8, 16x16\)") as error:
        disc.discover(tmp_path)
    assert "\n" not in str(error.value)


def test_mixed_orientations_in_one_series_are_refused(tmp_path, make_slice):
    _stack(tmp_path, make_slice, series="1.2.3.98")
    make_slice(
        tmp_path / "scan" / "tilted", 5, series="1.2.3.98", ImageOrientationPatient=[1, 0, 0, 0, 0.99, 0.141]
    )
    with pytest.raises(DataError, match=r"a series in .* mixes slice orientations"):
        disc.discover(tmp_path)


def test_duplicate_positions_keep_the_first_and_count_the_rest(tmp_path, make_slice):
    _stack(tmp_path, make_slice)
    make_slice(tmp_path / "scan" / "copy", 1, InstanceNumber=7)
    found = disc.discover(tmp_path)
    (series,) = found.series
    assert series.slice_count == 3 and series.duplicates == [tmp_path / "scan" / "copy"]
    assert found.skipped == {disc.DUPLICATE: 1}
    assert series.volume().shape == (3, 8, 8)


def test_the_slices_of_a_series_share_what_they_have_in_common(tmp_path, make_slice):
    # Discovery keeps a header per file until its series is dropped: the values that the slices repeat
    # must be one object per series, not a copy per slice; a zero's sign is a value and is kept.
    _stack(tmp_path, make_slice, heights=(0, 1, 2), Manufacturer="Acme")
    make_slice(
        tmp_path / "scan" / "s3", 3, Manufacturer="Acme", ImageOrientationPatient=[1, -0.0, 0, 0, 1, 0]
    )
    (series,) = disc.discover(tmp_path).series
    first, *others = series.slices
    common = ("folder", "series_uid", "study_uid", "patient_id", "pixel_spacing", "technical")
    for other in others:
        assert all(getattr(other, name) is getattr(first, name) for name in common)
        assert other.position[0] is first.position[0] and other.position[2] != first.position[2]
    assert others[0].orientation is first.orientation and str(others[-1].orientation[1]) == "-0.0"
    assert first.technical == {"manufacturer": "Acme", "slice_thickness": "1.0", "pixel_spacing": "0.5\\0.5"}
    assert [s.path for s in series.slices] == [tmp_path / "scan" / f"s{z}" for z in range(4)]
    assert [s.file for s in series.slices] == [str(s.path) for s in series.slices]
    assert not hasattr(first, "__dict__")  # slots: no dict per slice


def test_non_ct_objects_are_skipped_by_reason(tmp_path, make_slice):
    _stack(tmp_path, make_slice)
    odd = tmp_path / "odd"
    make_slice(odd / "DICOMDIR", 0, series="1.2.3.5")
    make_slice(odd / "dirrecord", 0, series="1.2.3.5", SOPClassUID="1.2.840.10008.1.3.10")
    make_slice(
        odd / "report", 0, series="1.2.3.6", Modality="SR", SOPClassUID="1.2.840.10008.5.1.4.1.1.88.22"
    )
    make_slice(odd / "scout", 0, series="1.2.3.7", ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    make_slice(odd / "sagittal", 0, series="1.2.3.8", ImageOrientationPatient=[0, 1, 0, 0, 0, -1])
    make_slice(odd / "mr", 0, series="1.2.3.9", Modality="MR")
    make_slice(odd / "nomodality", 0, series="1.2.3.10", Modality=None, RescaleSlope=None)
    (odd / "notes.txt").write_text("hello")
    found = disc.discover(tmp_path)
    assert found.skipped == {
        disc.DICOMDIR: 2,
        disc.NON_IMAGE: 1,
        disc.LOCALIZER: 1,
        disc.NOT_AXIAL: 1,
        disc.NOT_CT: 2,
        disc.NOT_MEDICAL: 1,
    }
    assert [s.series_id for s in found.series] == ["1.2.3.4"]
    assert "skipped" in found.summary() and "\n" not in found.summary()


def test_a_header_without_pixel_data_is_not_an_image(tmp_path, make_slice):
    _stack(tmp_path, make_slice)
    no_pixels = {"PixelData": None, "Rows": None, "Columns": None, "SOPClassUID": "1.2.3.4.5.6"}
    make_slice(tmp_path / "other" / "state", 0, series="1.2.3.11", **no_pixels)
    assert disc.discover(tmp_path).skipped == {disc.NON_IMAGE: 1}


def test_a_folder_without_ct_is_refused_in_one_line(tmp_path, make_slice):
    make_slice(tmp_path / "mr", 0, Modality="MR")
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(DataError, match="no CT series or NIfTI volume found") as error:
        disc.discover(tmp_path)
    assert "\n" not in str(error.value) and "not CT" in str(error.value)
    with pytest.raises(DataError, match="is not a folder"):
        disc.discover(tmp_path / "missing")


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_empty_or_malformed_uids_group_by_fallback_and_say_so(tmp_path, make_slice):
    for z in (0, 1):
        make_slice(tmp_path / "a" / f"x{z}", z, series="", StudyInstanceUID="", PatientID="")
        make_slice(tmp_path / "b" / f"x{z}", z, series="1.02.x", PatientID="")
    series = disc.discover(tmp_path).series
    assert len(series) == 2 and all(s.grouping_fallback and s.slice_count == 2 for s in series)
    sources = sorted(s.patient_id_source for s in series)
    assert sources == ["StudyInstanceUID", "fallback"]
    assert not valid_uid("1.02.3") and not valid_uid("") and valid_uid("1.2.840.10008")


def test_a_damaged_slice_fails_in_one_line_naming_the_file_not_the_uid(tmp_path, make_slice):
    paths = _stack(tmp_path, make_slice)
    found = disc.discover(tmp_path)
    paths[0].write_bytes(paths[0].read_bytes()[:200])  # damaged after discovery
    with pytest.raises(DataError, match=r"cannot decode .*slice 1 of 3 of its series") as error:
        found.series[0].volume()
    assert "\n" not in str(error.value)


def test_a_fallback_series_keeps_its_id_when_the_data_set_moves(tmp_path, make_slice):
    # an empty SeriesInstanceUID: the series is keyed by its folder relative to the scanned root
    _stack(tmp_path / "here", make_slice, series="")
    (before,) = disc.discover(tmp_path / "here").series
    (tmp_path / "here").rename(tmp_path / "moved")
    (after,) = disc.discover(tmp_path / "moved").series
    assert before.grouping_fallback and after.series_id == before.series_id
