"""Checkpoint files of a phase: ``checkpoints/<key>_best.pt`` and ``checkpoints/<key>_last.pt``.

Everything is tensors and plain Python so that :func:`ctframe.storage.checkpoints.load_checkpoint` can load it
weights-only. ``_last.pt`` is the resume point: written atomically after every epoch, it is a
:class:`~ctframe_two_phase.phase.PhaseState` (model, optimiser, early-stopping state, history and RNG
states); a run killed at any moment resumes from the last completed epoch. Both files are recorded in
the run's ``integrity.json``, so a resume refuses a checkpoint that changed after it was written.

A phase cannot change its frozen layers (:class:`FrozenPart`: modules whose parameters are all frozen,
which run in inference mode), so its checkpoints leave them out and record their names and one sha256
instead: in phase 1 that is the whole backbone, so the two checkpoints of an epoch hold the head only
(ResNet101V2 with the study's head: 8.1 MiB per file instead of 170.8 MiB). :func:`restore` takes those
tensors from the model it loads into, after checking the hash, so a resumed run whose rebuilt model
differs from the one that was trained is refused instead of trusted.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ctframe import RunError
from ctframe.api.training import load_checkpoint, save_checkpoint
from ctframe_two_phase.run_files import BEST_CHECKPOINT, LAST_CHECKPOINT

FORMAT = 2
"""2 adds ``optimizer_name`` to ``_last.pt`` (format 1 files, always RMSprop, still load)."""
BEST_KEYS = ("format", "phase", "epoch", "model")
LAST_KEYS_FORMAT_1 = (*BEST_KEYS, "optimizer", "early_stopping", "history", "rng")
LAST_KEYS = (*LAST_KEYS_FORMAT_1, "optimizer_name")


def checkpoint_paths(run_dir: Path, key: str) -> tuple[Path, Path]:
    return BEST_CHECKPOINT.path(run_dir, key), LAST_CHECKPOINT.path(run_dir, key)


def model_state(model: nn.Module, leave_out: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    skipped = set(leave_out)
    return {
        name: tensor.detach().cpu().clone()
        for name, tensor in model.state_dict().items()
        if name not in skipped
    }


def fingerprint(state: Mapping[str, torch.Tensor], keys: Sequence[str]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of ``state[key]`` for ``keys``, in order."""
    digest = hashlib.sha256()
    for key in keys:
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


@dataclass(frozen=True)
class FrozenPart:
    """The state-dict entries a phase cannot change, and their hash at the phase's start."""

    keys: tuple[str, ...]
    sha256: str

    @classmethod
    def of(cls, model: nn.Module) -> FrozenPart:
        """Parameters and persistent buffers of every module whose own parameters are all frozen (such a
        BatchNorm runs in inference mode, so its statistics stay too); computed once per phase."""
        keys = []
        for name, module in model.named_modules():
            parameters = list(module.parameters(recurse=False))
            if not parameters or any(p.requires_grad for p in parameters):
                continue
            prefix = f"{name}." if name else ""
            keys += [prefix + n for n, _ in module.named_parameters(recurse=False)]
            keys += [prefix + n for n in module._buffers if n not in module._non_persistent_buffers_set]
        state = model.state_dict()
        keys = [key for key in keys if key in state]
        return cls(tuple(keys), fingerprint(state, keys))

    def record(self) -> dict[str, Any]:
        return {"keys": list(self.keys), "sha256": self.sha256}


def restore(model: nn.Module, state: Mapping[str, Any], path: Path | str) -> None:
    """Load a checkpoint's weights into ``model``; the entries it left out as frozen come from ``model``
    itself once their hash matches (else a one-line :class:`RunError`)."""
    weights = dict(state["model"])
    frozen = state.get("frozen")
    if frozen:
        keys = list(frozen["keys"])
        current = model.state_dict()
        missing = [key for key in keys if key not in current]
        if missing or fingerprint(current, keys) != frozen["sha256"]:
            raise RunError(
                f"checkpoint {path} leaves out {len(keys)} frozen tensors of its phase, and this model's "
                "differ from the ones it was trained with (the starting weights or the code that builds the "
                "model changed since the run started): start a new run"
            )
        weights.update({key: current[key] for key in keys})
    model.load_state_dict(weights, strict=True)


def capture_rng() -> dict[str, Any]:
    """RNG states of python, numpy and torch (CPU and CUDA) as tensors and plain values."""
    version, mt_state, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    state: dict[str, Any] = {
        "python": [version, list(mt_state), gauss],
        "numpy": [
            kind,
            torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            int(position),
            int(has_gauss),
            float(cached),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch; the trainer calls it at the start of every epoch so that
    an epoch's randomness (order, dropout, augmentation) depends only on (seed, phase, epoch)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, phase_index: int, epoch: int) -> int:
    return (seed * 1_000_003 + phase_index * 10_007 + epoch) % 2**62


def save(path: Path, checkpoint: Mapping[str, Any], *, run_dir: Path) -> None:
    """Write a phase checkpoint atomically (``PhaseState.weights`` or ``PhaseState.to_checkpoint``);
    ``run_dir``: the run whose integrity record notes the file (a scratch folder when validating)."""
    save_checkpoint(path, dict(checkpoint), run_dir=run_dir)


def load(path: Path) -> dict[str, Any]:
    """A phase checkpoint; a damaged or foreign file is a one-line :class:`RunError` naming it."""
    # the trainer loads both kinds through here; a _last.pt must also hold everything a resume restores
    last = Path(path).stem.endswith("_last")
    state = load_checkpoint(path, required=LAST_KEYS_FORMAT_1 if last else BEST_KEYS)
    if state["format"] not in (1, FORMAT):
        raise RunError(
            f"checkpoint {path} has format {state['format']!r}; this two_phase trainer reads formats 1 to "
            f"{FORMAT}"
        )
    if last and state["format"] == 1:
        state["optimizer_name"] = "rmsprop"  # the only optimiser format 1 knew
    elif last and "optimizer_name" not in state:
        raise RunError(f"checkpoint {path} lacks 'optimizer_name'; restore the file, or start a new run")
    return state
