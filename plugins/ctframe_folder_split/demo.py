"""A small, deterministic, CT-like two-class image folder for demos, quick starts and tests.

Each class holds "patients" of consecutive axial chest slices: a body ellipse on a table, two lung
fields whose size follows the slice position, heart, spine and vessels. ``COVID`` patients carry
ground-glass opacities (faint, mostly peripheral blobs that extend over neighbouring slices);
``non-COVID`` patients sometimes carry small dense nodules instead. Lesions fade in and out along the
sequence and vary in strength, so a few COVID slices look normal.

The opacities are deliberately large and bright: the signal is strong enough that a model on *random*
backbone weights (nothing can be downloaded in a quick start) learns it, so a demo run shows the
pipeline learning. Real CT data is much harder; demo figures say nothing about a model's quality.
Files are numbered in scan order like the SARS-CoV-2 CT release (``Covid (12).png``).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from ctframe import DataError
from ctframe.api import write_text

CLASSES = ("COVID", "non-COVID")
FILE_STEMS = {"COVID": "Covid", "non-COVID": "Non-Covid"}
MARKER = ".ctframe-demo.json"
VERSION = 2  # 2: larger, stronger opacities (a random-weight backbone must see them)
DEFAULT_PER_CLASS = 240
DEFAULT_SIZE = 64


Pair = tuple[float, float]
"""(y, x): a point or the two radii of an ellipse."""


def _blob(grid: tuple[np.ndarray, np.ndarray], centre: Pair, radii: Pair, soft: float) -> np.ndarray:
    """Soft-edged ellipse in [0, 1] over ``grid`` (the ``(yy, xx)`` coordinates of every pixel)."""
    (yy, xx), (cy, cx), (ry, rx) = grid, centre, radii
    distance = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
    return 1.0 / (1.0 + np.exp(np.clip((distance - 1.0) / soft, -50, 50)))


def _patient(rng: np.random.Generator, covid: bool) -> dict:
    lesions = []
    if covid:
        for _ in range(rng.integers(4, 9)):
            lesions.append(
                {
                    "side": rng.choice([-1.0, 1.0]),
                    "angle": rng.uniform(0, 2 * np.pi),
                    "radial": rng.uniform(0.5, 0.95),  # mostly peripheral
                    "z": rng.uniform(0.1, 0.9),
                    "depth": rng.uniform(0.6, 1.0),
                    "size": rng.uniform(0.5, 0.8),
                    "strength": rng.uniform(1.0, 1.4),
                }
            )
    elif rng.random() < 0.5:
        for _ in range(rng.integers(1, 3)):
            lesions.append(
                {
                    "side": rng.choice([-1.0, 1.0]),
                    "angle": rng.uniform(0, 2 * np.pi),
                    "radial": rng.uniform(0.0, 0.7),
                    "z": rng.uniform(0.1, 0.9),
                    "depth": rng.uniform(0.05, 0.15),
                    "size": rng.uniform(0.05, 0.1),
                    "strength": rng.uniform(0.6, 1.0),
                }
            )
    return {
        "shift": rng.uniform(-0.25, 0.25, size=2),
        "arms": rng.random() < 0.5,  # arms down beside the body, or raised out of the slice
        "arm_gap": rng.uniform(0.05, 0.2),
        "body": rng.uniform(0.6, 0.95) * rng.uniform(0.8, 1.2, size=2) * np.array([0.62, 0.9]),
        "lung": rng.uniform(0.5, 0.75),
        "tilt": rng.uniform(-0.4, 0.4),
        "tissue": rng.uniform(130, 165),
        "air": rng.uniform(18, 28),
        "noise": rng.uniform(3, 9),
        "z0": rng.uniform(0.0, 0.3),
        "z1": rng.uniform(0.7, 1.0),
        "lesions": lesions,
        "covid": covid,
    }


def _slice(patient: dict, z: float, size: int, rng: np.random.Generator) -> np.ndarray:
    grid = (np.arange(size) + 0.5) / size * 2 - 1
    rows, columns = np.meshgrid(grid, grid, indexing="ij")
    cy, cx = patient["shift"]
    body_ry, body_rx = patient["body"]
    image = np.zeros((size, size))
    image += 60 * (np.abs(rows - (cy + body_ry + 0.05)) < 0.015)  # table
    cos, sin = np.cos(patient["tilt"]), np.sin(patient["tilt"])  # patients lie slightly turned
    yy = cy + (rows - cy) * cos - (columns - cx) * sin
    xx = cx + (rows - cy) * sin + (columns - cx) * cos
    grid = (yy, xx)
    body = _blob(grid, (cy, cx), (body_ry, body_rx), 0.02)
    if patient["arms"]:
        for side in (-1.0, 1.0):
            arm_x = cx + side * (body_rx + patient["arm_gap"] + 0.12)
            body = np.maximum(body, _blob(grid, (cy, arm_x), (body_ry * 0.5, 0.12), 0.05))
    image += patient["tissue"] * body
    lung_scale = patient["lung"] * (0.55 + 0.45 * np.sin(np.pi * z))
    lungs = np.zeros_like(image)
    for side in (-1.0, 1.0):
        centre_x = cx + side * body_rx * 0.45
        radii = (body_ry * lung_scale * 0.95, body_rx * lung_scale * 0.42)
        lung = _blob(grid, (cy - 0.03, centre_x), radii, 0.04)
        lungs = np.maximum(lungs, lung)
    image -= (patient["tissue"] - patient["air"]) * lungs
    heart_size = 0.22 * body_rx * max(z - 0.3, 0.0) / 0.7
    heart_centre = (cy - 0.1 * body_ry, cx + 0.12 * body_rx)
    heart = _blob(grid, heart_centre, (heart_size + 1e-3, heart_size * 1.2 + 1e-3), 0.08)
    image = np.maximum(image, (patient["tissue"] + 15) * heart * body)
    image = np.maximum(image, 235 * _blob(grid, (cy + body_ry * 0.72, cx), (0.07, 0.06), 0.05))  # spine
    for _ in range(rng.integers(6, 14)):  # vessels: small bright dots inside the lungs
        vy, vx = rng.uniform(-0.6, 0.6) * body_ry, rng.uniform(-0.7, 0.7) * body_rx
        image += 55 * lungs * _blob(grid, (cy + vy, cx + vx), (0.018, 0.018), 0.3)
    for lesion in patient["lesions"]:
        fade = np.exp(-(((z - lesion["z"]) / lesion["depth"]) ** 2))
        if fade < 0.05:
            continue
        ly = cy + np.sin(lesion["angle"]) * body_ry * lung_scale * 0.8 * lesion["radial"]
        lx = (
            cx + lesion["side"] * body_rx * 0.45 + np.cos(lesion["angle"]) * body_rx * 0.35 * lesion["radial"]
        )
        radius = lesion["size"] * lung_scale * body_rx
        if patient["covid"]:  # ground glass: hazy, textured, follows the lung
            haze = _blob(grid, (ly, lx), (radius, radius * 1.2), 0.35)
            texture = 0.7 + 0.3 * rng.random(image.shape)
            image += 95 * lesion["strength"] * fade * haze * lungs * texture
        else:  # small dense nodule
            image += 120 * lesion["strength"] * fade * _blob(grid, (ly, lx), (radius, radius), 0.15) * lungs
    image += rng.normal(0, patient["noise"], image.shape) * (0.3 + body)
    return np.clip(image, 0, 255).astype(np.uint8)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, "L").save(buffer, "PNG")
    return buffer.getvalue()


def _write_quickly(path: Path, data: bytes) -> None:
    """Atomic (temporary file + rename) without an fsync per image; the marker is written durably."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def _settings(per_class: int, size: int, seed: int) -> dict:
    return {"version": VERSION, "per_class": per_class, "size": size, "seed": seed}


