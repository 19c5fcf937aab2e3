"""A training process killed with SIGKILL and resumed ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ctframe.storage.checkpoints import load_checkpoint
from tests.conftest import REPO, TESTS
from tests.plugins.two_phase.test_trainer_toys import run_resume_scenario

TOYS = TESTS / "plugins" / "two_phase" / "test_trainer_toys.py"


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # the subprocesses use one thread too: same bits


def _start(run_dir: Path, mode: str, log: Path) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with open(log, "wb") as handle:
        return subprocess.Popen(
            [sys.executable, str(TOYS), str(run_dir), mode], stdout=handle, stderr=subprocess.STDOUT,
            env=environment,
        )


def _kill_when(process: subprocess.Popen, path: Path, log: Path, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"training exited ({process.returncode}) before {path.name}: {log.read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no {path.name} after {timeout_s} s")
        time.sleep(0.005)
    assert process.poll() is None, "the process finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL


def _without_timing(history) -> list[dict]:
    return [{k: v for k, v in record.items() if k not in ("images_per_s", "seconds")} for record in history]


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    """Killed in phase 1; the resumed run finishes phase 1 and all of phase 2. (Resuming inside
    phase 2 is covered by the Ctrl-C test in test_trainer_two_phase.py, without a second process.)"""
    run_dir = tmp_path / "run"
    checkpoints = run_dir / "checkpoints"

    process = _start(run_dir, "fresh", tmp_path / "killed.log")
    _kill_when(process, checkpoints / "initial_last.pt", tmp_path / "killed.log")
    assert load_checkpoint(checkpoints / "initial_last.pt")["epoch"] < 3
    assert not (checkpoints / "finetuned_last.pt").exists()

    resumed = run_resume_scenario(run_dir, resume=True)
    reference = run_resume_scenario(tmp_path / "reference", resume=False)

    assert [len(r.history) for r in resumed] == [4, 3]
    for got, expected in zip(resumed, reference, strict=True):
        assert _without_timing(got.history) == _without_timing(expected.history)
        assert got.state_dict.keys() == expected.state_dict.keys()
        for name, tensor in expected.state_dict.items():
            assert torch.equal(got.state_dict[name], tensor), name  # bit-identical weights
