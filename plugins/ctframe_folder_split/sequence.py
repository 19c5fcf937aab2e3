"""Group numbered image files into scan sequences by the similarity of consecutive files.

Datasets such as the SARS-CoV-2 CT-scan release publish no patient ids, but their file numbers follow
the scan order: neighbouring numbers are usually neighbouring slices of one patient, and a drop in
similarity between consecutive files marks a new series. Grouping on that drop approximates patients
so that a group-aware split can keep each series on one side (see ``docs/grouping.md``).

Pure functions on NumPy arrays; the folder_split dataset decodes the images, calls :func:`thumbnail`
once per file (and caches the vectors), then calls :func:`group_sequences` once per class.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from ctframe.api import DataError, RecipeError

DEFAULT_THUMBNAIL_SIZE = 32
"""Thumbnail side in pixels. 32x32 keeps the body outline and large lung structures that consecutive
slices share, drops the fine texture and noise that differ, and makes a vector of 1,024 floats (4 KiB per
image, 10 MiB for the 2,481 images of the full release)."""

DEFAULT_GROUP_THRESHOLD = 0.65
"""Correlation below which two consecutive files start a new group. Set low on purpose: a cut inside one
patient's series lets its halves land on both sides of a split (leakage), while a missed cut between two
patients only makes a group coarser. On the real sample (``benchmarks/sequence_evidence.py``,
``docs/grouping.md``) consecutive files correlate at 0.70-0.94, unrelated files of the same class at 0.52
(median; 23% of them reach 0.65), so 0.65 keeps every observed series whole and still cuts most
boundaries between patients."""

# ITU-R BT.601 luma weights, the same ones Pillow uses for RGB -> "L".
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

# Below this RMS deviation (in grey levels of the input) an image counts as constant: its normalised
# vector would be amplified rounding noise, so it becomes the zero vector instead.
_CONSTANT_RMS = 1e-3

_NUMBER = re.compile(r"(\d+)")


def thumbnail(image: np.ndarray, size: int = DEFAULT_THUMBNAIL_SIZE) -> np.ndarray:
    """A comparable vector of one image: its small greyscale thumbnail, zero mean, unit L2 norm.

    ``image`` is ``H x W x 3`` RGB (normally uint8), ``H x W x 1`` or ``H x W`` greyscale. It is converted
    to grey (BT.601 weights), resized to ``size x size`` with area averaging (antialiased; the aspect
    ratio is not kept, consecutive slices share their size anyway), flattened, centred and scaled to
    unit length, so the dot product of two vectors is the Pearson correlation of their thumbnails.
    A constant image gives the zero vector (similarity 0 with everything; never NaN).

    Returns a float32 vector of length ``size * size``. Raises ``ValueError`` on other shapes.
    """
    if size < 2:
        raise ValueError(f"thumbnail size must be at least 2, got {size}")
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 3 and array.shape[2] == 3:
        grey = array.astype(np.float32) @ _LUMA
    elif array.ndim == 2:
        grey = array.astype(np.float32)
    else:
        raise ValueError(f"expected an H x W x 3 RGB or H x W greyscale image, got shape {array.shape}")
    if grey.size == 0:
        raise ValueError(f"cannot make a thumbnail of an empty image (shape {array.shape})")
    small = np.asarray(Image.fromarray(grey).resize((size, size), Image.Resampling.BOX), dtype=np.float32)
    if not np.isfinite(small).all():
        raise ValueError("cannot make a thumbnail of an image with NaN or infinite values")
    vector = small.ravel() - small.mean(dtype=np.float64)
    norm = float(np.linalg.norm(vector))
    if norm <= _CONSTANT_RMS * np.sqrt(vector.size):
        return np.zeros(vector.size, dtype=np.float32)
    return (vector / norm).astype(np.float32)


@lru_cache(maxsize=32)
def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as error:
        raise RecipeError(
            f"sequence_pattern {pattern!r} is not a valid regular expression: {error}"
        ) from None


def _natural_key(name: str) -> tuple:
    # Digits compare as numbers, text case-insensitively; the tag keeps every position comparable.
    chunks = (chunk for chunk in _NUMBER.split(name) if chunk)
    return tuple((0, int(chunk), "") if chunk.isdigit() else (1, 0, chunk.casefold()) for chunk in chunks)


def file_number(name: str, pattern: str | None = None) -> tuple:
    """Sort key that puts file names in scan order.

    Without ``pattern``: natural order, numbers compared as numbers ("Covid (9).png" < "Covid (10).png").
    With ``pattern``: a regular expression searched in ``name``; its first group (or the whole match when
    it has no group) must be the number, e.g. ``r"\\((\\d+)\\)"`` for "Covid (10).png". Ties (same number)
    fall back to natural order, and the name itself ends the key, so the order is total and repeatable.

    Raises ``RecipeError`` for an invalid pattern and ``DataError`` when it does not match ``name`` or
    the captured text is not a whole number.
    """
    tail = (_natural_key(name), name)
    if pattern is None:
        return tail
    match = _compile(pattern).search(name)
    if match is None:
        raise DataError(f"sequence_pattern {pattern!r} does not match file {name!r}; fix the pattern")
    text = match.group(1) if match.re.groups else match.group(0)
    if text is None or not text.strip().isdigit():
        raise DataError(
            f"sequence_pattern {pattern!r} captured {text!r} from {name!r}, not a number; "
            "make its first group capture the digits"
        )
    return (int(text), *tail)


def scan_order(names: Sequence[str], pattern: str | None = None) -> list[int]:
    """Input positions of ``names`` sorted by :func:`file_number`."""
    keys = [file_number(name, pattern) for name in names]
    return sorted(range(len(names)), key=keys.__getitem__)


def consecutive_similarities(
    names: Sequence[str], vectors: np.ndarray, pattern: str | None = None
) -> tuple[list[int], np.ndarray]:
    """Scan order and the correlation of each file with the one before it in that order.

    Returns ``(order, similarity)`` where ``similarity[k]`` compares ``order[k + 1]`` with ``order[k]``
    (length ``len(names) - 1``; values in ``[-1, 1]``).
    """
    vectors = _check_vectors(names, vectors)
    order = scan_order(names, pattern)
    ordered = vectors[order]
    similarity = np.einsum("ij,ij->i", ordered[1:], ordered[:-1], dtype=np.float64)
    return order, np.clip(similarity, -1.0, 1.0).astype(np.float32)


def group_sequences(
    names: Sequence[str],
    vectors: np.ndarray,
    threshold: float = DEFAULT_GROUP_THRESHOLD,
    pattern: str | None = None,
) -> list[int]:
    """Group the files of ONE class into runs of similar consecutive files.

    ``names[i]`` is the file name (or relative path) of the image whose :func:`thumbnail` vector is
    ``vectors[i]``. Files are put in scan order (:func:`file_number` with ``pattern``); each one joins
    the group of its predecessor when their correlation is at least ``threshold``, otherwise it starts a
    new group. Returns one group index per input position (input order preserved); groups are numbered
    0, 1, ... in scan order.

    Call it once per class (numbers restart per class; a patient never spans classes), then give the
    groups class-specific labels and merge groups that share an exact duplicate file, as the dataset
    does for all grouping modes. A constant image (zero vector) always starts a group of its own.
    """
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold is a correlation in [-1, 1], got {threshold}")
    order, similarity = consecutive_similarities(names, vectors, pattern)
    groups = [0] * len(order)
    current = 0
    for step, position in enumerate(order):
        if step > 0 and not similarity[step - 1] >= threshold:
            current += 1
        groups[position] = current
    return groups


def _check_vectors(names: Sequence[str], vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if len(names) == 0 and vectors.size == 0:
        return vectors.reshape(0, 0)
    if vectors.ndim != 2 or vectors.shape[0] != len(names):
        raise ValueError(
            f"expected one thumbnail vector per name: {len(names)} names, vectors of shape {vectors.shape}"
        )
    return vectors


LINK_MARGIN = 1e-5
"""Near-copy links are made at ``level - LINK_MARGIN``: float32 products of the same two vectors may
differ in the last bits between this all-pairs product and the leakage check's blocked one, and a pair
the check sees at exactly the level must never be missed here."""

DEFAULT_LINK_BATCH = 2048
"""Rows per block of the all-pairs product: a block is ``batch x n`` float32 (20 MiB for 2,500 images)."""


@dataclass(frozen=True)
class LinkedGroups:
    """Result of :func:`group_linked` for one class."""

    groups: list[int]
    """Group index per input position, numbered 0, 1, ... by each group's first file in scan order."""
    runs: int
    """Groups that consecutive links alone give (what :func:`group_sequences` returns)."""
    near_copy_pairs: int
    """Pairs of files (any distance apart) at or above the near-copy level."""

    @property
    def count(self) -> int:
        return max(self.groups, default=-1) + 1

    @property
    def runs_joined(self) -> int:
        """How many run boundaries the near-copy links closed (runs minus final groups)."""
        return self.runs - self.count


