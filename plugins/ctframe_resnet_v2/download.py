"""Fetch Keras's published ImageNet weights once into a cache folder, checking their md5."""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ctframe.rundir import atomic_open

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
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(entry: WeightFile, target: Path, timeout: float) -> None:
    """Stream ``entry.url`` to ``target``; the file appears only complete and with the right md5."""
    digest = hashlib.md5(usedforsecurity=False)
    with urllib.request.urlopen(entry.url, timeout=timeout) as response, atomic_open(target, "wb") as handle:
        for chunk in iter(lambda: response.read(1 << 20), b""):
            digest.update(chunk)
            handle.write(chunk)
        if digest.hexdigest() != entry.md5:
            raise WeightsError(
                f"download of {entry.url} has md5 {digest.hexdigest()}, expected {entry.md5}; "
                f"retry, or fetch it by hand into {target}"
            )


def describe_network_error(error: Exception) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    return str(getattr(error, "reason", None) or error)


def fetch_imagenet_weights(
    arch: str, cache_dir: Path | None = None, timeout: float = 60.0, logger: logging.Logger | None = None
) -> Path:
    """The cached weights file for ``arch``, downloaded first if absent (or if the cached copy is corrupt)."""
    entry = IMAGENET_WEIGHTS.get(arch)
    if entry is None:
        raise WeightsError(f"no ImageNet weights are known for {arch!r}; known: {sorted(IMAGENET_WEIGHTS)}")
    target = Path(cache_dir or default_cache_dir()) / entry.file_name
    if target.is_file():
        if file_md5(target) == entry.md5:
            return target
        (logger or logging.getLogger("ctframe")).warning("%s has the wrong md5; downloading it again", target)
    (logger or logging.getLogger("ctframe")).info("downloading %s to %s", entry.url, target)
    try:
        _download(entry, target, timeout)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        reason = describe_network_error(error)
        raise WeightsError(
            f"cannot download {entry.url} ({reason}); fetch that file yourself and put it at {target} "
            f"(md5 {entry.md5}), or set {CACHE_ENV} to the folder that holds it"
        ) from None
    except OSError as error:
        raise WeightsError(f"cannot write {target} ({error}); set {CACHE_ENV} to a writable folder") from None
    return target
