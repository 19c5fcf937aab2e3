"""``ctframe predict`` throughput against the bare forward pass of the same model, in the same run.

    .venv/bin/python benchmarks/bench_predict.py [--images 64] [--arch resnet101v2] [--size 224]
    .venv/bin/python benchmarks/bench_predict.py --smoke    # resnet50v2, 32 px, 8 images

The reference is the core prediction loop over images already decoded in memory (what the model alone
costs). The measured path is what a user runs: ``workflows.predict.predict_files`` on PNG files on disk
(read and decode every file through the dataset's reader, predict, write the CSV; loading the model
file, once per command, is timed apart). Target: the files path within 10% of the bare forward pass.
Both in fp32, batch 32, the files path first and the reference second, fastest of ``--repeats``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from ctframe.runtime.precision import cpu_bf16_features


def _model_file(folder: Path, arch: str, size: int) -> Path:
    """A model file of a random-weight ResNetV2 + dense head, as a run would write it."""
    from ctframe.base.kinds import Kind
    from ctframe.registry.plugins import get_registry
    from ctframe.storage.modelfile import save_model

    registry = get_registry()
    backbone = registry.get(Kind.BACKBONE, arch)
    head = registry.get(Kind.HEAD, "dense")
    dataset = registry.get(Kind.DATASET, "folder_split")
    backbone_options = backbone.options(weights="none")
    head_options = head.options()
    from ctframe import BuildContext
    from ctframe.runtime.model import Classifier

    context = BuildContext(seed=0, device="cpu", recipe_dir=folder)
    built = backbone.factory(backbone_options, context)
    classifier = Classifier(built, head.factory(head_options, context, built.out_features, 2), ("a", "b"))
    dataset_options = dataset.options(root=folder, classes=["a", "b"], positive_class="b", image_size=size)

    def record(component, options) -> dict:
        return {
            "component": component.name,
            "plugin": component.plugin,
            "options": options.model_dump(mode="json"),
        }

    metadata = {
        "title": "benchmark",
        "backbone": record(backbone, backbone_options),
        "head": record(head, head_options),
        "class_names": ["a", "b"],
        "positive_class": "b",
        "threshold": 0.5,
        "threshold_choice": {"method": "fixed", "value": 0.5},
        "input": {"dataset": record(dataset, dataset_options), "shape": [3, size, size]},
        "versions": {},
        "run": {},
    }
    return save_model(folder / "models", "bench", classifier, metadata)


def _write_images(folder: Path, count: int, side: int) -> list[Path]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        pixels = rng.integers(0, 256, (side, side), dtype=np.uint8)
        path = folder / "images" / f"slice{index:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, "L").convert("RGBA").save(path)  # stored like the study's RGBA slices
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--arch", default="resnet101v2")
    parser.add_argument("--size", type=int, default=224, help="model input side")
    parser.add_argument("--file-side", type=int, default=512, help="side of the PNG files on disk")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that it runs")
    args = parser.parse_args()
    if args.smoke:
        args.images, args.arch, args.size, args.file_side, args.batch_size, args.repeats = (
            8,
            "resnet50v2",
            32,
            64,
            4,
            1,
        )
    os.environ.setdefault("CTFRAME_PLUGINS", "folder_split,resnet_v2,dense_head")
    from ctframe.registry.plugins import get_registry
    from ctframe.runtime.inference import read_files
    from ctframe.runtime.loading import load_model
    from ctframe.runtime.predict import predict_dataset
    from ctframe.workflows.predict import predict_files

    with tempfile.TemporaryDirectory(prefix="ctframe-bench-predict-") as scratch:
        folder = Path(scratch)
        model_path = _model_file(folder, args.arch, args.size)
        paths = _write_images(folder, args.images, args.file_side)
        files_seconds, bare_seconds, load_seconds = [], [], []
        for _ in range(args.repeats):
            out = folder / "out.csv"
            run = predict_files(model_path, [folder / "images"], out, batch_size=args.batch_size)
            files_seconds.append(run.predict_seconds)
            load_seconds.append(run.load_seconds)
            loaded = load_model(model_path)
            decoded = read_files(loaded.info, paths, "error", get_registry())
            in_memory = [decoded.images[i] for i in range(len(decoded.images))]
            started = time.perf_counter()
            predict_dataset(loaded.classifier, in_memory, device="cpu", batch_size=args.batch_size)
            bare_seconds.append(time.perf_counter() - started)
    files, bare = min(files_seconds), min(bare_seconds)
    print(
        f"{args.arch} at {args.size} px from {args.file_side} px PNGs, {args.images} images, batch "
        f"{args.batch_size}, {torch.get_num_threads()} threads, fp32; "
        f"{platform.processor() or platform.machine()}, "
        f"native bf16: {', '.join(cpu_bf16_features()) or 'none'}"
    )
    print(f"{'path':<44}{'img/s':>8}")
    print(f"{'bare forward (decoded images in memory)':<44}{args.images / bare:>8.1f}")
    print(f"{'ctframe predict (files: load, decode, CSV)':<44}{args.images / files:>8.1f}")
    print(f"model file loaded once per command in {min(load_seconds):.2f} s (not in the figures above)")
    ratio = bare / files
    print(f"predict / bare throughput: {ratio:.2f} (target >= 0.90: {'met' if ratio >= 0.9 else 'NOT met'})")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
