"""Reading new files as training read them: the dataset's ``reader`` capability, used by ``ctframe
predict`` and ``ctframe evaluate``. Same content sniffing, decoding, canonical RGB and resize."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ctframe import BuildContext, DataError
from ctframe.contracts import ReadFiles
from ctframe.filenames import escape_path
from ctframe_folder_split.decode import BadImage, decode_canonical
from ctframe_folder_split.files import NotAnImage, read_file, sniff_format
from ctframe_folder_split.options import FolderSplitOptions


def _expand(paths: Sequence[Path]) -> list[Path]:
    """Files as given; folders walked in name order, hidden entries skipped, non-images left out."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            for folder, dirs, files in os.walk(path, followlinks=False):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if not name.startswith(".") and _looks_like_image(Path(folder) / name):
                        found.append(Path(folder) / name)
        else:
            raise DataError(f"{escape_path(path)}: no such file or folder; check the path")
    return found


def _looks_like_image(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return sniff_format(handle.read(16)) is not None
    except OSError:
        return True  # let reading report why it cannot be read


class _DecodedImages(Dataset):
    def __init__(self, images: list[torch.Tensor], sample_ids: list[str]):
        self.images, self.sample_ids = images, sample_ids

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        return self.images[index], -1, self.sample_ids[index]


class FolderSplitReader:
    def __init__(self, options: FolderSplitOptions):
        self.options = options

    def _decode(self, path: Path) -> torch.Tensor:
        data = read_file(path, images_only=True)
        if not data:
            raise BadImage("empty file")
        array, _ = decode_canonical(data, self.options.image_size, self.options.max_image_pixels)
        return torch.from_numpy(array)

    def read(self, paths: Sequence[Path], on_bad_image: str = "error") -> ReadFiles:
        images: list[torch.Tensor] = []
        ids: list[str] = []
        skipped: list[tuple[str, str]] = []
        for path in _expand(paths):
            shown = escape_path(path)
            try:
                images.append(self._decode(path))
            except (BadImage, NotAnImage, OSError) as error:
                reason = "not an image file" if isinstance(error, NotAnImage) else (
                    getattr(error, "strerror", None) or str(error)
                )
                if on_bad_image != "skip":
                    raise DataError(f"{shown}: {reason}; remove it or pass --on-bad-image skip") from None
                skipped.append((shown, reason))
                continue
            ids.append(shown)
        return ReadFiles(_DecodedImages(images, ids), {sample_id: sample_id for sample_id in ids}, skipped)


def build_reader(options: FolderSplitOptions, context: BuildContext) -> FolderSplitReader:
    return FolderSplitReader(options)
