"""Keyed pseudonyms for patient, study and series ids, and which DICOM fields outputs may hold.

A pseudonym is ``PREFIX + the first 16 hex characters of HMAC-SHA256(key, kind + NUL + raw id)``:
``p-`` patients, ``st-`` studies, ``se-`` series. The same key gives the same pseudonyms in every run,
so runs can be compared and a site holding the key can map results back; without the key the raw ids
cannot be recovered or confirmed by hashing guesses (unlike a plain hash of a guessable patient number).

The key comes from a key file the user names in the options, else from the environment variable
CTFRAME_PSEUDONYM_KEY. Without one, ids are refused (DataError) unless the user asks for raw ids.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from ctframe import DataError

KEY_ENV = "CTFRAME_PSEUDONYM_KEY"
MIN_KEY_CHARS = 32  # patient ids are guessable; the key's secrecy is all that protects them
MAKE_KEY = 'python -c "import secrets; print(secrets.token_hex(32))"'
DIGEST_CHARS = 16  # 64 bits: collisions are negligible for any dataset size a study has

Kind = Literal["patient", "study", "series"]
PREFIXES: dict[str, str] = {"patient": "p-", "study": "st-", "series": "se-"}

IDENTIFYING_TAGS: tuple[str, ...] = (
    # the patient
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientAddress",
    "PatientTelephoneNumbers",
    # the site and the people involved
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "ReferringPhysicianName",
    "PhysiciansOfRecord",
    "RequestingPhysician",
    "OperatorsName",
    "PerformingPhysicianName",
    "StationName",
    "DeviceSerialNumber",
    # the visit: numbers and dates link a scan to hospital records
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "SeriesDate",
    "AcquisitionDate",
    "ContentDate",
    "StudyTime",
    # UIDs embed site roots and timestamps and link back to the hospital's archive
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "FrameOfReferenceUID",
)
"""DICOM keywords that may carry identifying data; none of them is written to outputs as it is.
Private tags may hold anything too and are never read."""

ALLOWED_FIELDS: tuple[str, ...] = (
    "Manufacturer",
    "ManufacturerModelName",
    "ConvolutionKernel",
    "SliceThickness",
    "PixelSpacing",
    "KVP",
    "ContrastBolusAgent",  # only whether it is present (a boolean), never the agent's text
    "Rows",
    "Columns",
)
"""The technical acquisition fields outputs may hold (the allow-list); everything else stays out."""


def identifying_tags() -> tuple[str, ...]:
    """DICOM keywords of the fields that may identify a patient, a site or a visit."""
    return IDENTIFYING_TAGS


def allowed_fields() -> tuple[str, ...]:
    """DICOM keywords of the technical fields that outputs may hold."""
    return ALLOWED_FIELDS


def technical_fields(dataset: Any) -> dict[str, Any]:
    """The allow-listed fields of a DICOM dataset (pydicom's or anything with those attributes) as plain
    JSON values; missing or empty fields are left out, ContrastBolusAgent becomes its presence (bool)."""
    found: dict[str, Any] = {}
    for name in ALLOWED_FIELDS:
        value = getattr(dataset, name, None)
        if name == "ContrastBolusAgent":
            found[name] = bool(str(value or "").strip())
        elif value is None or value == "":
            continue
        elif name in ("Rows", "Columns"):
            found[name] = int(value)
        elif name == "PixelSpacing":
            found[name] = [float(v) for v in value]
        elif name in ("SliceThickness", "KVP"):
            found[name] = float(value)
        else:
            found[name] = str(value)
    return found


def _read_key_file(path: Path) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read the pseudonym key file {path}: {error}") from None
    return text.strip()


def load_key(key_file: Path | str | None = None, environ: Mapping[str, str] | None = None) -> bytes | None:
    """The pseudonym key: the key file's text if ``key_file`` is given, else CTFRAME_PSEUDONYM_KEY's value,
    else None. Surrounding white space is dropped; a key shorter than MIN_KEY_CHARS is refused."""
    env = os.environ if environ is None else environ
    if key_file is not None:
        key, where = _read_key_file(Path(key_file)), f"the key file {key_file}"
    else:
        key, where = env.get(KEY_ENV, "").strip(), KEY_ENV
    if not key:
        if key_file is not None:
            raise DataError(f"the pseudonym key file {key_file} is empty; make a key with {MAKE_KEY}")
        return None
    if len(key) < MIN_KEY_CHARS:
        raise DataError(
            f"the pseudonym key in {where} has {len(key)} characters, at least {MIN_KEY_CHARS} are needed; "
            f"make one with {MAKE_KEY}"
        )
    return key.encode("utf-8")


class Pseudonymizer:
    """Turns raw patient, study and series ids into keyed pseudonyms (or passes them through when the
    user asked for raw ids). Empty ids stay empty: the reader substitutes its fallbacks before."""

    def __init__(self, key: bytes | None, *, raw_ids: bool = False, logger: logging.Logger | None = None):
        if key is None and not raw_ids:
            raise DataError(
                f"no pseudonym key: set {KEY_ENV} or give a key file (make a key with {MAKE_KEY}), "
                "or set raw_ids to write the raw patient ids"
            )
        self._key = key
        self.raw_ids = raw_ids
        if raw_ids:
            (logger or logging.getLogger("ctframe")).warning(
                "raw_ids is on: raw patient, study and series ids (personal identifiers) will be written"
            )

    def __call__(self, kind: Kind, raw_id: str) -> str:
        if kind not in PREFIXES:
            raise ValueError(f"unknown id kind {kind!r}")
        if not raw_id or self.raw_ids:
            return raw_id
        assert self._key is not None
        message = f"{kind}\0{raw_id}".encode()  # the kind keeps a patient and a study with one id apart
        digest = hmac.new(self._key, message, hashlib.sha256).hexdigest()
        return PREFIXES[kind] + digest[:DIGEST_CHARS]

    def patient(self, raw_id: str) -> str:
        return self("patient", raw_id)

    def study(self, raw_id: str) -> str:
        return self("study", raw_id)

    def series(self, raw_id: str) -> str:
        return self("series", raw_id)


def make_pseudonymizer(
    key_file: Path | str | None = None,
    *,
    raw_ids: bool = False,
    environ: Mapping[str, str] | None = None,
    logger: logging.Logger | None = None,
) -> Pseudonymizer:
    """A Pseudonymizer with the key from ``key_file`` or CTFRAME_PSEUDONYM_KEY (see load_key); with
    ``raw_ids`` no key is needed (a given key is still checked) and a warning is logged."""
    key = load_key(key_file, environ)
    return Pseudonymizer(key, raw_ids=raw_ids, logger=logger)
