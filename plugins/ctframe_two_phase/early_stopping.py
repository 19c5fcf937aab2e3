"""Early stopping on validation loss with Keras' rules."""

from __future__ import annotations

import math
from typing import Any


class EarlyStopping:
    """An epoch improves when ``val_loss < best - min_delta``; stop after ``patience`` epochs
    without improvement (Keras ``EarlyStopping(monitor="val_loss")``)."""

    def __init__(self, patience: int, min_delta: float = 0.0):
        self.patience = patience
        self.min_delta = min_delta
        self.best = math.inf
        self.best_epoch = -1
        self.wait = 0

    @property
    def stopped(self) -> bool:
        return self.wait >= self.patience

    def update(self, val_loss: float, epoch: int) -> bool:
        """Record one epoch; return whether it is the new best."""
        if val_loss < self.best - self.min_delta:
            self.best, self.best_epoch, self.wait = val_loss, epoch, 0
            return True
        self.wait += 1
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = float(state["best"])
        self.best_epoch = int(state["best_epoch"])
        self.wait = int(state["wait"])
