"""Where decoded, resized images live after their first decode.

* :class:`MemoryStore` -- one shared-memory uint8 tensor, so loader worker processes read it without
  copies;
* :class:`DiskStore` -- one raw file per image under ``cache_dir/<size>/<sha[:2]>/<sha>.u8``, read
  straight into an array (the OS page cache keeps hot files in memory); keyed by content and size,
  so it survives across runs and data sets;
* :class:`NoStore` -- decodes the file again on every access.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from ctframe import DataError
from ctframe.api import escape_path
from ctframe_folder_split.decode import BadImage, decode_canonical
from ctframe_folder_split.files import read_file

MEMORY_SHARE_LIMIT = 0.75
"""Refuse a memory cache larger than this share of the machine's physical memory."""


def physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not available on this platform
        return None


class MemoryStore:
    def __init__(self, count: int, image_size: int):
        needed = count * 3 * image_size * image_size
        available = physical_memory()
        if available is not None and needed > MEMORY_SHARE_LIMIT * available:
            raise DataError(
                f"caching {count} images of {image_size} px needs {needed / 2**30:.1f} GiB, more than "
                f"{MEMORY_SHARE_LIMIT:.0%} of this machine's {available / 2**30:.1f} GiB; "
                'set dataset.cache = "disk" (or a smaller dataset.image_size)'
            )
        self.images = torch.zeros((count, 3, image_size, image_size), dtype=torch.uint8).share_memory_()
        self._array = self.images.numpy()

    def lookup(self, index: int, sha256: str) -> bool:
        return False

    def put(self, index: int, sha256: str, image: np.ndarray) -> None:
        self._array[index] = image

    def get(self, index: int, sha256: str, path: Path) -> torch.Tensor:
        # A NumPy copy: torch's clone() may hand a 150 KB copy to its thread pool, which costs
        # milliseconds of synchronisation on a busy machine.
        return torch.from_numpy(self._array[index].copy())


class DiskStore:
    def __init__(self, cache_dir: Path, image_size: int):
        self.folder = Path(cache_dir) / str(image_size)
        self.image_size = image_size
        self.nbytes = 3 * image_size * image_size
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DataError(
                f"cannot create the image cache folder {escape_path(self.folder)} ({error.strerror}); "
                'set dataset.cache_dir to a writable folder or dataset.cache = "memory"'
            ) from None

    def _path(self, sha256: str) -> Path:
        return self.folder / sha256[:2] / f"{sha256}.u8"

    def lookup(self, index: int, sha256: str) -> bool:
        path = self._path(sha256)
        return path.is_file() and path.stat().st_size == self.nbytes

    def put(self, index: int, sha256: str, image: np.ndarray) -> None:
        path = self._path(sha256)
        try:
            path.parent.mkdir(exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
        except OSError as error:
            raise self._write_error(error) from None
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(np.ascontiguousarray(image, dtype=np.uint8).tobytes())
            os.replace(temporary, path)  # concurrent writers of the same key write the same bytes
        except BaseException as error:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            if isinstance(error, OSError):
                raise self._write_error(error) from None
            raise

    def _write_error(self, error: OSError) -> DataError:
        return DataError(
            f"cannot write to the image cache {escape_path(self.folder)} ({error.strerror or error}); "
            "free space there, "
            'set dataset.cache_dir elsewhere or use dataset.cache = "memory"'
        )

    def get(self, index: int, sha256: str, path: Path) -> torch.Tensor:
        # One read into a fresh array: about 5x cheaper than setting up an np.memmap per image, and
        # served from the OS page cache all the same.
        size = self.image_size
        image = np.empty((3, size, size), dtype=np.uint8)
        with open(self._path(sha256), "rb", buffering=0) as handle:
            if handle.readinto(memoryview(image).cast("B")) != self.nbytes:
                raise DataError(
                    f"image cache file {escape_path(self._path(sha256))} is damaged; "
                    f"delete {escape_path(self.folder)}"
                )
        return torch.from_numpy(image)


class NoStore:
    def __init__(self, image_size: int, max_pixels: int):
        self.image_size = image_size
        self.max_pixels = max_pixels

    def lookup(self, index: int, sha256: str) -> bool:
        return False

    def put(self, index: int, sha256: str, image: np.ndarray) -> None:
        return None

    def get(self, index: int, sha256: str, path: Path) -> torch.Tensor:
        try:
            image, _ = decode_canonical(read_file(path), self.image_size, self.max_pixels)
        except (OSError, BadImage) as error:
            raise DataError(
                f"{escape_path(path)} became unreadable during the run ({error}); restore it and resume"
            ) from None
        return torch.from_numpy(image)


Store = MemoryStore | DiskStore | NoStore
