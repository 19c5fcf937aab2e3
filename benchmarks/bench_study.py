"""The whole study recipe against the study's Keras pipeline, at equal epochs, on a folder of images.

    .venv/bin/python benchmarks/bench_study.py [--root FOLDER] [--initial-epochs 2] [--finetuned-epochs 1]
    .venv/bin/python benchmarks/bench_study.py --copies 5   # the 120-image shared sample as 600 images
    .venv/bin/python benchmarks/bench_study.py --smoke    # ResNet50V2 at 32 px on 12 generated images

Runs, one after another and each in its own process so that peak RSS is each run's own:

* ``keras``: ``benchmarks/keras/study.py``, the study's pipeline in Keras (tensorflow never shares a
  process with torch), fp32 as the study ran it, augmenting as the recipe does;
* ``ctframe run recipes/covid_ct.toml`` as shipped (``precision = "auto"``: bf16 on a CPU with native
  bf16), then with ``precision = "fp32"``, then with ``trainer.augmentation_bank = K``; on request
  (``--variants``) with ``trainer.prefix_bank = K`` (``prefixbank``) or both banks (``banks``).

Every run gets the same data, split fractions, batch size, image size, epochs (early stopping off:
patience = epochs), random backbone weights (speed does not depend on them) and threads. Per phase the
table shows training images per second of the whole phase (train images x epochs / phase seconds;
validation, any cache or bank building and ctframe's per-epoch checkpoints included), then wall time
(process start to exit: model building, decoding, predictions and for ctframe the report included) and
peak RSS, each as a ratio to Keras. ``--copies N`` writes each image N times (as it is, mirrored, flipped,
rotated: distinct files, so that no grouping merges them) to a temporary folder first: speed and memory
depend on the number and size of images, not on what they show, and the shared sample has 120 of the
release's 2481. ``--smoke`` shrinks everything to seconds (Keras runs eagerly: tracing
its graphs would take most of a tiny run; ctframe's intervals take 20 resamples): its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KERAS_STUDY = Path(__file__).resolve().parent / "keras" / "study.py"
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "sarscov2-ct-sample"
PHASES = ("initial", "finetuned")
# name -> minimum speed-up of the whole run against Keras (issue 15's targets, native-bf16 CPU)
TARGETS = {"ctframe as shipped": 3.0, "ctframe + augmentation bank": 5.0}
MAX_RSS_GB = 3.0
STEPS = ("start-up", "data", "model", "phase 1", "phase 2", "predictions", "evaluation", "report", "exit")
"""A ctframe run's wall time, cut at its run.log lines: process start -> "starting run" (imports,
registry) -> "data:" (decoding, split) -> phase 1 opens (model building, weights) -> phase 1 -> phase 2
-> "predicted validation and test" -> "evaluated" (metrics, intervals, plots' data) -> "finished"
(model files, report) -> process exit."""


@dataclass
class Result:
    name: str
    wall: float
    peak_rss: int
    """bytes"""
    phase_seconds: dict[str, float] = field(default_factory=dict)
    phase_images: dict[str, int] = field(default_factory=dict)
    note: str = ""
    steps: dict[str, float] = field(default_factory=dict)
    """Where a ctframe run's wall time went (:data:`STEPS`), seconds."""

    def images_per_s(self, phase: str) -> float | None:
        seconds = self.phase_seconds.get(phase)
        return self.phase_images[phase] / seconds if seconds else None


def run_measured(command: list[str], environment: dict[str, str]) -> tuple[float, int, str, float]:
    """Wall seconds, peak RSS (bytes) of the process itself, its stdout, and when it started (wall clock,
    to set against run.log's timestamps)."""
    launched = time.time()
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, env=environment, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise SystemExit(f"{command[1]} failed ({process.returncode}):\n{stderr[-3000:]}")
    return wall, usage.ru_maxrss * 1024, stdout, launched  # ru_maxrss is KiB on Linux


def keras_study(args: argparse.Namespace, environment: dict[str, str]) -> Result:
    command = [sys.executable, str(KERAS_STUDY), "--root", str(args.root), "--arch", args.arch]
    command += ["--size", str(args.size), "--batch-size", str(args.batch_size)]
    command += ["--threads", str(args.threads), "--initial-epochs", str(args.initial_epochs)]
    command += ["--finetuned-epochs", str(args.finetuned_epochs)] + ["--eager"] * args.smoke
    wall, rss, stdout, _ = run_measured(command, {**environment, "KERAS_BACKEND": "tensorflow"})
    answer = json.loads(stdout.strip().splitlines()[-1])
    result = Result("keras", wall, rss, note=f"keras {answer['keras_version']}, split {answer['split']}")
    for phase in PHASES:
        result.phase_seconds[phase] = answer["phases"][phase]["seconds"]
        result.phase_images[phase] = answer["phases"][phase]["images"]
    return result


def ctframe_study(name: str, extra: list[str], args: argparse.Namespace, environment: dict[str, str]):
    output = Path(tempfile.mkdtemp(prefix="bench-study-"))
    overrides = [
        f"dataset.root={json.dumps(str(args.root))}",
        f"dataset.image_size={args.size}",
        f"dataset.classes={json.dumps(args.classes)}",
        f"dataset.positive_class={json.dumps(args.classes[-1])}",
        f"backbone.component={args.arch}",
        "backbone.weights=none",
        f"trainer.batch_size={args.batch_size}",
        f"trainer.initial.epochs={args.initial_epochs}",
        f"trainer.initial.patience={max(args.initial_epochs, 1)}",
        f"trainer.finetuned.epochs={args.finetuned_epochs}",
        f"trainer.finetuned.patience={max(args.finetuned_epochs, 1)}",
        "trainer.progress=false",
        "trainer.tensorboard=false",
        f"run.output={json.dumps(str(output))}",
        *(["evaluation.bootstrap=20"] if args.smoke else []),  # the intervals' cost is not measured
        *extra,
    ]
    command = [str(Path(sys.executable).with_name("ctframe")), "run", str(REPO / "recipes" / "covid_ct.toml")]
    for override in overrides:
        command += ["--set", override]
    try:
        wall, rss, _, launched = run_measured(command, environment)
        (run_dir,) = [path for path in output.iterdir() if path.is_dir()]
        result = Result(name, wall, rss)
        result.phase_seconds, result.phase_images = phase_times(run_dir)
        result.steps = run_steps(run_dir, launched, launched + wall)
        precision = json.loads((run_dir / "environment.json").read_text()).get("precision", {})
        result.note = f"training precision {precision.get('training', {}).get('resolved', '?')}"
    finally:  # a run directory holds checkpoints and caches: hundreds of MB per run
        shutil.rmtree(output, ignore_errors=True)
    return result


def _logged_at(line: str) -> float:
    stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    return stamp.timestamp()


def phase_times(run_dir: Path) -> tuple[dict[str, float], dict[str, int]]:
    """Seconds and training images of each phase of a ctframe run, from its run.log and histories.

    A phase runs from the log line that opens it (the frozen BatchNorm it folded) to its last epoch's
    line: cache or bank building, training, validation and the checkpoints written after every epoch
    but the last are all in it, as everything ``fit`` does is in Keras's phase time.
    """
    lines = (run_dir / "run.log").read_text().splitlines()
    with open(run_dir / "split_manifest.csv", newline="") as handle:
        train_images = sum(row["split"] == "train" for row in csv.DictReader(handle))
    seconds, images = {}, {}
    for phase in PHASES:
        with open(run_dir / f"history_{phase}.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        opened = [line for line in lines if f" {phase}: " in line and "folded into" in line]
        epochs = [line for line in lines if re.search(rf" {phase} epoch \d+/", line)]
        if opened and epochs:
            # the first epoch's own seconds come before its line: from the opening line to the last epoch
            seconds[phase] = _logged_at(epochs[-1]) - _logged_at(opened[0])
        else:  # fold_batchnorm off: the epochs' own seconds
            seconds[phase] = sum(float(row["seconds"]) for row in rows)
        images[phase] = train_images * len(rows)
    return seconds, images


def _smoke_folder(folder: Path) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, name in enumerate(("COVID", "non-COVID")):
        (folder / name).mkdir(parents=True)
        for index in range(6):
            pixels = rng.integers(0, 90, (40, 40, 3)) + 120 * label * (np.arange(40) > 20)[None, :, None]
            Image.fromarray(pixels.astype("uint8")).save(folder / name / f"{name}_{index}.png")
    return folder


ORIENTATIONS = (
    None,
    "FLIP_LEFT_RIGHT",
    "FLIP_TOP_BOTTOM",
    "ROTATE_90",
    "ROTATE_270",
    "ROTATE_180",
    "TRANSPOSE",
    "TRANSVERSE",
)


def _copied_folder(root: Path, copies: int, folder: Path) -> Path:
    """``root``'s class folders with each image written ``copies`` times, each in another orientation."""
    from PIL import Image

    for source in sorted(p for p in root.iterdir() if p.is_dir()):
        (folder / source.name).mkdir(parents=True)
        for file in sorted(f for f in source.iterdir() if f.is_file()):
            with Image.open(file) as image:
                image.load()
                for index, name in enumerate(ORIENTATIONS[:copies]):
                    turned = image if name is None else image.transpose(getattr(Image.Transpose, name))
                    turned.save(folder / source.name / f"{file.stem} v{index}.png")
    return folder


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="one sub-folder of images per class")
    parser.add_argument("--arch", default="resnet101v2")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--initial-epochs", type=int, default=2)
    parser.add_argument("--finetuned-epochs", type=int, default=1)
    parser.add_argument("--views", type=int, default=8, help="views per image of either bank")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="for every run")
    parser.add_argument(
        "--variants", default="keras,shipped,fp32,bank", help="of keras,shipped,fp32,bank,prefixbank,banks"
    )
    parser.add_argument(
        "--copies", type=int, default=1, choices=range(1, len(ORIENTATIONS) + 1), metavar="1-8",
        help="each image this many times (other orientations), in a temporary folder",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: checks that it runs")
    args = parser.parse_args()
    args.made = []  # folders this script wrote, removed at the end
    if args.smoke:
        args.root = _smoke_folder(Path(tempfile.mkdtemp(prefix="bench-study-smoke-")) / "images")
        args.made.append(args.root.parent)
        args.arch, args.size, args.batch_size = "resnet50v2", 32, 4  # Keras's ResNetV2 needs >= 32 px
        args.initial_epochs, args.finetuned_epochs, args.views = 1, 1, 2
        args.threads = 1  # the test suite shares the cores: more threads than free cores only spin
    args.source = args.root
    if args.copies > 1:
        args.made.append(Path(tempfile.mkdtemp(prefix="bench-study-copies-")))
        args.root = _copied_folder(args.root, args.copies, args.made[-1] / "images")
    args.root = args.root.resolve()
    args.classes = sorted(p.name for p in args.root.iterdir() if p.is_dir())
    args.images = sum(1 for name in args.classes for f in (args.root / name).iterdir() if f.is_file())
    return args


def _ratio(value: float | None, reference: float | None) -> str:
    return f"{value / reference:6.2f}x" if value and reference else "      -"


def run_steps(run_dir: Path, started: float, ended: float) -> dict[str, float]:
    """Seconds per step of :data:`STEPS`, from run.log's timestamps; {} when a line is missing."""
    lines = (run_dir / "run.log").read_text().splitlines()

    def first(pattern: str) -> float | None:
        found = next((line for line in lines if re.search(pattern, line)), None)
        return _logged_at(found) if found else None

    def last(pattern: str) -> float | None:
        found = [line for line in lines if re.search(pattern, line)]
        return _logged_at(found[-1]) if found else None

    marks = [
        started,
        first(r" (starting|resuming) run "),
        first(r" data: \d+ train"),
        first(rf" {PHASES[0]}: .*folded into") or first(rf" {PHASES[0]} epoch 1/"),
        last(rf" {PHASES[0]} epoch \d+/"),
        last(rf" {PHASES[1]} epoch \d+/"),
        first(r" predicted validation and test of "),
        first(r" evaluated in "),
        first(r" finished: "),
        ended,
    ]
    if any(mark is None for mark in marks):
        return {}
    return {step: marks[k + 1] - marks[k] for k, step in enumerate(STEPS)}


def main() -> None:
    args = parse_arguments()
    threads = str(args.threads)
    environment = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    environment.pop("CTFRAME_PLUGINS", None)
    print(f"machine: {os.cpu_count()} cores, threads {args.threads}, load average {os.getloadavg()[0]:.1f}")
    print(f"study at equal epochs: {args.arch} at {args.size} px, batch {args.batch_size}, epochs "
          f"{args.initial_epochs} + {args.finetuned_epochs}, {args.images} images in "
          f"{args.source}" + (f" ({args.copies} orientations of each)" if args.copies > 1 else "")
          + (" (smoke: numbers mean nothing)" * args.smoke))
    variants = {
        "keras": lambda: keras_study(args, environment),
        "shipped": lambda: ctframe_study("ctframe as shipped", [], args, environment),
        "fp32": lambda: ctframe_study("ctframe fp32", ["trainer.precision=fp32"], args, environment),
        "bank": lambda: ctframe_study(
            "ctframe + augmentation bank", [f"trainer.augmentation_bank={args.views}"], args, environment
        ),
        "prefixbank": lambda: ctframe_study(
            "ctframe + prefix bank", [f"trainer.prefix_bank={args.views}"], args, environment
        ),
        "banks": lambda: ctframe_study(
            "ctframe + both banks",
            [f"trainer.augmentation_bank={args.views}", f"trainer.prefix_bank={args.views}"],
            args,
            environment,
        ),
    }
    results = []
    for key in args.variants.split(","):
        results.append(variants[key]())
        last = results[-1]
        print(f"  ran {last.name}: {last.wall:.1f} s, {last.note}", flush=True)
    keras = next((r for r in results if r.name == "keras"), None)

    print()
    print(f"{'run':30s} {'phase 1 img/s':>13s} {'ratio':>7s} {'phase 2 img/s':>13s} {'ratio':>7s} "
          f"{'wall s':>8s} {'speed-up':>8s} {'peak RSS GB':>11s} {'ratio':>7s}  target")
    for result in results:
        cells = []
        for phase in PHASES:
            value = result.images_per_s(phase)
            reference = keras.images_per_s(phase) if keras else None
            cells.append(f"{value or 0:13.2f} {_ratio(value, reference):>7s}")
        speedup = keras.wall / result.wall if keras else None
        goal = TARGETS.get(result.name)
        met = speedup is not None and goal is not None and speedup >= goal
        verdict = f"speed-up >= {goal}x: {'met' if met else 'NOT met'}" if goal else ""
        if result.name != "keras":
            within = result.peak_rss / 1e9 <= MAX_RSS_GB
            verdict += f"{'; ' if verdict else ''}RSS <= {MAX_RSS_GB} GB: {'met' if within else 'NOT met'}"
        print(f"{result.name:30s} {cells[0]} {cells[1]} {result.wall:8.1f} "
              f"{(f'{speedup:7.2f}x' if speedup else '       -'):>8s} {result.peak_rss / 1e9:11.2f} "
              f"{_ratio(result.peak_rss, keras.peak_rss if keras else None):>7s}  {verdict}")
    print()
    print("where the wall time went (s): " + ", ".join(STEPS))
    print(f"{'run':30s} " + " ".join(f"{step[:11]:>11s}" for step in STEPS))
    for result in results:
        if result.steps:
            print(f"{result.name:30s} " + " ".join(f"{result.steps[step]:11.1f}" for step in STEPS))
        elif result.name == "keras":
            phases = " ".join(f"{result.phase_seconds.get(p, 0):11.1f}" for p in PHASES)
            outside = result.wall - sum(result.phase_seconds.get(p, 0) for p in PHASES)
            print(f"{result.name:30s} {'':11s} {'':11s} {'':11s} {phases}   outside fit: {outside:.1f}")
    print(f"load average after: {os.getloadavg()[0]:.1f} (a shared machine makes these numbers noisy)")
    for folder in args.made:  # the generated or copied images
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
