"""The torch datasets a split hands out, and the training-time augmentation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ctframe_folder_split.cache import Store


class FolderImageDataset(Dataset):
    """Items ``(uint8 (3, S, S) RGB tensor, label, sample_id)``; images come from the store."""

    def __init__(
        self,
        store: Store,
        rows: Sequence[int],
        sha256: Sequence[str],
        paths: Sequence[Path],
        labels: Sequence[int],
        sample_ids: Sequence[str],
    ):
        self.store = store
        self.rows = list(rows)
        """Index of each item in the store (the scan order)."""
        self.sha256 = list(sha256)
        self.paths = list(paths)
        self.labels = list(labels)
        self.sample_ids = list(sample_ids)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        image = self.store.get(self.rows[index], self.sha256[index], self.paths[index])
        return image, self.labels[index], self.sample_ids[index]

    def __repr__(self) -> str:
        return f"FolderImageDataset({len(self)} images)"


def build_augment(
    rotation_degrees: float, horizontal_flip: bool, zoom_range: float
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The study's three augmentations on one uint8 image; random draws come from torch's seeded RNG.

    Rotation and zoom share one affine warp (one interpolation, not two); corners fill with black,
    the background of a CT slice.
    """
    from torchvision.transforms import v2

    steps: list[torch.nn.Module] = []
    if rotation_degrees > 0 or zoom_range > 0:
        steps.append(
            v2.RandomAffine(
                degrees=rotation_degrees,
                scale=(1 - zoom_range, 1 + zoom_range) if zoom_range > 0 else None,
                interpolation=v2.InterpolationMode.BILINEAR,
                fill=0,
            )
        )
    if horizontal_flip:
        steps.append(v2.RandomHorizontalFlip(p=0.5))
    if not steps:
        return None
    return v2.Compose(steps)
