"""Phase-2 epoch time with and without the prefix-activation cache, measured in the same run.

    .venv/bin/python benchmarks/bench_prefix_cache.py [--images 64] [--unfreeze-last 150] [--threads 2]
    .venv/bin/python benchmarks/bench_prefix_cache.py --smoke   # resnet50v2, 8 images at 32 px: seconds

Fine-tuning as the study does it: ResNet101V2 (random weights: speed does not depend on them) with the
last 150 layers unfrozen, the dense head, the trainer's own loop (``loops.train_one_epoch`` and
``loops.evaluate``) with the frozen BatchNorm folded as the trainer folds it. Uncached, every step runs
the whole backbone (the frozen prefix without a graph); cached, the prefix ran once
(``prefix.build_activation_cache``) and a step runs the unfrozen suffix and the head. Both train at
``--precision`` (fp32 by default, so the ratio does not depend on the CPU's bf16).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from ctframe_dense_head.head import DenseHead, DenseHeadOptions
from ctframe_resnet_v2.model import ResNetV2
from ctframe_two_phase.forwards import model_forward
from ctframe_two_phase.loops import (
    ImageSource,
    epoch_batches,
    evaluate,
    set_train_mode,
    train_one_epoch,
)
from ctframe_two_phase.optimizer import KerasRMSprop
from ctframe_two_phase.prefix import SuffixClassifier, build_activation_cache, frozen_prefix, human_size
from support.images import RandomImages

from ctframe.runtime.folding import folded_batchnorm
from ctframe.runtime.model import Classifier, set_trainable_layers
from ctframe.runtime.performance import resolve_channels_last, tune_allocator
from ctframe.runtime.precision import cpu_bf16_features


def time_phase(model, forward, source, args) -> tuple[float, float]:
    """Median seconds of a training epoch and of a validation pass over ``source``."""
    optimizer = KerasRMSprop([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    train_s, val_s = [], []
    for epoch in range(args.epochs):
        order = epoch_batches(len(source), args.batch_size, torch.Generator().manual_seed(epoch))
        set_train_mode(model, backbone_frozen=False, update_batchnorm=True)
        result = train_one_epoch(
            forward, model.head.penalty, optimizer, source, order, epoch, args.precision, "cpu"
        )
        train_s.append(result.seconds)
        model.eval()
        started = time.perf_counter()
        evaluate(forward, model.head.penalty, source, 2 * args.batch_size, args.precision, "cpu")
        val_s.append(time.perf_counter() - started)
    return statistics.median(train_s), statistics.median(val_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet101v2")
    parser.add_argument("--images", type=int, default=64, help="images per epoch (train and val alike)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--unfreeze-last", type=int, default=150)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per path (median)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--store", default="auto", choices=("auto", "bf16"), help="prefix_cache_dtype")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: checks that it runs")
    args = parser.parse_args()
    if args.smoke:
        args.arch, args.images, args.size, args.batch_size, args.epochs = "resnet50v2", 8, 32, 4, 1
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
    cut = frozen_prefix(backbone)
    assert cut is not None, "nothing to cache: unfreeze fewer layers"
    print(
        f"{args.arch} at {args.size} px, {args.images} images, batch {args.batch_size}, last "
        f"{args.unfreeze_last} layers unfrozen (cache up to {cut.last_cached_layer}), {args.precision}, "
        f"{torch.get_num_threads()} threads, channels_last {channels_last}; native bf16: "
        f"{', '.join(cpu_bf16_features()) or 'none'}"
    )
    with folded_batchnorm(backbone, frozen_only=True):
        uncached = time_phase(model, model_forward(model, backbone_frozen=False), images, args)
        cache, build_s = build_activation_cache(
            cut.prefix, images, 2 * args.batch_size, args.precision, "memory", args.store == "bf16", None
        )
        cached = time_phase(model, SuffixClassifier(cut.suffix, model.head), cache, args)
    print(f"{'path':<22}{'train img/s':>12}{'val img/s':>11}{'epoch s':>9}{'ratio':>7}")
    for name, (train_s, val_s) in (("uncached", uncached), ("cached prefix", cached)):
        ratio = sum(uncached) / (train_s + val_s)
        print(
            f"{name:<22}{args.images / train_s:>12.1f}{args.images / val_s:>11.1f}"
            f"{train_s + val_s:>9.2f}{ratio:>7.2f}"
        )
    per_image = cache.nbytes / len(cache)
    saved = sum(uncached) - sum(cached)
    payback = f"pays for itself after {build_s / saved:.2f} epochs" if saved > 0 else "never pays here"
    print(
        f"cache: {tuple(cache.activations.shape[1:])} {str(cache.activations.dtype).removeprefix('torch.')}, "
        f"{human_size(int(per_image))} per image; built in {build_s:.1f} s ({payback})"
    )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
