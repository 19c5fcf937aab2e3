"""Reading new files as training read them: the dataset's ``reader`` capability, used by ``ctframe
predict`` and ``ctframe evaluate``. Same content sniffing, decoding, canonical RGB and resize."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ctframe import BadFileError, BuildContext, DataError
from ctframe.api import ReadFiles, escape_path
from ctframe_folder_split.decode import BadImage, decode_canonical, verify_image
from ctframe_folder_split.files import NotAnImage, is_regular, open_nonblocking, read_file, sniff_format
from ctframe_folder_split.options import FolderSplitOptions

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"})
"""A file in a folder with one of these names is reported when it is no image (an empty or text
``.png`` is a failed copy, not a stray file); a file of another name is judged by its content alone."""


def _expand(paths: Sequence[Path]) -> tuple[list[Path], Counter[str]]:
    """Files as given; folders walked in name order, hidden entries skipped, non-images left out
    (unless named as images) and counted by ending. FIFOs, sockets and devices are kept, so that reading
    reports them as not regular files, but never opened."""
    found: list[Path] = []
    left_out: Counter[str] = Counter()
    for path in map(Path, paths):
        if path.is_dir():
            for folder, dirs, files in os.walk(path, followlinks=False):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if name.startswith("."):
                        continue
                    if _looks_like_image(Path(folder) / name):
                        found.append(Path(folder) / name)
                    else:
                        left_out[Path(name).suffix.lower() or "(none)"] += 1
        elif path.exists() or path.is_symlink():
            found.append(path)
        else:
            raise DataError(f"{escape_path(path)}: no such file or folder; check the path")
    return found, left_out


def _looks_like_image(path: Path) -> bool:
    if path.suffix.lower() in IMAGE_SUFFIXES or not is_regular(path):
        return True  # reading says what is wrong (a FIFO is never opened: it would wait for a writer)
    try:
        with open(path, "rb", opener=open_nonblocking) as handle:
            return sniff_format(handle.read(16)) is not None
    except OSError:
        return True  # let reading report why it cannot be read


class _FilesToDecode(Dataset):
    """Decodes on access, so that a loader worker can decode the next batch while the model runs."""

    def __init__(self, paths: list[Path], sample_ids: list[str], image_size: int, max_pixels: int):
        self.paths, self.sample_ids = paths, sample_ids
        self.image_size, self.max_pixels = image_size, max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        try:
            array, _ = decode_canonical(read_file(self.paths[index]), self.image_size, self.max_pixels)
        except BadImage as error:  # damage that only a full decode reveals
            raise BadFileError(self.sample_ids[index], str(error)) from None
        except OSError as error:  # removed or replaced since it was read
            raise BadFileError(self.sample_ids[index], error.strerror or str(error)) from None
        return torch.from_numpy(array), -1, self.sample_ids[index]


class FolderSplitReader:
    def __init__(self, options: FolderSplitOptions):
        self.options = options

    def _problem(self, path: Path) -> str | None:
        """Why the file cannot be read, from the same cheap checks as the dataset's pre-run check."""
        try:
            data = read_file(path, images_only=True)
            if not data:
                return "empty file"
            verify_image(data, self.options.max_image_pixels)
        except NotAnImage:
            return "not an image file"
        except BadImage as error:
            return str(error)
        except OSError as error:
            return error.strerror or str(error)
        return None

    def read(self, paths: Sequence[Path], on_bad_image: str = "error") -> ReadFiles:
        good: list[Path] = []
        ids: list[str] = []
        skipped: list[tuple[str, str]] = []
        files, left_out = _expand(paths)
        for path in files:
            shown = escape_path(path)
            problem = self._problem(path)
            if problem is None:
                good.append(path)
                ids.append(shown)
            elif on_bad_image == "skip":
                skipped.append((shown, problem))
            else:
                raise DataError(f"{shown}: {problem}; remove it or pass --on-bad-image skip")
        images = _FilesToDecode(good, ids, self.options.image_size, self.options.max_image_pixels)
        files_of = {sample_id: sample_id for sample_id in ids}
        return ReadFiles(images, files_of, skipped, num_workers=1, ignored=dict(sorted(left_out.items())))


def build_reader(options: FolderSplitOptions, context: BuildContext) -> FolderSplitReader:
    return FolderSplitReader(options)
