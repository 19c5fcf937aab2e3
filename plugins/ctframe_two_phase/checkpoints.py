"""Checkpoint files of a phase: ``checkpoints/<key>_best.pt`` and ``checkpoints/<key>_last.pt``.

Everything is tensors and plain Python so that :func:`ctframe.rundir.load_checkpoint` can load it
weights-only. ``_last.pt`` is the resume point: written atomically after every epoch, it holds the
model, optimiser, early-stopping state, history and RNG states; a run killed at any moment
resumes from the last completed epoch. Both files are recorded in the run's ``integrity.json``, so a
resume refuses a checkpoint that changed after it was written.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ctframe import RunError
from ctframe.rundir import load_checkpoint, save_checkpoint

FORMAT = 1
BEST_KEYS = ("format", "phase", "epoch", "model")
LAST_KEYS = (*BEST_KEYS, "optimizer", "early_stopping", "history", "rng")


def checkpoint_paths(run_dir: Path, key: str) -> tuple[Path, Path]:
    folder = Path(run_dir) / "checkpoints"
    return folder / f"{key}_best.pt", folder / f"{key}_last.pt"


def _run_dir(path: Path) -> Path:
    return Path(path).parent.parent  # checkpoint_paths keeps them in RUN/checkpoints/


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}


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


def save_best(path: Path, model: nn.Module, phase: str, epoch: int, val_loss: float) -> None:
    save_checkpoint(
        path,
        {"format": FORMAT, "phase": phase, "epoch": epoch, "val_loss": val_loss, "model": model_state(model)},
        run_dir=_run_dir(path),
    )


def save_last(
    path: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    phase: str,
    epoch: int,
    early_stopping: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    rank_rng: Sequence[Mapping[str, Any]] = (),
) -> None:
    """``rank_rng``: every process's :func:`capture_rng` under torchrun, in rank order."""
    state = {
        "format": FORMAT,
        "phase": phase,
        "epoch": epoch,
        "model": model_state(model),
        "optimizer": optimizer.state_dict(),
        "early_stopping": dict(early_stopping),
        "history": [dict(record) for record in history],
        "rng": capture_rng(),
    }
    if rank_rng:
        state["rank_rng"] = [dict(entry) for entry in rank_rng]
    save_checkpoint(path, state, run_dir=_run_dir(path))


def load(path: Path) -> dict[str, Any]:
    """A phase checkpoint; a damaged or foreign file is a one-line :class:`RunError` naming it."""
    # the trainer loads both kinds through here; a _last.pt must also hold everything a resume restores
    required = LAST_KEYS if Path(path).stem.endswith("_last") else BEST_KEYS
    state = load_checkpoint(path, required=required)
    if state["format"] != FORMAT:
        raise RunError(
            f"checkpoint {path} has format {state['format']!r}; this two_phase trainer reads format {FORMAT}"
        )
    return state
