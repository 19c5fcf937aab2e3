"""Peak memory of ``ctframe metrics`` against the rows of a predictions file and the bootstrap resamples.

    .venv/bin/python benchmarks/bench_metrics_memory.py [--rows 35000 350000] [--bootstrap 0 100 1000]
    .venv/bin/python benchmarks/bench_metrics_memory.py --smoke   # 2000 rows, bootstrap 0 and 20: seconds

Each run is a fresh ``python -m ctframe metrics`` process, so its peak resident set (``ru_maxrss`` from
``wait4``) is that run's alone. The files are written once per size into a temporary folder (``--keep``
names one to reuse); a file of 3.5M rows is about 250 MB. With a bounded bootstrap the peak grows with the
rows (every row of the file is held in memory) but not with the resamples: 1000 resamples take no more
than a full block (ctframe.evaluation.bootstrap.BLOCK_BYTES) over fewer would.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HEADER = "file,sample_id,true_class,predicted_class,positive_class,threshold,p_negative,p_positive\n"
LINES_PER_WRITE = 200_000


def write_predictions(path: Path, rows: int, decimals: int, seed: int = 0) -> None:
    """A two-class predictions file shaped like ctframe's own, with informative scores."""
    rng = np.random.default_rng(seed)
    with path.open("w", encoding="utf-8") as handle:
        handle.write(HEADER)
        for start in range(0, rows, LINES_PER_WRITE):
            count = min(LINES_PER_WRITE, rows - start)
            truth = rng.integers(0, 2, size=count)
            positive = np.clip(rng.normal(0.35 + 0.3 * truth, 0.2), 0.0, 1.0).round(decimals)
            lines = []
            for offset, (label, p) in enumerate(zip(truth.tolist(), positive.tolist(), strict=True)):
                name = f"img{start + offset:08d}"
                true_class = "positive" if label else "negative"
                predicted = "positive" if p >= 0.5 else "negative"
                scores = f"{1.0 - p:.{decimals}f},{p:.{decimals}f}"
                lines.append(f"{name}.png,{name},{true_class},{predicted},positive,0.5,{scores}\n")
            handle.write("".join(lines))


def measure(predictions: Path, bootstrap: int, output: Path) -> tuple[float, float, int]:
    """Peak RSS (MiB) and wall seconds of one ``ctframe metrics`` run, and its exit code."""
    command = [sys.executable, "-m", "ctframe", "metrics", str(predictions), "--bootstrap", str(bootstrap)]
    started = time.perf_counter()
    process = subprocess.Popen(
        [*command, "--output", str(output)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    stderr = process.stderr.read().decode() if process.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(f"  exit {code}: {stderr.strip().splitlines()[-1:] or ''}", file=sys.stderr)
    return usage.ru_maxrss / 1024, seconds, code  # ru_maxrss is KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description="peak memory of ctframe metrics against rows")
    parser.add_argument("--rows", type=int, nargs="+", default=[35_000, 350_000, 3_500_000])
    parser.add_argument("--bootstrap", type=int, nargs="+", default=[0, 100, 1000])
    # Few distinct scores: evaluation's findings (ctframe/evaluation/findings.py) try every distinct score as
    # a threshold, each over all rows, which at 6 decimals takes hours from 350k rows on.
    parser.add_argument("--decimals", type=int, default=2, help="decimals of the scores (distinct values)")
    parser.add_argument("--keep", type=Path, help="folder for the predictions files (reused when present)")
    parser.add_argument("--smoke", action="store_true", help="2000 rows, bootstrap 0 and 20")
    arguments = parser.parse_args()
    if arguments.smoke:
        arguments.rows, arguments.bootstrap = [2000], [0, 20]
    with tempfile.TemporaryDirectory() as scratch:
        folder = arguments.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        print(f"{'rows':>10} {'bootstrap':>9} {'file MB':>8} {'peak MiB':>9} {'wall s':>7} {'KiB/row':>8}")
        for rows in arguments.rows:
            predictions = folder / f"predictions_bench_{rows}_{arguments.decimals}.csv"
            if not predictions.is_file():
                write_predictions(predictions, rows, arguments.decimals)
            megabytes = predictions.stat().st_size / 1e6
            for bootstrap in arguments.bootstrap:
                peak, seconds, code = measure(
                    predictions, bootstrap, Path(scratch) / f"out_{rows}_{bootstrap}"
                )
                note = "" if code == 0 else f"  (exit {code})"
                figures = f"{megabytes:>8.1f} {peak:>9.0f} {seconds:>7.1f} {peak * 1024 / rows:>8.2f}"
                print(f"{rows:>10} {bootstrap:>9} {figures}{note}")
    print(f"load average after: {', '.join(f'{value:.2f}' for value in os.getloadavg())}")


if __name__ == "__main__":
    main()
