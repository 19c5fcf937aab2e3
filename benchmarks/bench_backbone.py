"""ResNet101V2 speed: ctframe's PyTorch port against Keras, measured in the same run.

    .venv/bin/python benchmarks/bench_backbone.py [--batches 16,32] [--iterations 2] [--threads N]
    .venv/bin/python benchmarks/bench_backbone.py --smoke    # resnet50v2, 32 px, batch 2: seconds

Forward (inference) and training-step images/s at each batch size for fp32 (NCHW), channels_last,
BatchNorm folded into the convolutions (``+fold``: what the prediction loop runs; forward only), bf16
autocast + channels_last, and torch.compile (its forward rows fold too), next to Keras's
``predict_on_batch`` and ``train_on_batch`` of the same architecture (tensorflow in a subprocess: it must
not share a process with torch). The training step is backbone + global average pool + Dense(1) + binary
cross-entropy + SGD with every layer trainable, on both sides. Both frameworks get the same number of
threads. Precision is applied as the trainer applies it, with ``ctframe.api.training.autocast`` around the
step; the memory format as the trainer sets it (model moved once, the uint8 batch converted in the
step). The allocator is tuned as the ``ctframe`` command tunes it (``performance.tune_allocator``;
``CTFRAME_MALLOC_TUNING=0`` measures glibc's defaults).

On CPUs without native bf16 (no AVX512-BF16 / AMX) bf16 is emulated and far slower than fp32; the
bf16 rows then run at the smallest batch only unless ``--full`` is given.

``--smoke`` keeps every row and the Keras reference but shrinks the sizes, and compiles with
torch.compile's "eager" backend (graph capture without inductor's code generation, which alone takes
~30 s): it checks that the benchmark still runs, its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import platform
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch
from ctframe_resnet_v2.keras_subprocess import keras_available, run_keras_reference
from ctframe_resnet_v2.model import ResNetV2
from torch import nn
from torch.nn import functional as F

from ctframe.runtime.folding import folded_batchnorm
from ctframe.runtime.performance import tune_allocator
from ctframe.runtime.precision import autocast, native_cpu_bf16


@dataclass(frozen=True)
class Config:
    name: str
    channels_last: bool
    precision: str
    compile: bool = False
    train: bool = True
    fold: bool = False
    """BatchNorm folded into the convolutions for the forward rows (inference only)."""


CONFIGS = (
    Config("fp32", channels_last=False, precision="fp32"),
    Config("channels_last", channels_last=True, precision="fp32"),
    Config("channels_last+fold", channels_last=True, precision="fp32", train=False, fold=True),
    Config("bf16+channels_last", channels_last=True, precision="bf16"),
    Config("bf16+channels_last+fold", channels_last=True, precision="bf16", train=False, fold=True),
    Config("channels_last+compile", channels_last=True, precision="fp32", compile=True, train=False,
           fold=True),
    Config("bf16+channels_last+compile", channels_last=True, precision="bf16", compile=True, fold=True),
)
# (config, mode) -> minimum ratio against Keras fp32, issue 15's targets (for ResNet101V2 at 224 px).
TARGETS = {
    ("channels_last", "train"): 1.0,
    ("channels_last+fold", "forward"): 1.0,
    ("bf16+channels_last", "train"): 3.0,
    ("bf16+channels_last+compile", "train"): 3.0,
    ("bf16+channels_last+fold", "forward"): 4.0,
    ("bf16+channels_last+compile", "forward"): 4.0,
}


@dataclass(frozen=True)
class Setup:
    arch: str
    size: int
    iterations: int
    device: str
    compile_backend: str


def _time_per_batch(step: Callable[[], object], iterations: int) -> tuple[float, float]:
    """(seconds of the first call, fastest of the next ``iterations`` calls).

    The fastest call, not the mean: on a shared machine other processes only ever add time.
    """
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return first, min(times)


def _images(batch: int, size: int, device: str) -> torch.Tensor:
    return torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=device)


def _layout(config: Config) -> torch.memory_format:
    return torch.channels_last if config.channels_last else torch.contiguous_format


def _backbone(config: Config, setup: Setup) -> ResNetV2:
    return ResNetV2(setup.arch).to(setup.device).to(memory_format=_layout(config))


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def torch_forward(config: Config, batch: int, setup: Setup) -> tuple[float, float]:
    model = _backbone(config, setup).eval()
    images = _images(batch, setup.size, setup.device)
    device_type = torch.device(setup.device).type
    run = torch.compile(model, backend=setup.compile_backend) if config.compile else model

    def step() -> None:
        with torch.inference_mode(), autocast(config.precision, device_type):
            run(images.contiguous(memory_format=_layout(config)))
        _synchronize(setup.device)

    with folded_batchnorm(model) if config.fold else contextlib.nullcontext():
        first, seconds = _time_per_batch(step, setup.iterations)
    return batch / seconds, first


def torch_train(config: Config, batch: int, setup: Setup) -> tuple[float, float]:
    backbone = _backbone(config, setup)
    head = nn.Linear(backbone.out_features, 1).to(setup.device)
    model = nn.ModuleDict({"backbone": backbone, "head": head}).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    images = _images(batch, setup.size, setup.device)
    labels = torch.randint(0, 2, (batch,), device=setup.device).float()
    device_type = torch.device(setup.device).type
    run = torch.compile(backbone, backend=setup.compile_backend) if config.compile else backbone

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        # Loss in float32 outside autocast, as the trainer computes it.
        with autocast(config.precision, device_type):
            logits = head(run(images.contiguous(memory_format=_layout(config))).mean(dim=(2, 3)))[:, 0]
        F.binary_cross_entropy_with_logits(logits.float(), labels).backward()
        optimizer.step()
        _synchronize(setup.device)

    first, seconds = _time_per_batch(step, setup.iterations)
    return batch / seconds, first


def keras_reference(batches: list[int], setup: Setup, threads: int) -> dict[str, float]:
    if not keras_available():
        print("keras: not installed (pip install 'ctframe[keras]'); ratios left out")
        return {}
    arguments = ["bench", "--arch", setup.arch, "--size", str(setup.size)]
    arguments += ["--iterations", str(setup.iterations), "--batches", ",".join(map(str, batches))]
    answer = run_keras_reference(arguments, timeout=3600, threads=threads)
    print(f"keras {answer['keras_version']}, tensorflow {answer['tensorflow_version']} (subprocess, CPU)")
    return answer["images_per_s"]


def _ratio(value: float | None, reference: float | None) -> str:
    return f"{value / reference:5.2f}x" if value and reference else "    -"


def _target(config: str, mode: str, value: float | None, reference: float | None) -> str:
    goal = TARGETS.get((config, mode))
    if goal is None or not value or not reference:
        return ""
    return f"target >= {goal}x: {'met' if value / reference >= goal else 'NOT met'}"


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet101v2", help="resnet50v2, resnet101v2 or resnet152v2")
    parser.add_argument("--batches", default="16,32")
    parser.add_argument("--iterations", type=int, default=2, help="timed batches after a warm-up batch")
    parser.add_argument("--size", type=int, default=224)
    # torch's default honours OMP_NUM_THREADS, so a caller can pin both frameworks from the environment.
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="for both frameworks")
    parser.add_argument("--configs", default=",".join(c.name for c in CONFIGS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend")
    parser.add_argument("--full", action="store_true", help="every batch size for emulated bf16 too")
    parser.add_argument("--no-keras", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: checks that it runs")
    args = parser.parse_args()
    if args.smoke:
        # Keras's ResNetV2 accepts no input smaller than 32 px.
        args.arch, args.batches, args.size, args.iterations = "resnet50v2", "2", 32, 1
        args.compile_backend = "eager"
    return args


def main() -> None:
    args = parse_arguments()
    batches = [int(b) for b in args.batches.split(",")]
    chosen = [c for c in CONFIGS if c.name in args.configs.split(",")]
    setup = Setup(args.arch, args.size, args.iterations, args.device, args.compile_backend)
    tuned = tune_allocator()
    torch.set_num_threads(args.threads)
    emulated_bf16 = args.device == "cpu" and not native_cpu_bf16()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"threads {args.threads}, device {args.device}, torch {torch.__version__}, "
          f"native bf16: {not emulated_bf16}, malloc tuning: {'on' if tuned else 'off'}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{args.arch} at {args.size} px, fastest of {args.iterations} timed batches after a warm-up batch, "
          f"torch.compile backend {args.compile_backend}" + (" (smoke: numbers mean nothing)" * args.smoke))

    # Smoke timings mean nothing, so there the Keras subprocess runs next to torch (saves ~10 s of a
    # test); a real measurement keeps the two apart.
    with ThreadPoolExecutor(1) as pool:
        keras_future: Future[dict[str, float]] | None = None
        if not args.no_keras:
            keras_future = pool.submit(keras_reference, batches, setup, args.threads)
            if not args.smoke:
                keras_future.result()
        rows = []
        for config in chosen:
            slow = emulated_bf16 and config.precision == "bf16" and not args.full
            for batch in batches[:1] if slow else batches:
                modes = [("forward", torch_forward)] + ([("train", torch_train)] if config.train else [])
                for mode, measure in modes:
                    images_per_s, first = measure(config, batch, setup)
                    rows.append((config.name, mode, batch, images_per_s))
                    print(f"  measured {config.name:28s} {mode:7s} batch {batch:3d}: {images_per_s:7.2f} "
                          f"img/s (first batch {first:.1f} s)", flush=True)
                    gc.collect()
        keras = {} if keras_future is None else keras_future.result()
        if keras and not args.smoke:
            # Keras again after the torch rows, keeping its faster figure: load that came and went during
            # one of the two runs then counts against torch, never for it
            again = keras_reference(batches, setup, args.threads)
            keras = {key: max(value, again.get(key, 0.0)) for key, value in keras.items()}

    print()
    print(f"{'config':28s} {'mode':8s} {'batch':>5s} {'img/s':>8s} {'keras':>8s} {'ratio':>7s}  target")
    for name, mode, batch, images_per_s in rows:
        reference = keras.get(f"{'predict' if mode == 'forward' else 'train'}_{batch}")
        keras_value = f"{reference:8.2f}" if reference else "       -"
        print(f"{name:28s} {mode:8s} {batch:5d} {images_per_s:8.2f} {keras_value} "
              f"{_ratio(images_per_s, reference):>7s}  {_target(name, mode, images_per_s, reference)}")
    print(f"load average after: {os.getloadavg()[0]:.1f} (a shared machine makes these numbers noisy)")


if __name__ == "__main__":
    main()
