"""``integrity.json``: the sha256 of every file a resumed run relies on, so resume can refuse an edited run.

A run records its resolved recipe, its model files and whatever a plugin writes through
:func:`write_recorded` (``save_checkpoint(..., run_dir=...)`` uses it: the two_phase checkpoints,
folder_split's manifest). ``ctframe run --resume`` calls :func:`verify` before it writes anything: a
file that differs from its record, or a recorded file that is gone, is a one-line refusal naming it.

A record is updated around the write in two steps, ``pending`` (the new hash) before the file is renamed
into place and ``sha256`` after, so a process killed at any moment leaves a state that verifies: the
old file with its ``sha256``, or the new one with its ``pending`` hash. This guards against edits and
damage, not against someone who rewrites ``integrity.json`` too (checkpoints are still loaded
weights-only, and model weights are checked against the hash in their own JSON file).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from ctframe.base.errors import RunError
from ctframe.storage.files import first_line, sha256_bytes, sha256_file, write_bytes, write_json
from ctframe.storage.layout import INTEGRITY

FORMAT = 1
ANY = "*"
"""A ``pending`` value for a file the core writes through code it does not control (model files): while
it is being written any content is accepted, since resume writes it again before anything uses it."""

_lock = threading.Lock()  # one read-modify-write of a ledger at a time (a data loader thread may write)


def _root(run_dir: Any) -> Path:
    return Path(getattr(run_dir, "path", run_dir))  # a RunDirectory or its path


def is_recording(run_dir: Any) -> bool:
    """Whether ``run_dir`` keeps an integrity record (a run ctframe created, not a scratch folder)."""
    return INTEGRITY.path(run_dir).is_file()


def start(run_dir: Any) -> Path:
    """Create the empty record of a new run; later writes through :func:`write_recorded` fill it."""
    return write_json(INTEGRITY.path(run_dir), {"format": FORMAT, "files": {}})


def _name(root: Path, path: Path) -> str:
    try:
        return Path(path).absolute().relative_to(root.absolute()).as_posix()
    except ValueError:
        raise ValueError(f"{path} is not inside the run directory {root}") from None


def _read(root: Path) -> dict[str, dict[str, Any]]:
    """The ``files`` mapping of ``root``'s record; a :class:`RunError` when it is not a valid one."""
    where = INTEGRITY.path(root)
    try:
        ledger = json.loads(where.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(
            f"{where} is missing, so this run cannot be verified; start a new run with ctframe run RECIPE"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunError(f"{where} is unreadable ({first_line(error)}); this run cannot be verified") from None
    files = ledger.get("files") if isinstance(ledger, dict) else None
    if not isinstance(ledger, dict) or ledger.get("format") != FORMAT or not isinstance(files, dict):
        raise RunError(f"{where} is not an integrity record of format {FORMAT}; this run cannot be verified")
    for name, entry in files.items():
        pure = PurePosixPath(name)
        if pure.is_absolute() or ".." in pure.parts or not name or not isinstance(entry, dict):
            raise RunError(f"{where} has an invalid entry {name!r}; this run cannot be verified")
    return files


def _update(root: Path, name: str, **values: Any) -> None:
    with _lock:
        files = _read(root)
        entry = files.setdefault(name, {"sha256": None})
        entry.update(values)
        for key in [k for k, v in entry.items() if v is None and k != "sha256"]:
            del entry[key]
        write_json(INTEGRITY.path(root), {"format": FORMAT, "files": files})


def write_recorded(path: Path, data: bytes, run_dir: Any, kind: str = "file") -> Path:
    """Write ``data`` to ``path`` atomically and record its sha256 in ``run_dir``'s ``integrity.json``.

    The one function through which the core and plugins record a file that a resumed run relies on.
    Where ``run_dir`` keeps no record (a scratch folder while validating) it is a plain atomic write.
    """
    root = _root(run_dir)
    if not is_recording(root):
        return write_bytes(path, data)
    name, digest = _name(root, path), sha256_bytes(data)
    _update(root, name, pending=digest, kind=kind)
    write_bytes(path, data)
    _update(root, name, sha256=digest, pending=None)
    return Path(path)


@contextlib.contextmanager
def recording(run_dir: Any, paths: Iterable[Path], kind: str = "file") -> Iterator[None]:
    """Record files that code outside this module writes inside the block (the model files)."""
    root, paths = _root(run_dir), list(paths)
    if not is_recording(root):
        yield
        return
    names = [_name(root, path) for path in paths]
    for name in names:
        _update(root, name, pending=ANY, kind=kind)
    yield
    for name, path in zip(names, paths, strict=True):
        _update(root, name, sha256=sha256_file(path), pending=None)


def _problem(root: Path, name: str, entry: dict[str, Any]) -> str | None:
    path = root / name
    accepted = {entry.get("sha256")} | ({entry["pending"]} if "pending" in entry else set())
    if ANY in accepted:
        return None
    if not path.exists():
        return None if None in accepted else f"{path} is recorded in {INTEGRITY.name} but missing"
    if not path.is_file():
        return f"{path} is recorded in {INTEGRITY.name} as a file but is not one"
    if sha256_file(path) not in accepted:
        return f"{path} differs from the file this run wrote (sha256 recorded in {INTEGRITY.name})"
    return None


def verify(run_dir: Any) -> None:
    """Refuse a run directory whose recorded files changed: one :class:`RunError` line naming the first.

    Reads only. :func:`ctframe.storage.checkpoints.verify_run` adds the check that every recorded
    checkpoint still opens weights-only.
    """
    root = _root(run_dir)
    for name, entry in sorted(_read(root).items()):
        problem = _problem(root, name, entry)
        if problem:
            raise RunError(f"{problem}: it was edited or damaged; restore it, or start a new run")


def recorded(run_dir: Any, kind: str) -> list[Path]:
    """The recorded files of one ``kind`` that exist (``"checkpoint"``, ``"model"``, ...)."""
    root = _root(run_dir)
    return [
        root / name
        for name, entry in sorted(_read(root).items())
        if entry.get("kind") == kind and (root / name).is_file()
    ]


def settle(run_dir: Any) -> None:
    """After :func:`verify`: end the writes a kill interrupted by recording those files as they are."""
    root = _root(run_dir)
    with _lock:
        files = _read(root)
        for name, entry in list(files.items()):
            if "pending" not in entry:
                continue  # verify found it equal to its sha256
            if (root / name).is_file():
                entry["sha256"] = sha256_file(root / name)
                del entry["pending"]
            else:
                del files[name]  # its first write never completed
        write_json(INTEGRITY.path(root), {"format": FORMAT, "files": files})
