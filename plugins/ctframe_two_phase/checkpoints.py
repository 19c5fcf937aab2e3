"""Checkpoint files of a phase: ``checkpoints/<key>_best.pt`` and ``checkpoints/<key>_last.pt``.

Everything is tensors and plain Python so that :func:`ctframe.rundir.load_checkpoint` can load it
weights-only. ``_last.pt`` is the resume point: written atomically after every epoch, it holds the
model, optimiser, early-stopping state, history and RNG states; a run killed at any moment
resumes from the last completed epoch.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ctframe.rundir import load_checkpoint, save_checkpoint

FORMAT = 1


def checkpoint_paths(run_dir: Path, key: str) -> tuple[Path, Path]:
    folder = Path(run_dir) / "checkpoints"
    return folder / f"{key}_best.pt", folder / f"{key}_last.pt"


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
) -> None:
    save_checkpoint(
        path,
        {
            "format": FORMAT,
            "phase": phase,
            "epoch": epoch,
            "model": model_state(model),
            "optimizer": optimizer.state_dict(),
            "early_stopping": dict(early_stopping),
            "history": [dict(record) for record in history],
            "rng": capture_rng(),
        },
    )


def load(path: Path) -> dict[str, Any]:
    state = load_checkpoint(path)
    if state.get("format") != FORMAT:
        raise ValueError(f"{path} has checkpoint format {state.get('format')!r}, expected {FORMAT}")
    return state