def near_copy_pairs(vectors: np.ndarray, level: float, batch: int = DEFAULT_LINK_BATCH) -> np.ndarray:
    """Every pair ``(i, j)``, ``i < j``, whose vectors' dot product is at least ``level``: int64 ``(p, 2)``.

    All pairs with one matrix product, in row blocks of ``batch`` so memory stays at ``batch * n`` floats.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"expected an (n, d) array of vectors, got shape {vectors.shape}")
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    found = [np.zeros((0, 2), dtype=np.int64)]
    for start in range(0, vectors.shape[0], batch):
        block = vectors[start : start + batch] @ vectors.T
        rows, columns = np.nonzero(block >= level)
        rows = rows + start
        upper = columns > rows
        found.append(np.stack([rows[upper], columns[upper]], axis=1).astype(np.int64))
    return np.concatenate(found)


def group_linked(
    names: Sequence[str],
    vectors: np.ndarray,
    threshold: float = DEFAULT_GROUP_THRESHOLD,
    pattern: str | None = None,
    level: float | None = None,
) -> LinkedGroups:
    """Group the files of ONE class: consecutive runs (as :func:`group_sequences`) joined by near-copies.

    Two files are linked when they are consecutive in scan order and correlate at ``threshold`` or more,
    or, whatever their distance in the numbering, when they correlate at ``level`` or more (pass the
    leakage check's level: then no two files of one class at that level can sit on both sides of a
    split, so the check is quiet by construction). Groups are the connected components of these links.
    ``level=None`` gives the runs alone.
    """
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold is a correlation in [-1, 1], got {threshold}")
    if level is not None and not -1.0 <= level <= 1.0:
        raise ValueError(f"level is a correlation in [-1, 1], got {level}")
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    order, similarity = consecutive_similarities(names, vectors, pattern)
    count = len(order)
    if count == 0:
        return LinkedGroups([], 0, 0)
    ordered = np.asarray(order, dtype=np.int64)
    joined = similarity >= threshold
    edges = [np.stack([ordered[:-1][joined], ordered[1:][joined]], axis=1)]
    runs = count - int(joined.sum())
    pairs = np.zeros((0, 2), dtype=np.int64)
    if level is not None:
        pairs = near_copy_pairs(_check_vectors(names, vectors), level - LINK_MARGIN)
        edges.append(pairs)
    links = np.concatenate(edges)
    graph = coo_matrix((np.ones(len(links), dtype=np.int8), (links[:, 0], links[:, 1])), shape=(count, count))
    _, component = connected_components(graph, directed=False)
    # Renumber components by their first file in scan order, so labels do not depend on listing order.
    number: dict[int, int] = {}
    for position in order:
        number.setdefault(int(component[position]), len(number))
    return LinkedGroups([number[int(c)] for c in component], runs, len(pairs))
