"""``ctframe demo-data DIR --format dicom``: a small synthetic two-class DICOM CT set for the recipe.

Idempotent like the PNG demo: a settings file written last marks a complete set, which a second call
leaves alone; a folder holding anything else is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

from ctframe import DataError

PATIENTS = 20
SLICES = 16
SIZE = 64
SETTINGS = ".ctframe-demo-dicom.json"


def write_demo_dicom(folder: Path, count: int | None = None, size: int | None = None, seed: int = 0) -> str:
    """``count`` patients (alternating normal / nodule) of 16 slices of ``size`` px, and labels.csv."""
    from ctframe_ct_volumes.synthetic import write_synthetic_set

    patients, side = count or PATIENTS, size or SIZE
    if patients < 6 or side < 16:
        raise DataError("the DICOM demo needs --count >= 6 patients (3 per class) and --size >= 16")
    wanted = {"patients": patients, "slices": SLICES, "size": side, "seed": seed}
    settings = Path(folder) / SETTINGS
    done = f"DICOM demo data in {folder}: {patients} patients x {SLICES} slices of {side} px; labels.csv"
    if settings.is_file():
        try:
            recorded = json.loads(settings.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            recorded = None
        if recorded == wanted:
            return done + " (already there)"
        raise DataError(
            f"{folder} holds DICOM demo data made with other settings; delete it or pick another folder"
        )
    written = write_synthetic_set(folder, patients=patients, slices=SLICES, size=(side, side), seed=seed)
    tmp = settings.with_name(settings.name + ".tmp")
    tmp.write_text(json.dumps(wanted), encoding="utf-8")
    tmp.replace(settings)
    return done.replace(str(folder), str(written.root), 1)
