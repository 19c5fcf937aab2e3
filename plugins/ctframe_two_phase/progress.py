"""What a run shows and records per epoch: a progress bar, a history CSV, TensorBoard events."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

_SAID: list[bool] = []
"""Whether the missing tensorboard package was already named in this process."""


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
            TextColumn("loss {task.fields[loss]}  {task.fields[rate]} img/s"),
            TimeRemainingColumn(),
            console=self._console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(description, total=batches, loss="-", rate="-")
        self._started, self._images, self._loss_sum = time.perf_counter(), 0, 0.0

    def advance(self, images: int, loss: float) -> None:
        if self._progress is None:
            return
        self._images += images
        self._loss_sum += loss * images
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        self._progress.update(
            self._task,
            advance=1,
            loss=f"{self._loss_sum / self._images:.4f}",
            rate=f"{self._images / elapsed:.1f}",
        )

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class TensorBoardLog:
    """Scalars per epoch in ``<run>/tensorboard/<key>/events.out.tfevents.*``.

    Written with tensorboard's record writer and protos directly: ``torch.utils.tensorboard``
    imports TensorFlow when it is installed, which costs seconds to minutes. A silent no-op
    without the tensorboard package.
    """

    def __init__(self, folder: Path, enabled: bool, logger: logging.Logger):
        self._file = None
        if not enabled:
            return
        try:
            from tensorboard.compat.proto import event_pb2, summary_pb2
            from tensorboard.summary.writer.record_writer import RecordWriter
        except ImportError:
            if not _SAID:  # once per process: both phases would say it
                _SAID.append(True)
                logger.info(
                    "TensorBoard event files not written: the tensorboard package is not installed "
                    "(pip install 'ctframe[tensorboard]', or trainer.tensorboard = false to say nothing)"
                )
            return
        self._event, self._summary = event_pb2.Event, summary_pb2.Summary
        folder.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.{os.getpid()}"
        self._file = open(folder / name, "wb")  # noqa: SIM115 - closed in close()
        self._writer = RecordWriter(self._file)
        self._write(self._event(wall_time=time.time(), file_version="brain.Event:2"))

    def _write(self, event: Any) -> None:
        self._writer.write(event.SerializeToString())
        self._writer.flush()

    def log(self, record: Mapping[str, Any], step: int) -> None:
        if self._file is None:
            return
        values = [
            self._summary.Value(tag=name, simple_value=float(record[name]))
            for name in ("train_loss", "val_loss", "val_accuracy", "lr", "images_per_s")
        ]
        self._write(self._event(wall_time=time.time(), step=step, summary=self._summary(value=values)))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
