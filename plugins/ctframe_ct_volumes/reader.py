"""Reading new scans as training read them (``ctframe predict`` / ``evaluate``): the same windows,
slice rule and size, and the same pseudonymous sample ids ``<series pseudonym>/<slice index>``.

A path may be a folder (every series and NIfTI file under it), DICOM files (grouped into series),
a NIfTI file, or a sample name a training run wrote (``<series pseudonym>/<slice>``), which is looked
up under the dataset's root. Each slice's group is its series (pseudonym), so predictions come per series
as well as per slice.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch

from ctframe import BuildContext, DataError
from ctframe.api import ReadFiles, escape_path
from ctframe_ct_volumes.discover import (
    NOT_REGULAR,
    TRUNCATED,
    UNREADABLE,
    Discovery,
    _is_nifti,
    _read_header,
    discover,
    is_regular,
)
from ctframe_ct_volumes.grouping import group_series
from ctframe_ct_volumes.options import CtVolumesOptions
from ctframe_ct_volumes.pseudonym import Pseudonymizer, make_pseudonymizer
from ctframe_ct_volumes.series import SliceHeader, quiet_pydicom
from ctframe_ct_volumes.subgroups import attributes
from ctframe_ct_volumes.volumes import Volume, nifti_volume, sample_id, slice_images, volumes_of

_SAMPLE_NAME = re.compile(r"^(?P<series>.+)/(?P<index>[0-9]{4})$")


class _Images(torch.utils.data.Dataset):
    def __init__(self, images: list[torch.Tensor], sample_ids: list[str]):
        self.images, self.sample_ids = images, sample_ids

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        return self.images[index], -1, self.sample_ids[index]


class CtVolumesReader:
    def __init__(self, options: CtVolumesOptions, pseudonym: Pseudonymizer):
        self.options = options
        self.pseudonym = pseudonym
        self._root_volumes: dict[str, Volume] | None = None
        self._technical: dict[str, dict] = {}  # sample id -> its series' technical fields (subgroups)

    def _volumes_of(self, path: Path) -> tuple[list[Volume], list[str]]:
        """The volumes a folder or NIfTI file holds, and the problems of unreadable DICOM files inside."""
        if path.is_dir():
            found = discover(path)
            reasons = (UNREADABLE, TRUNCATED, NOT_REGULAR)
            bad = [reason for reason in reasons for _ in range(found.skipped[reason])]
            return volumes_of(found, self.pseudonym), bad
        return [nifti_volume(path, self.pseudonym)], []

    def _by_name(self, text: str) -> tuple[Volume, int] | None:
        """A sample name of a training run, looked up under the root (discovered on first use)."""
        match = _SAMPLE_NAME.match(text)
        if match is None or not self.options.root.is_dir():
            return None
        if self._root_volumes is None:
            self._root_volumes = {v.name: v for v in volumes_of(discover(self.options.root), self.pseudonym)}
        volume = self._root_volumes.get(match["series"])
        return None if volume is None else (volume, int(match["index"]))

    def _images(self, volume: Volume, only: int | None = None) -> list[tuple[str, torch.Tensor]]:
        options = self.options
        slices = slice_images(
            volume.load(), options.channel_windows(), options.slices, options.slice_step, options.image_size
        )
        found = [(sample_id(volume.name, index), image) for index, image in slices if only in (None, index)]
        self._technical.update((name, volume.technical) for name, _ in found)
        return found

    def _read_one(self, path: Path) -> tuple[list[tuple[str, torch.Tensor]], list[str]]:
        named = None if path.exists() else self._by_name(path.as_posix())
        if named is not None:
            return self._images(*named), []
        if not path.exists():
            raise DataError("no such file or folder")
        volumes, bad = self._volumes_of(path)
        return [pair for volume in volumes for pair in self._images(volume)], bad

    def read(self, paths: Sequence[Path], on_bad_image: str = "error") -> ReadFiles:
        with quiet_pydicom():  # no header value reaches the console through pydicom's warnings
            return self._read(paths, on_bad_image)

    def _read(self, paths: Sequence[Path], on_bad_image: str) -> ReadFiles:
        read: dict[str, torch.Tensor] = {}  # a slice named twice is read once
        skipped: list[tuple[str, str]] = []
        loose: list[SliceHeader] = []  # DICOM files given one by one: grouped into series at the end

        def refuse(shown: str, problem: str) -> None:
            if on_bad_image != "skip":
                raise DataError(f"{shown}: {problem}; remove it or pass --on-bad-image skip")
            skipped.append((shown, problem))

        for path in map(Path, paths):
            shown = escape_path(path)
            if not path.is_dir() and not is_regular(path):
                refuse(shown, NOT_REGULAR)
                continue
            if path.is_file() and not _is_nifti(path):
                dataset, reason = _read_header(path)
                if reason is not None:
                    refuse(shown, reason)
                else:
                    loose.append(SliceHeader.from_dataset(path, dataset))
                continue
            try:
                pairs, bad = self._read_one(path)
                if not pairs:
                    raise DataError("no slice selected")
            except DataError as error:
                refuse(shown, str(error))
                continue
            for reason in bad:
                refuse(shown, f"a file inside: {reason}")
            read.update((name, image) for name, image in pairs if name not in read)
        if loose:
            found = Discovery(root=loose[0].path.parent, series=group_series(loose), nifti=[])
            for volume in volumes_of(found, self.pseudonym):
                read.update((name, image) for name, image in self._images(volume) if name not in read)
        ids = list(read)
        technical, self._technical = self._technical, {}
        offered = attributes(((name, technical.get(name, {})) for name in ids), self.options.subgroups)
        return ReadFiles(
            _Images([read[name] for name in ids], ids),
            {name: name for name in ids},
            skipped,
            groups={name: name.rsplit("/", 1)[0] for name in ids},  # <series pseudonym>/<slice index>
            group_unit="series",
            attributes=offered,
        )


def build_reader(options: CtVolumesOptions, context: BuildContext) -> CtVolumesReader:
    pseudonym = make_pseudonymizer(options.pseudonym_key_file, raw_ids=options.raw_ids, logger=context.logger)
    return CtVolumesReader(options, pseudonym)
