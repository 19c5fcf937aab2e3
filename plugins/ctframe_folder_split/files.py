"""Finding the files of a class-folder layout and recognising images by their content."""

from __future__ import annotations

import errno
import itertools
import os
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ctframe import DataError
from ctframe.api import escape_path
from ctframe_folder_split.grouping import listing

# Leading bytes of the formats we decode; the extension is never trusted.
MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),  # BigTIFF
    (b"MM\x00+", "TIFF"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
)


def sniff_format(head: bytes) -> str | None:
    """Image format from the first bytes of a file, or ``None`` when it is not an image we read."""
    for magic, name in MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


@dataclass(frozen=True)
class Entry:
    """One file found under a class folder."""

    sample_id: str
    """Path relative to the root, '/'-separated, NFC-normalised (the same on every OS) and escaped
    with :func:`ctframe.base.filenames.escape_path`, so it can go into any CSV, JSON or log as it is."""
    path: Path
    """The real path, for reading the file (the sample id may differ from it in normalisation and
    escapes)."""
    class_name: str
    problem: str | None = None
    """Why it cannot be used even before reading it (a symlink loop), else ``None``."""


@dataclass(frozen=True)
class Discovery:
    entries: list[Entry]
    ignored: list[str]
    """Hidden files and folders (such as .DS_Store) that were deliberately not read."""


def _sample_id(path: Path, root: Path) -> str:
    return escape_path(unicodedata.normalize("NFC", path.relative_to(root).as_posix()))


def _walk_class(root: Path, class_name: str, entries: list[Entry], ignored: list[str]) -> None:
    folder = root / class_name
    seen_dirs: set[str] = set()
    pending = [folder]
    while pending:
        directory = pending.pop()
        real = os.path.realpath(directory)
        if real in seen_dirs:
            entries.append(Entry(_sample_id(directory, root), directory, class_name, "symlink loop"))
            continue
        seen_dirs.add(real)
        try:
            children = sorted(os.scandir(directory), key=lambda item: item.name)
        except PermissionError:
            entries.append(Entry(_sample_id(directory, root), directory, class_name, "folder not readable"))
            continue
        for child in children:
            path = Path(child.path)
            if child.name.startswith("."):
                ignored.append(_sample_id(path, root))
                continue
            try:
                is_dir = child.is_dir(follow_symlinks=True)
                is_file = child.is_file(follow_symlinks=True)
            except OSError as error:
                problem = "symlink loop" if error.errno == errno.ELOOP else f"cannot stat ({error.strerror})"
                entries.append(Entry(_sample_id(path, root), path, class_name, problem))
                continue
            if is_dir:
                target = os.path.realpath(path)
                if child.is_symlink() and (target == real or real.startswith(target + os.sep)):
                    entries.append(Entry(_sample_id(path, root), path, class_name, "symlink loop"))
                else:
                    pending.append(path)
            elif is_file:
                entries.append(Entry(_sample_id(path, root), path, class_name))
            elif child.is_symlink():
                target_error = _symlink_problem(path)
                entries.append(Entry(_sample_id(path, root), path, class_name, target_error))
            else:
                entries.append(Entry(_sample_id(path, root), path, class_name, "not a regular file"))


def _symlink_problem(path: Path) -> str:
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symlink loop"
        return "broken symlink"
    return "not a regular file"


def check_layout(root: Path, classes: list[str], download_hint: str = "") -> None:
    """Cheap checks that need no file reads: the root and every class folder exist."""
    if not root.exists():
        hint = (
            f"; {download_hint}"
            if download_hint
            else "; set dataset.root to the folder that holds " + ", ".join(f"{c}/" for c in classes)
        )
        raise DataError(f"dataset root {escape_path(root)} does not exist{hint}")
    if not root.is_dir():
        raise DataError(
            f"dataset root {escape_path(root)} is not a folder; "
            "point dataset.root at the folder of class folders"
        )
    missing = [c for c in classes if not (root / c).is_dir()]
    if missing:
        present = sorted(
            escape_path(p.name) for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        raise DataError(
            f"class folder(s) {', '.join(missing)} missing under {escape_path(root)} "
            f"(found: {', '.join(present) or 'none'}); "
            "dataset.classes must name sub-folders of dataset.root"
        )


def discover(root: Path, classes: list[str]) -> Discovery:
    """Every file under each class folder (recursively), in a fixed order independent of the file system."""
    entries: list[Entry] = []
    ignored: list[str] = []
    for class_name in classes:
        _walk_class(root, class_name, entries, ignored)
    empty = [c for c in classes if not any(e.class_name == c for e in entries)]
    if empty:
        raise DataError(
            f"class folder(s) {', '.join(empty)} under {escape_path(root)} hold no files; "
            "every class needs images"
        )
    entries.sort(key=lambda e: (classes.index(e.class_name), e.sample_id))
    _refuse_clashing_ids(entries)
    return Discovery(entries, sorted(ignored))


def _refuse_clashing_ids(entries: list[Entry]) -> None:
    """Two files whose names differ only in Unicode normalisation (NFC and NFD 'é') would share one
    sample id, and so one manifest row; refuse them instead of silently using one of the two."""
    clashes = sorted({a.sample_id for a, b in itertools.pairwise(entries) if a.sample_id == b.sample_id})
    if clashes:
        raise DataError(
            f"{len(clashes)} file name(s) occur twice in different Unicode normalisations (NFC / NFD): "
            f"{listing(clashes)}; rename one of each pair"
        )


class NotAnImage(Exception):
    """The first bytes match no supported image format."""


NOT_REGULAR = "not a regular file"


class NotARegularFile(OSError):
    """A FIFO, socket, device or folder where a file was expected: never opened, or it could block."""

    def __init__(self, path: Path):
        super().__init__(errno.EINVAL, NOT_REGULAR, str(path))


def is_regular(path: Path) -> bool:
    """Whether ``path`` (symlinks followed) is a regular file, from its metadata alone: nothing is
    opened, so a FIFO cannot block. A path that cannot be stat-ed counts as regular here: reading it
    then says why it cannot be read."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return True


def open_nonblocking(path: str, flags: int) -> int:
    """An ``opener`` for :func:`open` that never waits for a FIFO's writer."""
    return os.open(path, flags | os.O_NONBLOCK)  # no effect on a regular file


def read_file(path: Path, images_only: bool = False) -> bytes:
    """The file's bytes; raises OSError with a readable reason (:class:`NotARegularFile` for a FIFO,
    socket or device, which is checked before opening and again on the opened file, in case it was
    swapped in between).

    With ``images_only``, a non-empty file whose first bytes are no image signature raises
    :class:`NotAnImage` after reading only those bytes (a stray archive is never loaded whole).
    """
    if not is_regular(path):
        raise NotARegularFile(path)
    with open(path, "rb", opener=open_nonblocking) as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise NotARegularFile(path)
        head = handle.read(16)
        if images_only and head and sniff_format(head) is None:
            raise NotAnImage(str(path))
        return head + handle.read()
