"""The subgroup variables ct_volumes offers: manufacturer, kernel and a slice-thickness band per series,
for every sample of the run's splits and of what its reader reads; chosen with the ``subgroups`` option."""

from __future__ import annotations

from pathlib import Path

import pytest
from ctframe_ct_volumes.factory import build
from ctframe_ct_volumes.options import CtVolumesOptions
from ctframe_ct_volumes.pseudonym import KEY_ENV, make_pseudonymizer
from ctframe_ct_volumes.reader import CtVolumesReader
from ctframe_ct_volumes.subgroups import NOT_RECORDED, thickness_band
from ctframe_ct_volumes.synthetic import write_synthetic_set

from ctframe import BuildContext

SCANNERS = {"a": ("Alpha Medical", "B30f"), "b": ("Beta Systems", "LUNG")}


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "k" * 40)


@pytest.fixture(scope="module")
def two_scanners(tmp_path_factory) -> Path:
    """Two synthetic sets of 4 patients x 3 slices, each from its own scanner, under one root (the markers
    keep their patient ids apart)."""
    root = tmp_path_factory.mktemp("ct")
    rows = ["patient_id,label"]
    for seed, (folder, (maker, kernel)) in enumerate(SCANNERS.items()):
        fields = {"Manufacturer": maker, "ConvolutionKernel": kernel}
        written = write_synthetic_set(
            root / folder, patients=4, slices=3, size=(16, 16), seed=seed, marker=f"SCAN{folder.upper()}",
            acquisition={"normal": fields, "nodule": fields},
        )  # fmt: skip
        rows += [f"{patient},{label}" for patient, label in written.patients]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def _options(root: Path, **changes) -> CtVolumesOptions:
    values = {
        "root": root,
        "labels": root / "labels.csv",
        "classes": ["normal", "nodule"],
        "positive_class": "nodule",
        "image_size": 16,
        "test_fraction": 0.5,
        **changes,
    }
    return CtVolumesOptions.model_validate(values, context={"base_dir": root})


@pytest.mark.parametrize(
    "raw, band",
    [
        ("0.625", "<= 1.5 mm"),
        ("1.5", "<= 1.5 mm"),
        ("1.5001", "1.5-3 mm"),
        ("2.5", "1.5-3 mm"),
        ("3", "1.5-3 mm"),
        ("5.0", "> 3 mm"),
        (" 10 ", "> 3 mm"),
        ("1.25\\1.25", "<= 1.5 mm"),  # a multi-valued field: its first value
        ("", NOT_RECORDED),
        (None, NOT_RECORDED),
        ("0", NOT_RECORDED),
        ("-2", NOT_RECORDED),
        ("n/a", NOT_RECORDED),
        ("nan", NOT_RECORDED),
    ],
)
def test_thickness_bands(raw, band):
    assert thickness_band(raw) == band


def test_every_sample_gets_its_series_values(two_scanners):
    data = build(_options(two_scanners), BuildContext(seed=0, device="cpu", recipe_dir=two_scanners))
    samples = [s for split in (data.train, data.val, data.test) for s in split.sample_ids]
    assert set(data.attributes) == {"manufacturer", "kernel", "slice thickness"}
    for values in data.attributes.values():
        assert set(values) == set(samples)
    makers = data.attributes["manufacturer"]
    kernels = data.attributes["kernel"]
    assert set(makers.values()) == {"Alpha Medical", "Beta Systems"}
    pairs = {(makers[s], kernels[s]) for s in samples}
    assert pairs == set(SCANNERS.values())  # manufacturer and kernel come from the same series
    assert set(data.attributes["slice thickness"].values()) == {"1.5-3 mm"}  # synthetic: 2.5 mm
    for sample in samples:  # a series' slices share its values
        series = sample.rsplit("/", 1)[0]
        assert makers[sample] == makers[next(s for s in samples if s.startswith(series + "/"))]


def test_the_option_chooses_the_variables(two_scanners):
    context = BuildContext(seed=0, device="cpu", recipe_dir=two_scanners)
    assert set(build(_options(two_scanners, subgroups=["kernel"]), context).attributes) == {"kernel"}
    assert build(_options(two_scanners, subgroups=[]), context).attributes == {}


def test_the_reader_offers_them_too(two_scanners):
    options = _options(two_scanners)
    reader = CtVolumesReader(options, make_pseudonymizer(None))
    read = reader.read([two_scanners / "b"])
    ids = list(read.files)
    assert ids and set(read.attributes["manufacturer"]) == set(ids)
    assert set(read.attributes["manufacturer"].values()) == {"Beta Systems"}
    again = reader.read([two_scanners / "a"])  # nothing of the first read carries over
    assert set(again.attributes["kernel"].values()) == {"B30f"}
    assert set(again.attributes["kernel"]) == set(again.files)
