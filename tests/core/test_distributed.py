"""torchrun + DDP on the CPU (gloo): a tiny recipe on 2 processes against 1 process, rank-0-only files,
early stopping that agrees across ranks, and a worker killed with SIGKILL that torchrun restarts.

Every run is a real ``torchrun`` (``python -m torch.distributed.run --standalone``) of
``python -m ctframe run``: the dense head and the two-phase trainer on the toy plugin's data and
one-convolution backbone (tests/toy), which learns within seconds, so that the probabilities compared
are not all alike.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TESTS, install_distribution
from tests.tolerances import DDP_LOSS_RTOL, DDP_PROBABILITY_ATOL
from tests.toy.recipe import toy_recipe_text

PLUGINS = "toy,dense_head,two_phase"

# No dropout and no BatchNorm in training mode: the model's arithmetic is then the same whether one
# process takes a batch of 8 or two take 4 each (torch has no CPU SyncBatchNorm). The fine-tuning phase
# is built to stop early: min_delta = 10 makes every epoch after the first "no improvement", so with
# patience 1 it stops after epoch 2 of 4. Each image read sleeps 20 ms, so that a fine-tuning epoch
# (which reads its images) lasts long enough to be killed in the middle.
RECIPE = toy_recipe_text(
    run={"seed": 3, "distributed": {"timeout_minutes": 3}},
    dataset={"samples": 40, "size": 16, "delay_s": 0.02},
    backbone={"channels": 8},
    head={"component": "dense", "units": 16, "l2": 0.0, "batchnorm": False, "dropout": 0.0},
    trainer={
        "component": "two_phase",
        "batch_size": 8,
        "progress": False,
        "precision": "fp32",
        "initial": {"epochs": 4, "lr": 1e-2},
        "finetuned": {
            "epochs": 4,
            "lr": 1e-3,
            "unfreeze_last": 2,
            "finetune_batchnorm": False,
            "patience": 1,
            "min_delta": 10.0,
        },
    },
    evaluation={"bootstrap": 50},
)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    install_distribution(root / "site", TESTS / "toy" / "toy_ctframe.py", "toy_ctframe", "toy")
    (root / "tiny.toml").write_text(RECIPE)
    return root


def _command(study: Path, output: Path, processes: int, *torchrun: str) -> list[str]:
    ctframe = ["-m", "ctframe", "run", str(study / "tiny.toml"), "--output", str(output)]
    if processes == 1:
        return [sys.executable, *ctframe]
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", *torchrun]
    return [sys.executable, *launcher, *ctframe]


def _environment(study: Path) -> dict[str, str]:
    # one thread per process (torchrun's own default for its workers): the same arithmetic in both runs
    path = os.pathsep.join(filter(None, [str(study / "site"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "CTFRAME_PLUGINS": PLUGINS, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}


def _run(study: Path, name: str, processes: int) -> tuple[Path, str]:
    output = study / name
    command = _command(study, output, processes)
    done = subprocess.run(command, capture_output=True, text=True, env=_environment(study), timeout=600)
    text = done.stdout + done.stderr
    assert done.returncode == 0, text[-3000:]
    return output, text


@pytest.fixture(scope="module")
def runs(study) -> dict[int, tuple[Path, str]]:
    return {processes: _run(study, f"runs{processes}", processes) for processes in (1, 2)}


def _run_dir(output: Path) -> Path:
    (run,) = [path for path in output.iterdir() if not path.name.startswith(".")]
    return run


def _history(run: Path, key: str) -> list[dict[str, str]]:
    with open(run / f"history_{key}.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _predictions(run: Path, key: str) -> tuple[list[str], np.ndarray]:
    with open(run / f"predictions_{key}.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [r["sample_id"] for r in rows], np.array([float(r["p_bright"]) for r in rows])


def _files(run: Path) -> list[str]:
    names = []
    for path in sorted(run.rglob("*")):
        if path.is_file():
            relative = path.relative_to(run).as_posix()
            if relative.startswith("tensorboard/"):  # event file names carry a time stamp and a pid
                relative = relative.rsplit("/", 1)[0] + "/events"
            names.append(relative)
    return names


def _metric_values(run: Path) -> dict[str, float]:
    metrics = json.loads((run / "metrics.json").read_text())
    return {
        f"{key}/{name}/{part}": value[part]
        for key, model in metrics["models"].items()
        for name, value in model["metrics"].items()
        for part in ("value", "ci_low", "ci_high")
    }


def test_two_processes_match_one_process(runs):
    """Same global batch, same batches: the runs differ only in float rounding (see tolerances.py)."""
    one, two = _run_dir(runs[1][0]), _run_dir(runs[2][0])
    for key in ("initial", "finetuned"):
        h1, h2 = _history(one, key), _history(two, key)
        assert [r["epoch"] for r in h1] == [r["epoch"] for r in h2]
        for r1, r2 in zip(h1, h2, strict=True):
            for column in ("train_loss", "val_loss"):
                assert float(r2[column]) == pytest.approx(float(r1[column]), rel=DDP_LOSS_RTOL), (key, column)
            assert r1["val_accuracy"] == r2["val_accuracy"]
        ids1, p1 = _predictions(one, key)
        ids2, p2 = _predictions(two, key)
        assert ids1 == ids2  # every test image exactly once, in the single-process order
        assert np.abs(p1 - p2).max() <= DDP_PROBABILITY_ATOL, key
    assert p1.std() > 0.01  # the model learned something: the comparison is not between constants
    m1, m2 = _metric_values(one), _metric_values(two)
    assert m1.keys() == m2.keys()
    for name, value in m1.items():
        assert m2[name] == pytest.approx(value, abs=1e-9), name
    environment = json.loads((two / "environment.json").read_text())
    assert environment["distributed"]["world_size"] == 2
    assert environment["distributed"]["backend"] == "gloo"
    assert "distributed" not in json.loads((one / "environment.json").read_text())


def test_only_rank_zero_writes_and_logs(runs):
    (one_output, _), (two_output, console) = runs[1], runs[2]
    assert [p.name for p in two_output.iterdir()] == [_run_dir(two_output).name]  # one run, no marker
    one, two = _run_dir(one_output), _run_dir(two_output)
    assert _files(two) == _files(one)  # nothing from rank 1: no second TensorBoard file, no stray file
    assert console.count("starting run") == 1
    assert console.count("initial epoch 1/4") == 1
    assert console.count("run directory:") == 1


def test_early_stopping_agrees_across_ranks(runs):
    """Rank 0 and rank 1 take the decision on the same all-reduced val_loss (and check that they agree
    after every epoch): both stop after epoch 2; a rank that went on would hang or fail the run."""
    for processes in (1, 2):
        run = _run_dir(runs[processes][0])
        assert len(_history(run, "finetuned")) == 2
        assert "finetuned: early stopping after epoch 2" in (run / "run.log").read_text()


def test_one_process_needs_no_torch_distributed():
    """``import ctframe`` (and its distributed module) imports no torch; in one process every helper is
    the identity and nothing joins a process group."""
    code = (
        "import sys, ctframe, ctframe.runtime.distributed as d, ctframe.runtime.sharding as s\n"
        "assert 'torch' not in sys.modules\n"
        "assert (d.world_size(), d.rank(), d.is_main(), d.active()) == (1, 0, True, False)\n"
        "assert s.shard_range(7) == (0, 7) and d.gather(3) == [3]\n"
        "assert d.sum_over_ranks([1.5, 2]) == [1.5, 2]\n"
        "assert s.shard_batches([[1, 2], [3]]) == [[1, 2], [3]] and s.rank_seed(5) == 5\n"
        "assert d.from_main(lambda: 4) == 4 and d.local_device('cuda:1') == 'cuda:1'\n"
        "assert 'torch' not in sys.modules\n"
    )
    environment = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    subprocess.run([sys.executable, "-c", code], check=True, env=environment, timeout=60)


PROBE = """
from types import SimpleNamespace
import numpy as np
from ctframe import RunError
from ctframe.runtime import distributed as d
from ctframe.runtime import sharding as s
from ctframe.base.training import Predictions
d.join(SimpleNamespace(backend="auto", sync_batchnorm="auto", timeout_minutes=1), "cpu")
me, world = d.rank(), d.world_size()
# shares of 7 items over 3 processes: contiguous, no padding, every item once
assert d.gather(s.shard_range(7)) == [(0, 2), (2, 4), (4, 7)]
items = [(i, str(i)) for i in range(2)]  # fewer items than processes: some shares are empty
def score(share):
    ids = tuple(str(share[i][1]) for i in range(len(share)))
    return Predictions(ids, np.arange(len(ids)), np.ones((len(ids), 2)) / 2)
