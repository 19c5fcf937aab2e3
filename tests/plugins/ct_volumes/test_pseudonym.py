"""Keyed pseudonyms: stable with one key, different with another, refused without one, raw ids warn."""

from __future__ import annotations

import logging
import re

import pytest
from ctframe_ct_volumes.pseudonym import (
    ALLOWED_FIELDS,
    KEY_ENV,
    identifying_tags,
    load_key,
    make_pseudonymizer,
    technical_fields,
)

from ctframe import DataError

KEY = "a" * 64
OTHER = "b" * 64


def test_same_key_same_pseudonyms_across_runs(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    first, second = make_pseudonymizer(), make_pseudonymizer()
    assert first.patient("12345") == second.patient("12345")
    assert first.study("1.2.3") == second.study("1.2.3")
    assert re.fullmatch(r"p-[0-9a-f]{16}", first.patient("12345"))
    assert re.fullmatch(r"st-[0-9a-f]{16}", first.study("1.2.3"))
    assert re.fullmatch(r"se-[0-9a-f]{16}", first.series("1.2.3"))
    assert first.patient("12345") != first.patient("12346")
    # one raw value used as two kinds of id gives unrelated digests
    assert first.study("7")[3:] != first.series("7")[3:]


def test_another_key_gives_other_pseudonyms(monkeypatch, tmp_path):
    monkeypatch.setenv(KEY_ENV, KEY)
    from_env = make_pseudonymizer()
    key_file = tmp_path / "key.txt"
    key_file.write_text(OTHER + "\n")
    from_file = make_pseudonymizer(key_file)  # an explicit key file wins over the environment
    assert from_file.patient("12345") != from_env.patient("12345")
    key_file.write_text(KEY)
    assert make_pseudonymizer(key_file).patient("12345") == from_env.patient("12345")


def test_empty_ids_stay_empty():
    pseudonyms = make_pseudonymizer(environ={KEY_ENV: KEY})
    assert pseudonyms.patient("") == pseudonyms.study("") == pseudonyms.series("") == ""


def test_no_key_is_a_one_line_error_saying_how_to_make_one(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(DataError, match="secrets.token_hex") as caught:
        make_pseudonymizer()
    message = str(caught.value)
    assert "\n" not in message and KEY_ENV in message and "raw_ids" in message


@pytest.mark.parametrize(
    ("content", "message"), [(None, "cannot read"), ("", "is empty"), ("short", "at least 32")]
)
def test_bad_key_files_are_refused(tmp_path, content, message):
    key_file = tmp_path / "key.txt"
    if content is not None:
        key_file.write_text(content)
    with pytest.raises(DataError, match=message) as caught:
        load_key(key_file, environ={})
    assert "\n" not in str(caught.value)


def test_short_key_in_the_environment_is_refused():
    with pytest.raises(DataError, match=KEY_ENV):
        load_key(environ={KEY_ENV: "0123"})


def test_raw_ids_pass_through_with_a_logged_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="ctframe"):
        raw = make_pseudonymizer(raw_ids=True, environ={})
    assert raw.patient("12345") == "12345" and raw.series("1.2.3") == "1.2.3"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "personal identifiers" in warnings[0].getMessage()


def test_identifying_tags_and_allow_list_do_not_overlap():
    tags = identifying_tags()
    for name in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "OtherPatientIDs",
        "InstitutionName",
        "ReferringPhysicianName",
        "AccessionNumber",
        "StationName",
        "DeviceSerialNumber",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
    ):
        assert name in tags
    assert not set(tags) & set(ALLOWED_FIELDS)


def test_technical_fields_keep_only_the_allow_list():
    class Header:
        Manufacturer = "ACME"
        PixelSpacing = ["0.7", "0.7"]
        SliceThickness = "1.25"
        Rows = 512
        ContrastBolusAgent = "Iomeron 350"
        PatientName = "Doe^Jane"

    fields = technical_fields(Header())
    assert fields == {
        "Manufacturer": "ACME",
        "PixelSpacing": [0.7, 0.7],
        "SliceThickness": 1.25,
        "Rows": 512,
        "ContrastBolusAgent": True,
    }
    assert technical_fields(object()) == {"ContrastBolusAgent": False}
