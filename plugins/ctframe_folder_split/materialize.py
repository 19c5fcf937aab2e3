"""Lay a split out as ``<target>/<split>/<class>/<file>`` folders, as the study did; idempotent."""

from __future__ import annotations

import filecmp
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from ctframe import DataError
from ctframe.api import escape_path, unescape_name
from ctframe_folder_split.manifest import ManifestRow

MARKER = ".ctframe-split"


def _same(source: Path, target: Path, mode: str) -> bool:
    if not target.is_file():
        return False
    if mode == "hardlink":
        return os.path.samefile(source, target)
    return filecmp.cmp(source, target, shallow=False)


def materialize(
    root: Path,
    rows: Sequence[ManifestRow],
    target: Path,
    mode: str,
    paths: Mapping[str, Path] | None = None,
) -> dict[str, int]:
    """Link or copy every usable file; remove files an earlier materialisation left that no longer belong.

    ``paths`` maps a row's file (a sample id: NFC, escaped) to the real file; without it the file is
    taken to be ``root / unescape_name(file)``. Copies keep the real names, byte for byte.
    """
    marker = target / MARKER
    if target.exists() and any(target.iterdir()) and not marker.exists():
        raise DataError(
            f"materialize_dir {escape_path(target)} already holds files ctframe did not put there; "
            "choose an empty folder"
        )
    target.mkdir(parents=True, exist_ok=True)
    marker.touch()
    wanted: set[Path] = set()
    counts = {"linked": 0, "copied": 0, "unchanged": 0, "removed": 0}
    fell_back = False
    for row in rows:
        if not row.split:
            continue
        source = paths[row.file] if paths is not None else root / unescape_name(row.file)
        destination = target / row.split / source.relative_to(root)
        wanted.add(destination)
        if _same(source, destination, "copy" if fell_back else mode):
            counts["unchanged"] += 1
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        temporary = destination.with_name(f".{destination.name}.tmp")
        temporary.unlink(missing_ok=True)
        if mode == "hardlink" and not fell_back:
            try:
                os.link(source, temporary)
                counts["linked"] += 1
            except OSError:  # another file system, or links not allowed: copies still work
                fell_back = True
        if mode == "copy" or fell_back:
            shutil.copyfile(source, temporary)
            counts["copied"] += 1
        os.replace(temporary, destination)
    for path in sorted(target.rglob("*")):
        if path.is_file() and path != marker and path not in wanted:
            path.unlink()
            counts["removed"] += 1
    return counts
