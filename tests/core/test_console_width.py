"""Tables written to a file or a pipe keep their full width (issue 25): rich fits tables to 80 columns
when stdout is not a terminal, which cut names to ``SHORTC…``; ctframe's consoles are wide there, and log
lines on such a console still wrap at LOG_WIDTH instead of being padded to it."""

from __future__ import annotations

import io
import logging
import subprocess
import sys

from rich.console import Console

from ctframe.workflows.runlog import LOG_WIDTH


def test_a_piped_table_is_not_cut():
    result = subprocess.run(
        [sys.executable, "-m", "ctframe", "list-plugins"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) > 80  # full descriptions, one row each


def test_log_lines_on_a_wide_pipe_are_not_padded(tmp_path):
    from ctframe.storage.rundir import RunDirectory
    from ctframe.workflows.runlog import logging_to

    stream = io.StringIO()
    wide = Console(file=stream, width=1000, highlight=False, soft_wrap=True)
    with logging_to(RunDirectory(tmp_path), wide) as logger:
        logger.info("a short line")
        logging.getLogger("ctframe").info("x" * 300)
    lines = stream.getvalue().splitlines()
    assert lines and all(len(line) <= LOG_WIDTH for line in lines)
    assert "a short line" in lines[0]
