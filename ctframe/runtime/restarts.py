"""Workers that torchrun restarts (``--max-restarts``) continue the run their first attempt created.

Rank 0 of a job notes the run directory it created in a hidden file of the output folder, keyed by the
job; restarted workers find it there instead of starting a new run, and a completed run drops the note.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
from pathlib import Path

from ctframe.runtime.distributed import RESTART_ENV, env_int, is_main, world_size
from ctframe.storage.files import write_json
from ctframe.storage.layout import RECIPE

RUN_ID_ENV = "TORCHELASTIC_RUN_ID"
MARKER_PREFIX = ".ctframe-torchrun-"
"""Hidden file in the output folder naming the run directory a torchrun job created."""


def _job_key() -> str:
    """Names this torchrun job, the same in every restart of its workers."""
    run_id = os.environ.get(RUN_ID_ENV, "")
    if run_id and run_id != "none":
        return run_id
    # static rendezvous has no run id: the agent process (the workers' parent) outlives its workers
    parent = os.getppid()
    try:
        started = Path(f"/proc/{parent}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        started = ""
    return f"{socket.gethostname()}-{parent}-{started}"


def _marker(output: Path) -> Path:
    key = hashlib.sha256(_job_key().encode()).hexdigest()[:16]
    return Path(output) / f"{MARKER_PREFIX}{key}.json"


def remember_run(output: Path, run_path: Path) -> None:
    """Rank 0, after creating the run directory of a torchrun job: note it for restarted workers."""
    if world_size() == 1:
        return

    write_json(_marker(output), {"run": str(Path(run_path).absolute()), "job": _job_key()})


def restarted_run(output: Path) -> Path | None:
    """Rank 0 of workers restarted by torchrun: the run directory their first attempt created."""
    if world_size() == 1 or env_int(RESTART_ENV, 0) == 0:
        return None
    try:
        noted = json.loads(_marker(output).read_text(encoding="utf-8"))
        path = Path(noted["run"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # the first attempt died before it created a run directory
    return path if RECIPE.path(path).is_file() else None


def forget_run(run_path: Path) -> None:
    """Rank 0, when a run completed: drop the notes that name it (a job that died for good leaves one,
    which a later ``--resume`` of its run removes)."""
    if world_size() == 1 or not is_main():
        return
    run_path = Path(run_path).absolute()
    for marker in run_path.parent.glob(f"{MARKER_PREFIX}*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            if Path(json.loads(marker.read_text(encoding="utf-8"))["run"]) == run_path:
                marker.unlink()
