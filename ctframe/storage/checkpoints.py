"""Checkpoints and state dicts: written atomically, read with weights-only loading only.

Every ``torch.load`` of ctframe goes through :func:`load_checkpoint` or :func:`read_state_dict`, so no
file a run reads can run code, and every failure is one line naming the file.
"""

from __future__ import annotations

import io
import pickle
import re
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from ctframe.base.errors import DataError, RunError
from ctframe.storage import integrity
from ctframe.storage.files import first_line, write_bytes


def save_checkpoint(path: Path, state: dict[str, Any], run_dir: Any = None) -> Path:
    """``torch.save`` atomically. Keep ``state`` to tensors and plain Python values so that it
    loads with ``weights_only=True``.

    ``run_dir`` (a :class:`RunDirectory` or its path) records the file's sha256 in the run's
    ``integrity.json``, so that ``ctframe run --resume`` refuses the run if the file changes afterwards.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    if run_dir is None:
        return write_bytes(path, buffer.getvalue())
    return integrity.write_recorded(path, buffer.getvalue(), run_dir, kind="checkpoint")


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
    ``error_type`` (default :class:`~ctframe.base.errors.RunError`) with one line naming the file.
    ``mmap`` maps tensor data instead of reading it: enough to check a file's structure cheaply.
    """
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


def read_state_dict(path: Path, error_type: type[Exception] | None = None) -> dict[str, Any]:
    """A flat ``{name: tensor}`` state dict from ``.safetensors`` or a torch file, loaded weights-only.

    Unwraps the common ``{"state_dict": ...}`` / ``{"model": ...}`` checkpoint wrappers. Anything else
    (a corrupt file, a pickle carrying code, nested objects) raises ``error_type`` with one line.
    """
    error_type = error_type or DataError
    path = Path(path)
    what = f"cannot read a torch state dict from {path}"
    if path.suffix == ".safetensors":
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


def verify_run(run_dir: Any) -> None:
    """:func:`ctframe.storage.integrity.verify`, then open every recorded checkpoint weights-only without
    reading its tensors (``mmap``), so that a damaged one is found before a resumed run writes anything,
    even if its record was rewritten with it."""
    integrity.verify(run_dir)
    for path in integrity.recorded(run_dir, "checkpoint"):
        load_checkpoint(path, mmap=True)


# keyword-only parts of the message with defaults: plugins call it by keyword for their own weights files
def check_state_fits(
    expected: Mapping[str, torch.Tensor],
    given: Mapping[str, torch.Tensor],
    *,
    where: str,
    error_type: type[Exception],
    hint: str = "",
    name: Callable[[str], str] = str,
    allow_unexpected: bool = False,
) -> list[str]:
    """The one rule for "do these weights fit this model": every expected tensor present, with its shape.

    Raises ``error_type`` with one line that starts with ``where`` and ends with ``hint`` (what to do);
    ``name`` words a tensor key for the message (a layer name, say). Tensors the model lacks are refused
    too, unless ``allow_unexpected``: then their keys are returned for the caller to report.
    """
    suffix = f"; {hint}" if hint else ""
    missing = [key for key in expected if key not in given]
    unexpected = [key for key in given if key not in expected]
    if missing:
        raise error_type(
            f"{where}: lacks {len(missing)} of the model's {len(expected)} tensors "
            f"(first: {name(missing[0])!r}){suffix}"
        )
    if unexpected and not allow_unexpected:
        raise error_type(
            f"{where}: holds {len(unexpected)} tensors the model does not have (first: "
            f"{name(unexpected[0])!r}){suffix}"
        )
    for key, tensor in expected.items():
        if tuple(given[key].shape) != tuple(tensor.shape):
            raise error_type(
                f"{where}: {name(key)!r} has shape {tuple(given[key].shape)}, the model expects "
                f"{tuple(tensor.shape)}{suffix}"
            )
    return unexpected


def load_fitting_state(
    module: torch.nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    where: str,
    error_type: type[Exception],
    hint: str = "",
    name: Callable[[str], str] = str,
) -> None:
    """Load ``state`` into ``module`` after :func:`check_state_fits` (every tensor the module has, with its
    shape, and nothing else). BatchNorm's ``num_batches_tracked`` counters may be absent, as in files written
    by older torch or converted from Keras: BatchNorm's own loader fills them in."""
    expected = {
        key: tensor
        for key, tensor in module.state_dict().items()
        if key in state or not key.endswith("num_batches_tracked")
    }
    check_state_fits(expected, state, where=where, error_type=error_type, hint=hint, name=name)
    module.load_state_dict(dict(state))
