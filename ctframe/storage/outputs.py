"""Where a command may write, checked before it does any work: the one rule every command follows.

A command writes only its own output: a name-like option is one plain name (:func:`plain_name`); a file
it would replace needs ``--force``; nothing inside a run directory that the run already holds or
declares (:mod:`ctframe.storage.layout`) is ever written over, ``--force`` or not, apart from the
entries a command owns (``model_card.md`` for ``ctframe card``, ``external/<name>/`` for
``ctframe evaluate``); a read-only file, a missing or unwritable folder and a command's own inputs are
refused in one line naming the path. Writes stay atomic (:mod:`ctframe.storage.files`): the check is
what keeps a rename from silently replacing a file its owner made read-only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from ctframe.base.errors import CtframeError
from ctframe.storage.layout import CORE, CV_PLAN, INTEGRITY, STATUS, RunFile

RUN_MARKERS = (STATUS, INTEGRITY, CV_PLAN)
"""A folder holding any of these is a run directory (or a cross-validation folder); not recipe.toml,
which a user's own folder may hold too."""
FORCE = "--force"


class OutputError(CtframeError):
    """An output a command may not write; raised before the command does any work."""


def plain_name(value: str, option: str) -> str:
    """``value`` of a name-like option (``--name``) when it is one plain file or folder name."""
    parts = (os.sep, os.altsep or os.sep, "/", "\\", "\0")
    if not value.strip() or value in (".", "..") or any(p in value for p in parts) or os.path.isabs(value):
        raise OutputError(
            f"{option} {value!r}: give one plain name (not empty, no '/' or '\\', not '.' or '..')"
        )
    return value


def run_directory_of(path: Path) -> Path | None:
    """The nearest run directory (or cross-validation folder) that is ``path`` or holds it."""
    for folder in (path, *path.parents):
        if folder.is_dir() and any(marker.path(folder).is_file() for marker in RUN_MARKERS):
            return folder
    return None


def _declared(relative: tuple[str, ...]) -> list[RunFile]:
    """The core entries that ``relative`` (parts below a run directory) is, or lies inside."""
    found = []
    for depth in range(1, len(relative) + 1):
        name = "/".join(relative[:depth])
        full = depth == len(relative)
        found += [e for e in CORE if (full or e.kind == "folder") and e.pattern.fullmatch(name)]
    return found


def _refuse_run_files(path: Path, option: str, owned: Iterable[RunFile]) -> None:
    """Refuse ``path`` when it is a run directory, or anything inside one that the run holds or declares,
    unless the full path is one of the ``owned`` entries."""
    absolute = path.resolve()
    run = run_directory_of(absolute)
    if run is None:
        return
    relative = absolute.relative_to(run).parts
    declared = _declared(relative)
    full = [e for e in CORE if relative and e.pattern.fullmatch("/".join(relative))]
    if any(entry in full for entry in owned):
        return
    taken = any((run.joinpath(*relative[:depth])).exists() for depth in range(1, len(relative) + 1))
    if not relative or declared or taken:
        raise OutputError(
            f"{path}: belongs to the run directory {run} (ctframe never writes over a run's files, even "
            f"with {FORCE}); choose another {option}"
        )


def _refuse_inputs(path: Path, option: str, inputs: Iterable[Path]) -> None:
    absolute = path.resolve()
    for given in inputs:
        if Path(given).resolve() == absolute:
            raise OutputError(f"{path}: also an input of this command; choose another {option}")


def _read_only(path: Path) -> bool:
    # the mode bits too: root's os.access says yes to every file, and a rename ignores the file's mode
    return not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222


def _writable_folder(folder: Path, option: str) -> None:
    if not folder.is_dir():
        raise OutputError(f"{folder}: not a folder; choose another {option}")
    if not os.access(folder, os.W_OK | os.X_OK) or not folder.stat().st_mode & 0o222:
        raise OutputError(f"{folder}: this folder is not writable; choose another {option}")


def claim_file(
    path: Path,
    *,
    force: bool = False,
    option: str = "--output",
    inputs: Iterable[Path] = (),
    owned: Iterable[RunFile] = (),
) -> Path:
    """``path`` as a file the command may write (see the module docs), or one line saying why not.

    Missing folders above it are made when the command writes (as for :func:`claim_folder`); the nearest
    existing one must be a writable folder. An existing file is replaced only with ``force`` and never
    when it is read-only, an input of the command, or a run's file (``owned`` entries excepted).
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: a folder; {option} names the file to write")
    _refuse_inputs(path, option, inputs)
    _refuse_run_files(path, option, owned)
    existing = next(
        folder for folder in (path.absolute().parent, *path.absolute().parents) if folder.exists()
    )
    _writable_folder(existing, option)
    if path.exists() or path.is_symlink():
        if stat.S_ISREG(path.lstat().st_mode) and _read_only(path):
            raise OutputError(f"{path}: read-only; make it writable or choose another {option}")
        if not force:
            raise OutputError(f"{path} exists; pass {FORCE} to replace it, or choose another {option}")
    return path


def claim_folder(
    path: Path,
    *,
    force: bool = False,
    option: str = "--output",
    inputs: Iterable[Path] = (),
    owned: Iterable[RunFile] = (),
) -> Path:
    """``path`` as a folder the command may write into: new, empty, or (with ``force``) not empty.

    Missing folders above it are made when the command writes; the nearest existing one must be
    writable. A run directory, or a folder inside one that the run holds, is refused as in
    :func:`claim_file`.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: not a folder; {option} names a folder to write into")
    _refuse_inputs(path, option, inputs)
    _refuse_run_files(path, option, owned)
    existing = next(folder for folder in (path.absolute(), *path.absolute().parents) if folder.exists())
    _writable_folder(existing, option)
    if path.is_dir() and any(path.iterdir()) and not force:
        raise OutputError(
            f"{path} exists and is not empty; pass {FORCE} to write into it, or choose another {option}"
        )
    return path


@contextlib.contextmanager
def replacing(folder: Path, aside: Path) -> Iterator[Path]:
    """Write a fresh ``folder`` in the block while its old content waits at ``aside``: gone when the
    block succeeds, put back when it fails (so a failed ``--force`` leaves the old results)."""
    folder, aside = Path(folder), Path(aside)
    moved = folder.exists()
    if moved:
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(folder, aside)
    try:
        yield folder
    except BaseException:
        if moved:
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(aside, folder)
        raise
    if moved:
        shutil.rmtree(aside, ignore_errors=True)
