"""The torch dataset a ct_volumes split hands out: windowed slices from the slice cache or memory.

Each series is decoded and windowed once. With the cache (cache.py), a series is the path of its
uint8 (n, 3, S, S) array on disk, memory-mapped on first use in each process (DataLoader workers get
the paths, never open maps), and an item is a copy of one slice; memory then holds what the OS page
cache keeps, not the data set. With ``cache = false`` a series is a list of uint8 (3, S, S) tensors
held in memory (224 px: 150 kB per slice). A split indexes (series, slice) pairs into either.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ctframe import DataError

OPEN_MAPS = 128
"""Memory maps a dataset keeps open per process: each holds a file descriptor, and reopening one
costs about 0.1 ms, so the least recently used is closed beyond this many."""

SeriesImages = Path | Sequence[torch.Tensor]
"""A series' selected slices: its cache entry's images file, or the tensors themselves."""


class SliceDataset(Dataset):
    """Items ``(uint8 (3, S, S) tensor, label, sample_id)``."""

    def __init__(
        self,
        images: Sequence[SeriesImages],
        entries: Sequence[tuple[int, int]],
        labels: Sequence[int],
        sample_ids: Sequence[str],
    ):
        self.images = images
        """Per series, its selected slices (shared by every split)."""
        self.entries = list(entries)
        """(series position, slice position in its list) per item."""
        self.labels = list(labels)
        self.sample_ids = list(sample_ids)
        self._maps: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        series, position = self.entries[index]
        stored = self.images[series]
        if isinstance(stored, Path):
            image = torch.from_numpy(np.array(self._mapped(series, stored)[position]))
        else:
            image = stored[position]
        return image, self.labels[index], self.sample_ids[index]

    def _mapped(self, series: int, path: Path) -> np.ndarray:
        array = self._maps.get(series)
        if array is not None:
            self._maps.move_to_end(series)
            return array
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as error:
            raise DataError(
                f"slice cache entry {path.name} became unreadable during the run "
                f"({getattr(error, 'strerror', None) or type(error).__name__}); "
                "do not clear the cache while a run uses it, and start or resume the run again"
            ) from None
        self._maps[series] = array
        if len(self._maps) > OPEN_MAPS:
            self._maps.popitem(last=False)
        return array

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_maps"] = OrderedDict()  # each process opens its own maps
        return state

    def __repr__(self) -> str:
        return f"SliceDataset({len(self)} slices)"
