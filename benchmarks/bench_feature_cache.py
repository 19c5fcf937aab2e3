"""Phase-1 epoch time with and without the feature cache, measured in the same run.

    .venv/bin/python benchmarks/bench_feature_cache.py [--backbone resnet101v2] [--images 32] [--threads 1]
    .venv/bin/python benchmarks/bench_feature_cache.py --smoke   # resnet50v2, 4 images at 32 px: seconds

Both paths run the trainer's own code (``loops.train_one_epoch``) on a frozen ResNetV2 backbone
(random weights: speed does not depend on them) and the study's dense head. The uncached path
already skips the backbone's backward pass; the cached one also skips its forward pass.
Both run at the trainer's training precision (``--precision``, fp32 by default so the ratio does not
depend on the CPU). Target: a cached epoch at least 200x faster than an uncached one (at full size;
``--smoke`` only checks that the benchmark runs, its ratio means nothing).
"""

from __future__ import annotations

import argparse
import logging
import statistics
from pathlib import Path

import torch
from ctframe_dense_head.head import DenseHead, DenseHeadOptions
from ctframe_two_phase.features import compute_features
from ctframe_two_phase.forwards import model_forward
from ctframe_two_phase.loops import ImageSource, epoch_batches, set_train_mode, train_one_epoch
from ctframe_two_phase.optimizer import KerasRMSprop
from support.images import RandomImages

from ctframe import BuildContext, Kind
from ctframe.registry.plugins import build_registry
from ctframe.runtime.model import Classifier, set_trainable_layers

TARGET_RATIO = 200.0


def time_epochs(model, forward, source, batch_size: int, epochs: int, precision: str) -> list[float]:
    optimizer = KerasRMSprop([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    seconds = []
    for epoch in range(epochs):
        order = epoch_batches(len(source), batch_size, torch.Generator().manual_seed(epoch))
        set_train_mode(model, backbone_frozen=True, update_batchnorm=True)
        seconds.append(
            train_one_epoch(
                forward, model.head.penalty, optimizer, source, order, epoch, precision=precision,
                device="cpu",
            ).seconds
        )
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backbone", default="resnet101v2", help="a ResNetV2 backbone of the resnet_v2 plugin"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared box)")
    parser.add_argument("--images", type=int, default=32, help="training images per epoch")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--uncached-epochs", type=int, default=2)
    parser.add_argument("--cached-epochs", type=int, default=20)
    parser.add_argument("--precision", default="fp32", help="the trainer's: fp32, auto, bf16, fp16")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: checks that it runs")
    args = parser.parse_args()
    if args.smoke:
        args.backbone, args.images, args.size, args.batch_size = "resnet50v2", 4, 32, 2
        args.uncached_epochs, args.cached_epochs = 1, 2
    if args.threads:
        torch.set_num_threads(args.threads)

    context = BuildContext(seed=0, device="cpu", recipe_dir=Path("."), logger=logging.getLogger("bench"))
    component = build_registry(selection="resnet_v2").get(Kind.BACKBONE, args.backbone)
    if component is None:
        raise SystemExit(f"backbone {args.backbone!r} not found; is the resnet_v2 plugin installed?")
    backbone = component.factory(component.options.model_validate({"weights": "none"}), context)
    head = DenseHead(backbone.out_features, 2, DenseHeadOptions())
    model = Classifier(backbone, head, ("a", "b"))
    set_trainable_layers(backbone, 0)
    images = ImageSource(RandomImages(args.images, args.size), "cpu")

    forward = model_forward(model, backbone_frozen=True)
    uncached = time_epochs(model, forward, images, args.batch_size, args.uncached_epochs, args.precision)
    features, cache_seconds = compute_features(
        backbone, images, 2 * args.batch_size, precision=args.precision, reduce=head.reduce_features
    )
    cached = time_epochs(model, model.head, features, args.batch_size, args.cached_epochs, args.precision)

    uncached_s, cached_s = statistics.median(uncached), statistics.median(cached)
    ratio = uncached_s / cached_s
    print(
        f"{args.backbone}, {args.images} images {args.size}px, batch {args.batch_size}, "
        f"{torch.get_num_threads()} torch threads, precision {args.precision}, "
        f"cached per image {tuple(features.features.shape[1:])}"
    )
    print(f"{'path':<28}{'s/epoch (median)':>18}{'images/s':>12}{'ratio':>10}")
    print(
        f"{'uncached (frozen backbone)':<28}{uncached_s:>18.4f}{args.images / uncached_s:>12.1f}{1.0:>10.1f}"
    )
    print(f"{'cached features':<28}{cached_s:>18.4f}{args.images / cached_s:>12.1f}{ratio:>10.1f}")
    print(
        f"one-time cache build: {cache_seconds:.2f} s "
        f"(pays for itself after {cache_seconds / max(uncached_s - cached_s, 1e-9):.2f} epochs)"
    )
    print(f"target: cached >= {TARGET_RATIO:.0f}x faster -> {'met' if ratio >= TARGET_RATIO else 'NOT met'}")


if __name__ == "__main__":
    main()
