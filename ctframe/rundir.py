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
import pickle
import re
import tempfile
import warnings
import zipfile
from collections.abc import Iterator, Sequence
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


def save_checkpoint(path: Path, state: dict[str, Any], run_dir: Any = None) -> Path:
    """``torch.save`` atomically. Keep ``state`` to tensors and plain Python values so that it
    loads with ``weights_only=True``.

    ``run_dir`` (a :class:`RunDirectory` or its path) records the file's sha256 in the run's
    ``integrity.json``, so that ``ctframe run --resume`` refuses the run if the file changes afterwards.
    """
    import torch

    from ctframe.integrity import write_recorded

    buffer = io.BytesIO()
    torch.save(state, buffer)
    if run_dir is None:
        return write_bytes(path, buffer.getvalue())
    return write_recorded(path, buffer.getvalue(), run_dir, kind="checkpoint")


# torch's weights-only error explains how to turn weights-only loading off: for a hostile file that is
# the wrong advice, so only the line that says what was found is kept.
_TORCH_ADVICE = re.compile(r"weights.only|please file an issue|check the documentation|pytorch 2\.6", re.I)


def _load_failure(error: BaseException) -> str:
    """What is wrong with a file ``torch.load`` refused, in one line."""
    if isinstance(error, EOFError):  # never let it reach the CLI, which would take it for Ctrl-D
        return "is empty or cut short (unexpected end of file)"
    if isinstance(error, FileNotFoundError):
        return "does not exist"
    if isinstance(error, IsADirectoryError | PermissionError):
        return f"cannot be read ({error.strerror or error})"
    text = str(error)
    if isinstance(error, pickle.UnpicklingError) and text.startswith("Weights only load failed"):
        named = re.search(r"GLOBAL ([\w.]+)", text)
        if named:
            return (
                f"was refused by weights-only loading: it names the Python object {named.group(1)}, so "
                "loading it could run code; ctframe loads only tensors and plain values"
            )
        details = [line.strip() for line in text.splitlines()[1:] if line.strip()]
        detail = next((line for line in details if not _TORCH_ADVICE.search(line)), "")
        detail = detail.split(". ")[0].rstrip(".") or "unknown content"
        return f"is not a torch checkpoint (weights-only unpickling failed: {detail})"
    sentence = first_line(error).split(". ")[0].rstrip(".") or type(error).__name__
    # a cut zip archive: torch seeks past its end (OSError) or misses the central directory
    if isinstance(error, OSError | zipfile.BadZipFile) or "zip archive" in text or "EOF" in text:
        return f"is truncated or damaged ({error.strerror if isinstance(error, OSError) else sentence})"
    return f"is not a torch checkpoint ({type(error).__name__}: {sentence})"


class _Unloadable(Exception):
    """What :func:`_load_failure` found; each caller words it into its own error."""


def _torch_load(path: Path, map_location: str, mmap: bool = False) -> Any:
    """``torch.load`` weights-only; every failure becomes one :class:`_Unloadable` line."""
    import torch

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # noise beside the error
            # mmap reads no tensor data (a cheap structural check) but works only on zip checkpoints
            mmap = mmap and zipfile.is_zipfile(path)
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as error:
        raise _Unloadable(_load_failure(error)) from None


def load_checkpoint(
    path: Path,
    map_location: str = "cpu",
    *,
    required: Sequence[str] = (),
    error_type: type[Exception] | None = None,
    mmap: bool = False,
) -> dict[str, Any]:
    """Load a checkpoint with weights-only unpickling (no arbitrary code runs).

    Every checkpoint read goes through here. A missing, empty, truncated or damaged file, one carrying
    code, and a dictionary that lacks the ``required`` keys (a plain state dict, say) raise
    ``error_type`` (default :class:`~ctframe.errors.RunError`) with one line naming the file.
    ``mmap`` maps tensor data instead of reading it: enough to check a file's structure cheaply.
    """
    import torch

    from ctframe.errors import RunError

    error_type = error_type or RunError
    path = Path(path)
    try:
        state = _torch_load(path, map_location, mmap)
    except _Unloadable as failure:
        raise error_type(f"checkpoint {path} {failure}; restore the file, or start a new run") from None
    if not isinstance(state, dict):
        raise error_type(f"checkpoint {path} holds a {type(state).__name__}, not a checkpoint dictionary")
    missing = [key for key in required if key not in state]
    if missing:
        keys = ", ".join(repr(key) for key in missing)
        if state and all(isinstance(value, torch.Tensor) for value in state.values()):
            raise error_type(
                f"checkpoint {path} is a plain state dict of {len(state)} tensors, not a checkpoint "
                f"(no {keys}); restore the file, or start a new run"
            )
        raise error_type(f"checkpoint {path} lacks {keys}; it is not a checkpoint of this kind")
    return state


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
    what = f"cannot read a torch state dict from {path}"
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as error:
            raise error_type(f"{what}: {type(error).__name__}: {first_line(error)}") from None
    else:
        try:
            state = _torch_load(path, "cpu")
        except _Unloadable as failure:
            raise error_type(f"{what}: it {failure}") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise error_type(f"{path} does not hold a flat state dict of tensors")
    return state
