"""Peak memory and step time of phase 2 with and without activation checkpointing, fp32 and bf16.

    .venv/bin/python benchmarks/bench_phase2_memory.py [--images 64] [--batch-size 32] [--pairs 2]
    .venv/bin/python benchmarks/bench_phase2_memory.py --smoke   # resnet50v2, 8 images at 32 px: seconds

Phase 2 as the study recipe runs it (augmentation on, so no prefix cache): ResNet101V2 (random weights:
memory and speed do not depend on them) with the last 150 layers unfrozen and the frozen BatchNorm
folded, the dense head, RMSprop and the trainer's own epoch (``loops.train_one_epoch``). Memory: each
setting runs in a fresh process, one after the other, and reports its peak resident set (``ru_maxrss``),
so the peak is that setting's alone; "estimate" is what ``activation_checkpointing = "auto"`` compares
with ``memory_limit_gb`` (measured before training, without checkpointing); its step time is the median
of the steps after the first, noisy on a shared box. Time: one process per precision alternates plain
and checkpointed steps (``--pairs`` of them after a warm-up step) and reports the median ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from ctframe_dense_head.head import DenseHead, DenseHeadOptions
from ctframe_resnet_v2.model import ResNetV2
from ctframe_two_phase.activation_checkpointing import checkpointed, estimate_peak, trainable_segments
from ctframe_two_phase.forwards import model_forward
from ctframe_two_phase.loops import ImageSource, epoch_batches, set_train_mode, train_one_epoch
from ctframe_two_phase.optimizer import KerasRMSprop
from support.images import RandomImages

from ctframe.runtime.folding import folded_batchnorm
from ctframe.runtime.model import Classifier, set_trainable_layers
from ctframe.runtime.performance import resolve_channels_last, tune_allocator

SETTINGS = [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]


def build(args: argparse.Namespace):
    """The study's phase-2 model (frozen BatchNorm folded by the caller), its images and optimiser."""
    if args.threads:
        torch.set_num_threads(args.threads)
    tune_allocator()  # as the ctframe command does
    torch.manual_seed(0)
    backbone = ResNetV2(args.arch)
    model = Classifier(backbone, DenseHead(backbone.out_features, 2, DenseHeadOptions()), ("a", "b"))
    set_trainable_layers(backbone, args.unfreeze_last)
    channels_last = resolve_channels_last("auto", "cpu")
    if channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    images = ImageSource(RandomImages(args.images, args.size), "cpu", channels_last=channels_last)
    optimizer = KerasRMSprop([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    return model, images, optimizer


def steps(model, images, optimizer, order, precision: str) -> list[float]:
    """Seconds of each training step over ``order`` (the trainer's epoch function)."""
    stamps = [time.perf_counter()]
    train_one_epoch(
        model_forward(model, backbone_frozen=False),
        model.head.penalty,
        optimizer,
        images,
        order,
        0,
        precision,
        "cpu",
        on_batch=lambda count, loss: stamps.append(time.perf_counter()),
    )
    return [b - a for a, b in zip(stamps, stamps[1:], strict=False)]


def memory_child(args: argparse.Namespace) -> dict[str, float]:
    """One setting's peak RSS, the "auto" estimate and its step time (noisy on a shared box)."""
    model, images, optimizer = build(args)
    with folded_batchnorm(model.backbone, frozen_only=True), contextlib.ExitStack() as stack:
        set_train_mode(model, backbone_frozen=False, update_batchnorm=True)
        forward = model_forward(model, backbone_frozen=False)
        estimate = estimate_peak(model, forward, images, args.batch_size, args.precision, "cpu")
        if args.checkpointing:
            stack.enter_context(checkpointed(trainable_segments(model.backbone)))
        order = epoch_batches(len(images), args.batch_size, torch.Generator().manual_seed(0))
        seconds = steps(model, images, optimizer, order, args.precision)
    return {
        "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "estimate_bytes": estimate.total,
        "step_s": statistics.median(seconds[1:] or seconds),
    }


def timing_child(args: argparse.Namespace) -> dict[str, float]:
    """Median time ratio of a checkpointed step to a plain one, the two alternating in one process (a
    load that changes slowly slows both alike), after one warm-up step."""
    model, images, optimizer = build(args)
    batch = [list(range(min(args.batch_size, len(images))))]
    ratios, plain_s = [], []
    with folded_batchnorm(model.backbone, frozen_only=True):
        set_train_mode(model, backbone_frozen=False, update_batchnorm=True)
        steps(model, images, optimizer, batch, args.precision)
        for _ in range(args.pairs):
            (plain,) = steps(model, images, optimizer, batch, args.precision)
            with checkpointed(trainable_segments(model.backbone)):
                (recomputed,) = steps(model, images, optimizer, batch, args.precision)
            ratios.append(recomputed / plain)
            plain_s.append(plain)
    return {"ratio": statistics.median(ratios), "step_s": statistics.median(plain_s)}


def cpu_model() -> str:
    with contextlib.suppress(OSError, StopIteration):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        name = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
        flags = next(line for line in lines if line.startswith("flags")).split()
        return f"{name}, avx512_bf16 {'yes' if 'avx512_bf16' in flags else 'no'}"
    return "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet101v2")
    parser.add_argument("--images", type=int, default=64, help="training images: images / batch steps")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--unfreeze-last", type=int, default=150)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: checks that it runs")
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pairs", type=int, default=2, help="timing: plain/checkpointed step pairs")
    parser.add_argument("--memory-only", action="store_true", help="skip the timing")
    parser.add_argument("--timing-only", action="store_true", help="skip the memory table")
    parser.add_argument("--timing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.arch, args.images, args.size, args.batch_size, args.pairs = "resnet50v2", 8, 32, 4, 1
    if args.child:
        print(json.dumps(timing_child(args) if args.timing else memory_child(args)))
        return
    print(
        f"{args.arch} at {args.size} px, {args.images} images, batch {args.batch_size}, last "
        f"{args.unfreeze_last} layers unfrozen; {cpu_model()}; load average before: {os.getloadavg()[0]:.2f}"
    )
    forwarded = [a for a in sys.argv[1:] if a not in ("--smoke", "--memory-only", "--timing-only")]
    forwarded += ["--smoke"] if args.smoke else []

    def run(*extra: str) -> dict[str, float]:
        command = [sys.executable, __file__, "--child", *forwarded, *extra]
        return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)

    if not args.timing_only:
        header = f"{'precision':<10}{'checkpointing':>14}{'peak GB':>9}{'estimate GB':>12}{'s / step':>10}"
        print(header)
        for precision, checkpointing in SETTINGS:
            result = run("--precision", precision, *(["--checkpointing"] if checkpointing else []))
            print(
                f"{precision:<10}{'on' if checkpointing else 'off':>14}{result['peak_bytes'] / 1e9:>9.2f}"
                f"{result['estimate_bytes'] / 1e9:>12.2f}{result['step_s']:>10.2f}"
            )
    if not args.memory_only:
        print(f"{'precision':<10}{'plain s / step':>15}{'checkpointed / plain':>22}  ({args.pairs} pairs)")
        for precision in ("fp32", "bf16"):
            result = run("--timing", "--precision", precision)
            print(f"{precision:<10}{result['step_s']:>15.2f}{result['ratio']:>22.2f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
