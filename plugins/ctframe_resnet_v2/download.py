"""Fetch Keras's published ImageNet weights once into a cache folder, checking their md5."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ctframe.api.data import download_checked, file_digest

from .weights import WeightsError

CACHE_ENV = "CTFRAME_WEIGHTS_DIR"
KERAS_BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"


@dataclass(frozen=True)
class WeightFile:
    url: str
    md5: str

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


def _keras_file(arch: str, md5: str) -> WeightFile:
    return WeightFile(f"{KERAS_BASE_URL}{arch}_weights_tf_dim_ordering_tf_kernels_notop.h5", md5)


# The no-top files and md5 sums keras.applications uses (keras/src/applications/resnet.py).
# A module-level table so that tests and mirrors can point elsewhere.
IMAGENET_WEIGHTS: dict[str, WeightFile] = {
    "resnet50v2": _keras_file("resnet50v2", "fac2f116257151a9d068a22e544a4917"),
    "resnet101v2": _keras_file("resnet101v2", "c0ed64b8031c3730f411d2eb4eea35b5"),
    "resnet152v2": _keras_file("resnet152v2", "ed17cf2e0169df9d443503ef94b23b33"),
}


def default_cache_dir() -> Path:
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "ctframe" / "weights"


def file_md5(path: Path) -> str:
    return file_digest(path, "md5")


_verified: set[tuple[str, int, int, str]] = set()
"""Files whose md5 was checked in this process: a run's check and its factory both ask (~170 MB)."""


def _has_md5(path: Path, md5: str) -> bool:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, md5)
    if key in _verified:
        return True
    if file_md5(path) != md5:
        return False
    _verified.add(key)
    return True


def fetch_imagenet_weights(
    arch: str, cache_dir: Path | None = None, timeout: float = 60.0, logger: logging.Logger | None = None
) -> Path:
    """The cached weights file for ``arch``, downloaded first if absent (or if the cached copy is corrupt)."""
    entry = IMAGENET_WEIGHTS.get(arch)
    if entry is None:
        raise WeightsError(f"no ImageNet weights are known for {arch!r}; known: {sorted(IMAGENET_WEIGHTS)}")
    target = Path(cache_dir or default_cache_dir()) / entry.file_name
    if target.is_file():
        if _has_md5(target, entry.md5):
            return target
        (logger or logging.getLogger("ctframe")).warning("%s has the wrong md5; downloading it again", target)
    (logger or logging.getLogger("ctframe")).info("downloading %s to %s", entry.url, target)
    download_checked(
        entry.url,
        target,
        "md5",
        entry.md5,
        timeout=timeout,
        error_type=WeightsError,
        hint=f"; or set {CACHE_ENV} to the folder that holds it",
    )
    return target
