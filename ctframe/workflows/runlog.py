"""A run's log: everything in ``run.log`` (rank 0), messages alone on the console, tracebacks never there."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from rich.console import Console
from rich.logging import RichHandler

from ctframe.runtime import distributed
from ctframe.storage.layout import LOG
from ctframe.storage.rundir import RunDirectory
from ctframe.workflows.assembly import LOGGER_NAME

LOG_WIDTH = 120
"""Log lines on a console that is not a terminal wrap here (rich pads each to the console's width)."""

FILE_ONLY = "ctframe_file_only"
"""Set in a log record's ``extra`` to keep it out of the console (a traceback goes to run.log only)."""


class _ConsoleFormatter(logging.Formatter):
    """The message alone: a record's traceback (a plugin's ``logger.exception``) stays in run.log."""

    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage()


def _console_wanted(record: logging.LogRecord) -> bool:
    return not getattr(record, FILE_ONLY, False)


@contextlib.contextmanager
def logging_to(run_dir: RunDirectory, console: Console | None) -> Iterator[logging.Logger]:
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handlers: list[logging.Handler] = [logging.NullHandler()]  # other ranks: no console, no run.log
    if distributed.is_main():
        file_handler = logging.FileHandler(LOG.path(run_dir), encoding="utf-8")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handlers = [file_handler]
    if console is not None and distributed.is_main():
        if not console.is_terminal and console.width > LOG_WIDTH:  # a wide pipe keeps tables whole; a log
            console = Console(file=console.file, width=LOG_WIDTH, highlight=False)  # line is not padded to it
        console_handler = RichHandler(console=console, show_path=False, show_time=False, markup=False)
        console_handler.setFormatter(_ConsoleFormatter())
        console_handler.addFilter(_console_wanted)
        handlers.append(console_handler)
    for handler in handlers:
        logger.addHandler(handler)
    try:
        yield logger
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
