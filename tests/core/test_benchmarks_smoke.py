"""Every benchmark runs in ``--smoke`` mode and prints its table, so none can rot unnoticed.

Parametrised over the files in ``benchmarks/``: a new benchmark without ``--smoke`` (argparse exits 2 on
an unknown option) or without an entry in ``TABLES`` fails here.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

BENCHMARKS = REPO / "benchmarks"
SCRIPTS = sorted(BENCHMARKS.glob("*.py"))

# Lines each script's result table or figures must contain: headers and row labels, not numbers.
TABLES = {
    "bench_backbone.py": [
        "config                       mode     batch    img/s    keras   ratio  target",
        "fp32                         forward ",
        "fp32                         train ",
        "bf16+channels_last           train ",
        "channels_last+fold           forward ",
        "bf16+channels_last+compile   forward ",
        "bf16+channels_last+compile   train ",
        "load average after:",
    ],
    "bench_study.py": [
        "run                            phase 1 img/s   ratio phase 2 img/s   ratio   wall s speed-up",
        "keras ",
        "ctframe as shipped ",
        "ctframe fp32 ",
        "ctframe + augmentation bank ",
        "where the wall time went (s): start-up, data, model, phase 1, phase 2, predictions, evaluation",
        "load average after:",
    ],
    "bench_feature_cache.py": [
        "s/epoch (median)",
        "uncached (frozen backbone)",
        "cached features",
        "one-time cache build:",
    ],
    "bench_prefix_cache.py": [
        "path                   train img/s  val img/s  epoch s  ratio",
        "uncached ",
        "cached prefix ",
        "cache: ",
        "load average after:",
    ],
    "bench_images.py": [
        "images/s",
        "reference: PIL open+RGB+resize",
        "cold: read+sha256+decode+RGB+resize, 2 worker(s)",
        "cached: dataset[i] from memory",
        "cached: dataset[i] from disk",
        "uncached: dataset[i] decodes",
    ],
    "bench_similarity.py": [
        "image side  thumbnail pillow ref  ratio",
        "full matrix (ref)",
        "blocked, batch 16",
        "leakage_check (same sizes, no classes):",
        "group_sequences on 200 files",
    ],
    "bench_ct_volumes.py": [
        "tree written: ",
        "series   files discover s  files/s ref files/s  ratio  peak MiB kept B/file RSS rise MiB",
        "peak memory ",
        "pydicom pixel_array * slope + intercept (ref)",
        "Series.volume() ",
        "numpy + Pillow, 1 window (lung) (ref)",
        "slice_images, 1 window (lung) ",
        "slice_images, 3 windows (lung, mediastinum, bone) ",
        "cold build (decode + window + resize + write entry) ",
        "warm build (entries read back, every item touched) ",
        "epoch: every item from the open memory maps ",
        "cache bytes per slice: ",
        "load average after:",
    ],
    "bench_eval_precision.py": ["precision     img/s", "fp32 ", "bf16 ", "fp32 / bf16 time:"],
    "bench_metrics_memory.py": ["rows bootstrap  file MB  peak MiB  wall s  KiB/row", "load average after:"],
    "bench_phase2_memory.py": [
        "precision  checkpointing  peak GB estimate GB  s / step",
        "fp32                  on ",
        "bf16                 off ",
        "precision  plain s / step  checkpointed / plain",
        "load average after:",
    ],
    "bench_shared_prediction.py": [
        "path                                 s  img/s per model  ratio",
        "each model on its own (ref)",
        "shared prefix once",
        "largest probability difference:",
        "load average after:",
    ],
    "bench_predict.py": ["bare forward (decoded images in memory)", "ctframe predict (files", "predict /"],
    "evaluation_bootstrap.py": ["vectorised s", "roc_auc", "f1 (macro)", "all ", "evaluate(): 2 models"],
    "sequence_evidence.py": [
        "pair similarity (Pearson correlation of thumbnails):",
        "candidate threshold:",
        "sequence groups at the default threshold",
        "grouped by sequence",
    ],
}
KERAS = all(importlib.util.find_spec(name) is not None for name in ("tensorflow", "keras"))


def _smoke_environment() -> dict[str, str]:
    # One thread: the suite shares a few cores; smoke numbers mean nothing anyway.
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    environment.pop("CTFRAME_PLUGINS", None)  # the scripts choose their plugins themselves
    return environment


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=[script.name for script in SCRIPTS])
def test_benchmark_runs_in_smoke_mode(script: Path, tmp_path: Path) -> None:
    assert script.name in TABLES, f"add the lines {script.name}'s table prints to TABLES in {__file__}"
    result = subprocess.run(
        [sys.executable, str(script), "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # a benchmark must not depend on the working directory or write into the checkout
        env=_smoke_environment(),
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{script.name} --smoke exited {result.returncode}:\n{output[-4000:]}"
    missing = [line for line in TABLES[script.name] if line not in result.stdout]
    assert not missing, f"{script.name} --smoke did not print {missing}:\n{result.stdout[-4000:]}"
    if script.name == "bench_backbone.py":
        # The Keras reference (a subprocess) is part of the smoke run wherever the extra is installed.
        expected = "keras 3" if KERAS else "keras: not installed"
        assert expected in result.stdout, result.stdout[-4000:]
