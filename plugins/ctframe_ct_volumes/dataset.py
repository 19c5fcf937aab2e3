"""The torch dataset a ct_volumes split hands out: windowed slices held in memory.

Each series is decoded and windowed once, into a list of uint8 (3, S, S) tensors; a split indexes
(series, slice) pairs into those lists. Memory grows with the selected slices (224 px: 150 kB per
slice); a disk cache (memory-mapped uint8 arrays keyed by the series' content) is the next step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset


class SliceDataset(Dataset):
    """Items ``(uint8 (3, S, S) tensor, label, sample_id)``."""

    def __init__(
        self,
        images: Sequence[Sequence[torch.Tensor]],
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

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        series, position = self.entries[index]
        return self.images[series][position], self.labels[index], self.sample_ids[index]

    def __repr__(self) -> str:
        return f"SliceDataset({len(self)} slices)"
