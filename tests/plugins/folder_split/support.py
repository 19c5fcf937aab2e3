"""Helpers for the folder_split tests: tiny image folders built on the fly."""

from __future__ import annotations

import io
import logging
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from ctframe import BuildContext
from ctframe.storage.rundir import RunDirectory

CLASSES = ["COVID", "non-COVID"]


def image_bytes(seed: int, size: tuple[int, int] = (20, 16), fmt: str = "PNG", mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def make_folder(root: Path, per_class: int = 10, start: int = 0, **kwargs) -> Path:
    """``root/COVID`` and ``root/non-COVID`` with distinct random PNGs named ``img<k>.png``."""
    for class_index, class_name in enumerate(CLASSES):
        folder = root / class_name
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(start, start + per_class):
            (folder / f"img{k:03d}.png").write_bytes(image_bytes(1000 * class_index + k, **kwargs))
    return root


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG whose header claims a huge image: tiny on disk, gigantic once decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\x00" * 1000)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def options(root: Path, **overrides):
    from ctframe_folder_split.options import FolderSplitOptions

    values = {
        "root": root,
        "classes": CLASSES,
        "positive_class": "COVID",
        "image_size": 16,
        "num_workers": 1,
        "leakage_check": False,
    }
    values.update(overrides)
    return FolderSplitOptions(**values)


def context(run_dir: Path | None = None, seed: int = 0, recipe_dir: Path | None = None) -> BuildContext:
    return BuildContext(
        seed=seed,
        device="cpu",
        recipe_dir=recipe_dir or Path.cwd(),
        run_dir=RunDirectory(run_dir) if run_dir is not None else None,
        logger=logging.getLogger("ctframe.test"),
    )


def build(root: Path, run_dir: Path | None = None, seed: int = 0, **overrides):
    from ctframe_folder_split.factory import build_folder_split

    return build_folder_split(options(root, **overrides), context(run_dir, seed))


def split_of(data) -> dict[str, str]:
    return {sid: split for split in ("train", "val", "test") for sid in getattr(data, split).sample_ids}
