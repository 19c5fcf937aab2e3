"""The slice cache: each series' selected slices, windowed and resized, kept on disk as uint8 arrays.

An entry is two files named by a sha256 only (folder names can hold patient names): ``<hash>.idx.npy``,
the selected slice indices (int32), and ``<hash>.npy``, the images (uint8, (n, 3, S, S)), which the
dataset memory-maps. The hash covers the cache format, the windows, the slice rule and step, the image
size, and each source file's absolute path, size and modification time, so an edited or replaced scan
file makes a new entry and old entries are never taken for it. Each file is written to a temporary
sibling and renamed; the indices go first and the images last, and an entry whose two files do not
agree (or cannot be read) is logged and decoded again, so a half-written entry is never used.

The entries hold images of the scans (no header values): keep the folder where the scans may be kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ctframe import DataError
from ctframe.api import atomic_open, escape_path
from ctframe_ct_volumes.options import CtVolumesOptions
from ctframe_ct_volumes.volumes import Volume

FORMAT_VERSION = 1
"""Part of every key: bump it when decoding, windowing or resizing changes what an entry holds."""

Decode = Callable[[Volume], tuple[list[int], list[torch.Tensor]]]


def writable_folder(folder: Path) -> Path:
    """``folder``, created if needed; a one-line DataError when no file can be written into it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        descriptor, probe = tempfile.mkstemp(prefix=".probe-", dir=folder)
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        raise DataError(
            f"cannot write the slice cache into {escape_path(folder)} ({error.strerror or error}); "
            "set dataset.cache_dir to a writable folder or dataset.cache = false"
        ) from None
    return folder


def entry_key(
    sources: Sequence[Path | str],
    windows: Sequence[str | tuple[float, float]],
    rule: str,
    step: int,
    size: int,
) -> str | None:
    """The hash naming a series' entry; None when a source file cannot be looked at (not cached)."""
    identity = []
    for path in sources:
        try:
            status = os.stat(path)
        except OSError:
            return None
        identity.append([os.path.abspath(path), status.st_size, status.st_mtime_ns])
    if not identity:
        return None
    described = {
        "format": FORMAT_VERSION,
        "windows": [list(w) if isinstance(w, tuple) else w for w in windows],
        "slices": rule,
        "slice_step": step,
        "image_size": size,
        "sources": identity,
    }
    return hashlib.sha256(json.dumps(described).encode("utf-8", "surrogateescape")).hexdigest()


def _problem(indices: object, images: object, size: int) -> str | None:
    """What makes an entry's two arrays unusable together, or None."""
    if not isinstance(indices, np.ndarray) or indices.ndim != 1 or indices.dtype.kind not in "iu":
        return "its slice indices are not a list of integers"
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
        return "its images are not a uint8 (n, 3, S, S) array"
    if images.shape[1:] != (3, size, size):
        return f"its images are {images.shape[2]} px, not {size}"
    if len(indices) != len(images):
        return f"{len(indices)} slice indices for {len(images)} images"
    if len(indices) and (indices[0] < 0 or np.any(np.diff(indices) <= 0)):
        return "its slice indices are not ascending"
    return None


class SliceCache:
    """The entries of the options' cache folder for their windows, slice rule and image size."""

    def __init__(self, options: CtVolumesOptions, logger: logging.Logger):
        self.folder = options.cache_folder()
        self.windows = options.channel_windows()
        self.rule, self.step, self.size = options.slices, options.slice_step, options.image_size
        self.logger = logger
        self.read = 0
        """Series whose entry was read back."""
        self.written = 0
        """Series decoded and written."""

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.folder / f"{key}.idx.npy", self.folder / f"{key}.npy"

    def series(self, volume: Volume, decode: Decode) -> tuple[list[int], Path | list[torch.Tensor]]:
        """The selected slice indices of ``volume`` and the path of its images, decoded (and written)
        only when no usable entry exists; images in memory when its files cannot be looked at."""
        key = entry_key(volume.sources, self.windows, self.rule, self.step, self.size)
        if key is None:
            return decode(volume)
        found = self._load(key)
        if found is not None:
            self.read += 1
            return found, self._paths(key)[1]
        indices, images = decode(volume)
        self._write(key, indices, images)
        self.written += 1
        return indices, self._paths(key)[1]

    def _load(self, key: str) -> list[int] | None:
        """The entry's slice indices when both files are there and agree; None (a miss) otherwise."""
        index_path, image_path = self._paths(key)
        if not index_path.exists() and not image_path.exists():
            return None
        try:
            indices = np.load(index_path, allow_pickle=False)
            images = np.load(image_path, mmap_mode="r", allow_pickle=False)
            problem = _problem(indices, images, self.size)
            del images  # closes the map: the dataset opens its own, lazily, in each process
        except Exception as error:  # a missing, truncated or garbled file: numpy raises many kinds
            problem = f"unreadable ({type(error).__name__})"
        if problem is not None:
            message = "slice cache entry %s is damaged (%s); decoding its series again"
            self.logger.warning(message, key, problem)
            return None
        return [int(index) for index in indices]

    def _write(self, key: str, indices: list[int], images: list[torch.Tensor]) -> None:
        index_path, image_path = self._paths(key)
        stacked = (
            np.stack([image.numpy() for image in images])
            if images
            else np.zeros((0, 3, self.size, self.size), np.uint8)
        )
        try:  # indices first: images without agreeing indices are never read
            with atomic_open(index_path, "wb") as handle:
                np.save(handle, np.asarray(indices, dtype=np.int32), allow_pickle=False)
            with atomic_open(image_path, "wb") as handle:
                np.save(handle, np.ascontiguousarray(stacked, dtype=np.uint8), allow_pickle=False)
        except OSError as error:
            raise DataError(
                f"cannot write to the slice cache {escape_path(self.folder)} ({error.strerror or error}); "
                "free space there, set dataset.cache_dir elsewhere or dataset.cache = false"
            ) from None

    def summary(self) -> str:
        return (
            f"slice cache {escape_path(self.folder)}: {self.read} series read back, "
            f"{self.written} decoded and written"
        )