assert s.map_shards(items, score, s.concat_predictions).sample_ids == ("0", "1")
assert s.shard_batches([[0, 1, 2, 3, 4, 5, 6]]) == [[[0, 1], [2, 3], [4, 5, 6]][me]]
assert d.sum_over_ranks([me, 1.0]) == [3.0, 3.0]
assert d.from_main(lambda: me + 10) == 10
def refuse():
    raise RunError("rank 0 says no")
try:
    d.from_main(refuse)  # only rank 0 runs it; every rank raises its error
    raise SystemExit("no error")
except RunError as error:
    assert str(error) == "rank 0 says no", error
d.check_agree("same", "a value")
try:
    d.check_agree(me == 2, "the stop decision")
    raise SystemExit("no error")
except RunError as error:
    assert str(error) == "processes disagree on the stop decision: rank 2 has True, rank 0 has False", error
d.leave()
print("probe ok", me)
"""


def test_collectives_on_three_processes(tmp_path):
    """The helpers of ctframe.runtime.distributed across 3 gloo processes: shares, gathers, broadcast
    errors and the agreement check that turns a diverging decision into one error instead of a hang."""
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=3"]
    command = [sys.executable, *launcher, str(script)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert done.stdout.count("probe ok") == 3


def _worker(launcher: int, rank: int) -> int | None:
    """The pid of torchrun's worker process with this rank (a child of the launcher)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if parent == launcher and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


