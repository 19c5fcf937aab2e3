"""Atomic file writes: every artifact goes through a temporary sibling and ``os.replace``.

A crash or Ctrl-C leaves either the old file or the new one, never half of one. Standard library only.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path``; it replaces ``path`` only if the block succeeds."""
    if mode not in ("w", "wb"):
        raise ValueError("atomic_open supports 'w' and 'wb'")
    path = Path(path)
    if path.is_dir():  # else os.replace fails at the end, naming the temporary file instead of the target
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if path.is_file() and not path.stat().st_mode & 0o222:  # a rename would replace it regardless
        raise PermissionError(errno.EACCES, "read-only file, not replaced", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(
            descriptor, mode, **({"encoding": "utf-8", "newline": ""} if mode == "w" else {})
        ) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp makes files owner-only; use the usual mode
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def write_text(path: Path, text: str) -> Path:
    with atomic_open(path, "w") as handle:
        handle.write(text)
    return Path(path)


def write_bytes(path: Path, data: bytes) -> Path:
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def write_json(path: Path, value: Any) -> Path:
    return write_text(path, json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")


# atomic_open's temporary files: "." + target name + "." + mkstemp's 8 random characters + ".tmp"
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files that :func:`atomic_open` leaves when its process is killed mid-write
    (a checkpoint's can be hundreds of MB). Only for a folder no other process is writing to."""
    removed = []
    for parent, _, names in os.walk(folder):
        for name in names:
            if _TEMPORARY.match(name):
                path = Path(parent) / name
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
    return removed


def first_line(error: BaseException) -> str:
    """Library errors can span many lines; ctframe's messages are one."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


CACHE_ENV = "CTFRAME_CACHE_DIR"


def cache_folder(name: str) -> Path:
    """Where a component keeps its cache called ``name``: ``$CTFRAME_CACHE_DIR/<name>``, else
    ``($XDG_CACHE_HOME or ~/.cache)/ctframe/<name>``; one variable moves every ctframe cache."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser() / name
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "ctframe" / name
