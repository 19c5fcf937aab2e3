"""Predicting a run's two models: each on its own against both through their shared frozen prefix once.

    .venv/bin/python benchmarks/bench_shared_prediction.py [--images 64] [--unfreeze-last 150] [--threads 2]
    .venv/bin/python benchmarks/bench_shared_prediction.py --smoke   # resnet50v2, 8 images at 32 px

The engine predicts validation and test of every model a trainer returns (and ``ctframe evaluate`` every
model of a run). The two-phase trainer's initial and fine-tuned models share the backbone before the
first unfrozen block; ``ctframe.runtime.shared_prefix`` runs that part once per batch. Here: ResNet101V2
with random weights (speed does not depend on them), the fine-tuned state made by moving the last
``--unfreeze-last`` layers' weights, fp32 (the evaluation precision), the same images and batch size for
both paths, timed in the same run (median of ``--repeats``), and the largest probability difference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from ctframe_dense_head.head import DenseHead, DenseHeadOptions
from ctframe_resnet_v2.model import ResNetV2
from support.images import RandomImages

from ctframe.runtime.model import Classifier, set_trainable_layers
from ctframe.runtime.performance import tune_allocator
from ctframe.runtime.precision import cpu_bf16_features
from ctframe.runtime.predict import predict_dataset
from ctframe.runtime.shared_prefix import predict_shared, shared_segments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet101v2")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--unfreeze-last", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: checks that it runs")
    args = parser.parse_args()
    if args.smoke:
        args.arch, args.images, args.size, args.batch_size, args.repeats = "resnet50v2", 8, 32, 4, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    tune_allocator()  # as the ctframe command does
    torch.manual_seed(0)
    backbone = ResNetV2(args.arch)
    model = Classifier(backbone, DenseHead(backbone.out_features, 2, DenseHeadOptions()), ("a", "b"))
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for layer in set_trainable_layers(backbone, args.unfreeze_last):
            for parameter in layer.module.parameters() if layer.module is not None else ():
                parameter.mul_(1.01)
        for parameter in model.head.parameters():
            parameter.add_(0.01)
    states = [initial, {k: v.clone() for k, v in model.state_dict().items()}]
    images = RandomImages(args.images, args.size)
    shared = shared_segments(model, states)
    segments = len(list(backbone.segments()))
    print(
        f"{args.arch} at {args.size} px, {args.images} images, batch {args.batch_size}, last "
        f"{args.unfreeze_last} layers differ: {shared} of {segments} segments shared; fp32, "
        f"{torch.get_num_threads()} threads; native bf16: {', '.join(cpu_bf16_features()) or 'none'}"
    )

    def separately():
        found = []
        for state in states:
            model.load_state_dict(state)
            found.append(predict_dataset(model, images, device="cpu", batch_size=args.batch_size))
        return found

    def together():
        return predict_shared(model, states, images, shared=shared, device="cpu", batch_size=args.batch_size)

    timings, answers = {}, {}
    for name, path in (("each model on its own (ref)", separately), ("shared prefix once", together)):
        seconds = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            answers[name] = path()
            seconds.append(time.perf_counter() - started)
        timings[name] = statistics.median(seconds)
    reference = timings["each model on its own (ref)"]
    print(f"{'path':<30}{'s':>8}{'img/s per model':>17}{'ratio':>7}")
    for name, seconds in timings.items():
        rate = args.images * len(states) / seconds
        print(f"{name:<30}{seconds:>8.2f}{rate:>17.1f}{reference / seconds:>7.2f}")
    alone, shared_answers = answers.values()
    worst = max(
        float(abs(a.probabilities - b.probabilities).max())
        for a, b in zip(alone, shared_answers, strict=True)
    )
    print(f"largest probability difference: {worst:.2e}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
