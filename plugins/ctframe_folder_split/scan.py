"""Read every file once: hash it, decode it (unless the cache already has it) and fill the store."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ctframe_folder_split.cache import Store
from ctframe_folder_split.decode import NOT_AN_IMAGE, BadImage, ImageInfo, decode_canonical, verify_image
from ctframe_folder_split.files import NOT_REGULAR, Entry, NotAnImage, NotARegularFile, read_file
from ctframe_folder_split.sequence import thumbnail


@dataclass(frozen=True)
class Record:
    entry: Entry
    sha256: str
    """Empty when the file could not be read."""
    problem: str | None
    """Why the file is unusable, else ``None``."""
    info: ImageInfo | None = None
    """Format, mode and size; ``None`` when the image came from the cache or is unusable."""
    thumbnail: np.ndarray | None = None
    """Similarity vector of the canonical image (:func:`sequence.thumbnail`), when asked for."""

    @property
    def ok(self) -> bool:
        return self.problem is None


def _read_reason(error: OSError) -> str:
    if isinstance(error, NotARegularFile):  # swapped for a FIFO or device after the folder walk
        return NOT_REGULAR
    if isinstance(error, PermissionError):
        return "unreadable (permission denied)"
    return f"unreadable ({error.strerror or type(error).__name__})"


def _vector(image: np.ndarray) -> np.ndarray:
    return thumbnail(np.asarray(image).transpose(1, 2, 0))


def scan_entry(
    index: int, entry: Entry, store: Store, image_size: int, max_pixels: int, thumbnails: bool = False
) -> Record:
    if entry.problem:
        return Record(entry, "", entry.problem)
    try:
        data = read_file(entry.path, images_only=True)
    except NotAnImage:
        return Record(entry, "", NOT_AN_IMAGE)
    except OSError as error:
        return Record(entry, "", _read_reason(error))
    sha256 = hashlib.sha256(data).hexdigest()
    if store.lookup(index, sha256):
        vector = _vector(store.get(index, sha256, entry.path).numpy()) if thumbnails else None
        return Record(entry, sha256, None, thumbnail=vector)
    try:
        image, info = decode_canonical(data, image_size, max_pixels)
    except BadImage as error:
        return Record(entry, sha256, str(error))
    store.put(index, sha256, image)
    return Record(entry, sha256, None, info, _vector(image) if thumbnails else None)


# Seven parameters: scan_entry's, the pool size and progress; bench_images.py passes them by position
def scan(
    entries: list[Entry],
    store: Store,
    image_size: int,
    max_pixels: int,
    workers: int,
    thumbnails: bool = False,
    progress: Callable[[int], None] | None = None,
) -> list[Record]:
    """Records in the order of ``entries``.

    Threads suffice: hashing, decoding and resizing release the GIL.
    """

    def one(item: tuple[int, Entry]) -> Record:
        return scan_entry(item[0], item[1], store, image_size, max_pixels, thumbnails)

    if workers <= 1:
        records = []
        for count, item in enumerate(enumerate(entries), 1):
            records.append(one(item))
            if progress:
                progress(count)
        return records
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ctframe-decode")
    try:
        records = []
        for count, record in enumerate(pool.map(one, enumerate(entries)), 1):
            records.append(record)
            if progress:
                progress(count)
        return records
    finally:  # on Ctrl-C, drop the queued files instead of decoding them all first
        pool.shutdown(wait=True, cancel_futures=True)


def check_entry(entry: Entry, max_pixels: int) -> Record:
    """What the scan would say of the file, from the cheaper :func:`decode.verify_image` (nothing is
    hashed, cached or, for PNG, inflated); it misses only damage that a full decode alone reveals."""
    if entry.problem:
        return Record(entry, "", entry.problem)
    try:
        verify_image(read_file(entry.path, images_only=True), max_pixels)
    except NotAnImage:
        return Record(entry, "", NOT_AN_IMAGE)
    except OSError as error:
        return Record(entry, "", _read_reason(error))
    except BadImage as error:
        return Record(entry, "", str(error))
    return Record(entry, "", None)


def check_files(entries: list[Entry], max_pixels: int, workers: int) -> list[Record]:
    """The unusable ones among ``entries``, in their order (the dataset's check, before a run starts)."""
    if workers <= 1:
        records = [check_entry(entry, max_pixels) for entry in entries]
    else:
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ctframe-check")
        try:
            records = list(pool.map(lambda entry: check_entry(entry, max_pixels), entries))
        finally:  # on Ctrl-C, drop the queued files
            pool.shutdown(wait=True, cancel_futures=True)
    return [record for record in records if not record.ok]
