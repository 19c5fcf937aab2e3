"""What a run shows and records per epoch: a progress bar, a history CSV, TensorBoard events."""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ctframe.rundir import write_text

HISTORY_COLUMNS = (
    "epoch",
    "phase",
    "train_loss",
    "val_loss",
    "val_accuracy",
    "lr",
    "images_per_s",
    "seconds",
)


class EpochProgress:
    """A transient bar over one epoch's batches with the running loss and images/s.

    Shown only on a terminal: logs and captured output get the one summary line per epoch instead.
    """

    def __init__(self, enabled: bool):
        console = Console(stderr=True)
        self._enabled = enabled and console.is_terminal
        self._progress: Progress | None = None
        self._console = console

    def __enter__(self) -> EpochProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, description: str, batches: int) -> None:
        self.stop()
        if not self._enabled:
            return
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  {task.fields[rate]:.1f} img/s"),
            TimeRemainingColumn(),
            console=self._console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(description, total=batches, loss=float("nan"), rate=0.0)
        self._started, self._images, self._loss_sum = time.perf_counter(), 0, 0.0

    def advance(self, images: int, loss: float) -> None:
        if self._progress is None:
            return
        self._images += images
        self._loss_sum += loss * images
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        self._progress.update(
            self._task, advance=1, loss=self._loss_sum / self._images, rate=self._images / elapsed
        )

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def write_history(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    """``history_<key>.csv``, rewritten atomically from the full record list every epoch."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow(record)
    write_text(path, buffer.getvalue())


class TensorBoardLog:
    """Scalars per epoch under ``<run>/tensorboard/<key>``; silent no-op without tensorboard."""

    def __init__(self, folder: Path, enabled: bool, logger: logging.Logger):
        self._writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            logger.debug("tensorboard is not installed; no event files written")
            return
        self._writer = SummaryWriter(log_dir=str(folder))

    def log(self, record: Mapping[str, Any], step: int) -> None:
        if self._writer is None:
            return
        for name in ("train_loss", "val_loss", "val_accuracy", "lr", "images_per_s"):
            self._writer.add_scalar(name, record[name], step)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