def test_sigkill_of_one_worker_then_torchrun_restart_gives_the_same_run(study, runs):
    """SIGKILL of rank 1 in fine-tuning epoch 2: torchrun (--max-restarts 1) restarts both workers, which
    find the run their first attempt created and continue from the last complete epoch."""
    output = study / "killed"
    command = _command(study, output, 2, "--max-restarts=1")
    log = study / "killed.log"
    with open(log, "w") as handle:
        launcher = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=_environment(study))
    try:
        deadline = time.monotonic() + 300
        while not list(output.glob("*/checkpoints/finetuned_last.pt")):
            assert launcher.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no fine-tuning epoch within 300 s"
            time.sleep(0.02)
        worker = _worker(launcher.pid, 1)
        assert worker is not None, "rank 1 not found"
        os.kill(worker, signal.SIGKILL)
        assert launcher.wait(timeout=400) == 0, log.read_text()[-3000:]
    finally:
        if launcher.poll() is None:
            launcher.kill()
    text = log.read_text()
    assert "resuming run" in text and "finetuned: resuming after epoch 1/4" in text, text[-3000:]
    killed, reference = _run_dir(output), _run_dir(runs[2][0])
    assert [p.name for p in output.iterdir()] == [killed.name]  # the restart note is gone
    for key in ("initial", "finetuned"):
        columns = ("epoch", "train_loss", "val_loss", "val_accuracy")
        assert [[r[c] for c in columns] for r in _history(killed, key)] == [
            [r[c] for c in columns] for r in _history(reference, key)
        ]
        assert _predictions(killed, key)[0] == _predictions(reference, key)[0]
        assert np.array_equal(_predictions(killed, key)[1], _predictions(reference, key)[1])
    assert _metric_values(killed) == _metric_values(reference)