def check_demo_version(root: Path) -> None:
    """Refuse a demo folder written by an older generator (its images differ from what docs describe)."""
    marker = Path(root) / MARKER
    if not marker.is_file():
        return
    try:
        version = json.loads(marker.read_text(encoding="utf-8")).get("version")
    except (OSError, ValueError, AttributeError):
        version = None
    if version != VERSION:
        raise DataError(
            f"{root} holds demo data of an older generator (version {version}, now {VERSION}); "
            "delete the folder and it is generated again"
        )


def generate_demo_data(
    root: Path, per_class: int = DEFAULT_PER_CLASS, size: int = DEFAULT_SIZE, seed: int = 0
) -> Path:
    """Write ``root/COVID`` and ``root/non-COVID`` (``per_class`` greyscale PNGs each); returns ``root``.

    Idempotent: a marker file records the settings once every image is written; a complete folder is
    left alone, an interrupted one is completed. Each file is written atomically.
    """
    if per_class < 3 or size < 16:
        raise DataError("demo data needs per_class >= 3 and size >= 16")
    root = Path(root)
    marker = root / MARKER
    wanted = _settings(per_class, size, seed)
    if marker.exists():
        try:
            recorded = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            recorded = None
        if recorded == wanted:
            return root
        raise DataError(
            f"{root} already holds demo data made with other settings ({recorded}); "
            "delete it or pick another folder"
        )
    for class_name in CLASSES:
        folder = root / class_name
        stem = FILE_STEMS[class_name]
        if folder.is_dir():
            foreign = [p.name for p in folder.iterdir() if not p.name.startswith(f"{stem} (")]
            if foreign:
                raise DataError(
                    f"{folder} holds files that are not demo data ({foreign[0]}, ...); pick an empty folder"
                )
    for class_index, class_name in enumerate(CLASSES):
        rng = np.random.default_rng([seed, class_index])
        number = 0
        while number < per_class:
            patient = _patient(rng, covid=class_name == "COVID")
            slices = int(rng.integers(3, 9))
            for z in np.linspace(patient["z0"], patient["z1"], slices):
                image = _slice(patient, float(z), size, rng)  # drawn even when the file exists: same stream
                number += 1
                path = root / class_name / f"{FILE_STEMS[class_name]} ({number}).png"
                if not path.exists():
                    _write_quickly(path, _png(image))
                if number == per_class:
                    break
    write_text(marker, json.dumps(wanted) + "\n")
    return root


def write_demo_png(folder: Path, count: int | None = None, size: int | None = None, seed: int = 0) -> str:
    """``ctframe demo-data DIR --format png``: ``count`` images per class (240) of ``size`` px (64)."""
    per_class, side = count or DEFAULT_PER_CLASS, size or DEFAULT_SIZE
    root = generate_demo_data(folder, per_class=per_class, size=side, seed=seed)
    return f"demo data ready in {root} ({per_class} images per class, {side} px)"
