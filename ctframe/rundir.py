"""Run directories and atomic artifact writes.

Everything a run writes goes through a temporary file in the same folder followed by
``os.replace``, so a crash or Ctrl-C leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import tempfile
from collections.abc import Iterator
from datetime import datetime
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


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """``torch.save`` atomically. Keep ``state`` to tensors and plain Python values so that it
    loads with ``weights_only=True``."""
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    return write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint with weights-only unpickling (no arbitrary code runs)."""
    import torch

    return torch.load(Path(path), map_location=map_location, weights_only=True)


class RunDirectory:
    """One folder per run: ``<output>/<stem>-<YYYYmmdd-HHMMSS>``."""

    RECIPE = "recipe.toml"
    ENVIRONMENT = "environment.json"
    LOG = "run.log"

    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def create(cls, output: Path, stem: str, now: datetime | None = None) -> RunDirectory:
        stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
        output = Path(output)
        output.mkdir(parents=True, exist_ok=True)
        for attempt in range(1000):
            name = f"{stem}-{stamp}" if attempt == 0 else f"{stem}-{stamp}-{attempt}"
            try:
                (output / name).mkdir()
            except FileExistsError:
                continue
            return cls(output / name)
        raise RuntimeError(f"could not create a unique run directory under {output}")

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def subdir(self, name: str) -> Path:
        folder = self.path / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def write_text(self, name: str, text: str) -> Path:
        return write_text(self.path / name, text)

    def write_json(self, name: str, value: Any) -> Path:
        return write_json(self.path / name, value)

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r})"


def first_line(error: BaseException) -> str:
    """Library errors can span many lines; ctframe's messages are one."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


def read_state_dict(path: Path, error_type: type[Exception] | None = None) -> dict[str, Any]:
    """A flat ``{name: tensor}`` state dict from ``.safetensors`` or a torch file, loaded weights-only.

    Unwraps the common ``{"state_dict": ...}`` / ``{"model": ...}`` checkpoint wrappers. Anything else
    (a corrupt file, a pickle carrying code, nested objects) raises ``error_type`` with one line.
    """
    import torch

    from ctframe.errors import DataError

    error_type = error_type or DataError
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise error_type(
            f"cannot read a torch state dict from {path}: {type(error).__name__}: {first_line(error)}"
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise error_type(f"{path} does not hold a flat state dict of tensors")
    return state
