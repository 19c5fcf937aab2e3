"""What fp32 evaluation costs: one forward pass over a test split in fp32 against bf16 autocast.

    .venv/bin/python benchmarks/bench_eval_precision.py [--images 128] [--arch resnet101v2] [--size 224]
    .venv/bin/python benchmarks/bench_eval_precision.py --smoke    # resnet50v2, 32 px, 8 images

Reported predictions run in fp32 (``[evaluation] precision = "fp32"``) so that one recipe gives the
same numbers on every CPU. This measures that choice through the core's own prediction loop
(``ctframe.runtime.predict.predict_dataset``), the fp32 run first and bf16 second on the same random images,
and extrapolates both to the study's 745 test images. On a CPU without native bf16 (no AVX512-BF16,
no AMX) bf16 is emulated, so fp32 is the faster of the two there.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch
from ctframe_dense_head.head import DenseHead, DenseHeadOptions
from ctframe_resnet_v2.model import ResNetV2
from support.images import RandomImages

from ctframe.runtime.model import Classifier
from ctframe.runtime.performance import tune_allocator
from ctframe.runtime.precision import cpu_bf16_features
from ctframe.runtime.predict import predict_dataset

STUDY_TEST_IMAGES = 745


def timed(model: Classifier, images: RandomImages, precision: str, batch_size: int) -> tuple[float, object]:
    predict_dataset(
        model,
        torch.utils.data.Subset(images, range(batch_size)),
        device="cpu",
        precision=precision,
        batch_size=batch_size,
    )  # warm-up: oneDNN primitive creation
    started = time.perf_counter()
    result = predict_dataset(model, images, device="cpu", precision=precision, batch_size=batch_size)
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=128, help="images timed per precision")
    parser.add_argument("--arch", default="resnet101v2")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that it runs")
    args = parser.parse_args()
    if args.smoke:
        args.images, args.arch, args.size, args.batch_size = 8, "resnet50v2", 32, 4
    if args.threads:
        torch.set_num_threads(args.threads)
    tune_allocator()  # as the ctframe command does
    torch.manual_seed(0)
    model = Classifier(ResNetV2(args.arch), DenseHead(2048, 2, DenseHeadOptions()), ("a", "b"))
    images = RandomImages(args.images, args.size)
    print(
        f"{args.arch} at {args.size} px, {args.images} images, batch {args.batch_size}, "
        f"{torch.get_num_threads()} threads; {platform.processor() or platform.machine()}, "
        f"native bf16: {', '.join(cpu_bf16_features()) or 'none'}"
    )
    seconds, results = {}, {}
    for precision in ("fp32", "bf16"):
        seconds[precision], results[precision] = timed(model, images, precision, args.batch_size)
    difference = abs(results["fp32"].probabilities - results["bf16"].probabilities).max()
    print(f"{'precision':<10}{'img/s':>9}{f's per {STUDY_TEST_IMAGES} images':>22}")
    for precision, spent in seconds.items():
        rate = args.images / spent
        print(f"{precision:<10}{rate:>9.1f}{STUDY_TEST_IMAGES / rate:>22.1f}")
    print(
        f"fp32 / bf16 time: {seconds['fp32'] / seconds['bf16']:.2f}x; "
        f"largest probability difference bf16 vs fp32: {difference:.2e}"
    )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
