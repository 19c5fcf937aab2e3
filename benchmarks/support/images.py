"""Seeded random uint8 images as a dataset: speed does not depend on what the pixels show."""

from __future__ import annotations

import torch


class RandomImages(torch.utils.data.Dataset):
    """``count`` RGB images of ``size`` x ``size``; labels alternate 0, 1 (both classes in every batch)."""

    def __init__(self, count: int, size: int, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.randint(0, 256, (count, 3, size, size), generator=generator, dtype=torch.uint8)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.images[index], index % 2, f"img{index}"
